"""The README's quickstart, run as written from a fresh copy of the repository under umask 002."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
_QUICKSTART = re.compile(r"## 60-second quickstart\n\n```sh\n(.*?)```", re.DOTALL)


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def _fresh_clone(target: Path) -> Path:
    """The repository's tracked files as they are now, committed in a new repository."""
    for name in _git(ROOT, "ls-files", "-z").split("\0"):
        if name and (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone")
    return target


def _script(block: str) -> str:
    """The quickstart's lines (``pip install .`` aside: vtreg is installed), each checked for
    the exit code its comment promises (``exit 1``, else 0)."""
    lines = ["umask 002"]
    for line in block.splitlines():
        command = line.split("  #", 1)[0].strip()
        if not command or command.startswith("#") or command.startswith("pip install"):
            continue
        expected = 1 if re.search(r"#.*exit 1\b", line) else 0
        check = f"[ $? -eq {expected} ] || {{ echo FAILED: {shlex.quote(command)} >&2; exit 99; }}"
        lines.append(f"{command}\n{check}")
    return "\n".join(lines) + "\n"


def test_the_quickstart_works_under_umask_002_and_leaves_the_clone_clean(tmp_path: Path) -> None:
    block = _QUICKSTART.findall((ROOT / "README.md").read_text())[0]
    clone = _fresh_clone(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    env["VTREG_HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"

    done = subprocess.run(
        ["bash", "-c", _script(block)],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "refused: plugin.json is" in done.stderr
    assert '"greeting": "Hello, Ada!"' in done.stdout
    assert _git(clone, "status", "--porcelain") == ""
