"""The docs' walkthroughs, run as written: docs/audit.md's "From a fresh clone" block.

The block is run by bash line by line (a line continued with a backslash, or a
heredoc, counts as one), each line checked for the exit code its comment promises
(``exit N``, else 0). Only the witness's port is changed, to a free one, so that
runs on one machine do not collide; the installation line is skipped (vtreg is
installed).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
_BLOCK = re.compile(r"## From a fresh clone\n\n```sh\n(.*?)```", re.DOTALL)
_HEREDOC = re.compile(r"<<'?(\w+)'?")


def _commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, a heredoc kept with its command."""
    lines, commands = block.splitlines(), []
    while lines:
        command = lines.pop(0)
        while command.endswith("\\") and lines:
            command += "\n" + lines.pop(0)
        heredoc = _HEREDOC.search(command)
        if heredoc:
            while lines:
                body = lines.pop(0)
                command += "\n" + body
                if body == heredoc.group(1):
                    break
        commands.append(command)
    return commands


def _script(block: str) -> str:
    checked = ["trap 'kill $(jobs -p) 2>/dev/null' EXIT"]
    for command in _commands(block):
        first = command.split("\n", 1)[0]
        if not command.strip() or first.startswith("#") or first.startswith("python3 -m venv"):
            continue
        found = re.search(r"#.*\bexit (\d)\b", first)
        expected = found.group(1) if found else "0"
        report = shlex.quote(f"FAILED (not exit {expected}): {first}")
        checked.append(f"{command}\n[ $? -eq {expected} ] || {{ echo {report} >&2; exit 99; }}")
    return "\n".join(checked) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_audit_walkthrough_runs_as_written(tmp_path: Path) -> None:
    block = _BLOCK.findall((ROOT / "docs" / "audit.md").read_text())[0]
    written = [line.split("  #", 1)[0] for line in block.splitlines()]
    elided = [line for line in written if "..." in line and not line.lstrip().startswith("#")]
    assert elided == []  # nothing a reader must fill in before running it
    block = block.replace("127.0.0.1:8611", f"127.0.0.1:{_free_port()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "-c", _script(block)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "checkpoint of example.com/vtreg-audit: the log holds its 1 events (cosigned by w1)" in (
        done.stdout
    )
    assert "already holds 1 events" in done.stderr  # step 7: refused without --resume-from
    assert (tmp_path / "vtreg-home" / "log-signer.json").exists()
