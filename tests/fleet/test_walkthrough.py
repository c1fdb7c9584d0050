"""docs/fleet.md's "From a fresh clone" walkthrough, run as written from a fresh copy.

As tests/test_quickstart.py runs the README's quickstart: each command of the block runs
in bash in a fresh clone and must exit 0. What the test changes, and why:

* the ``python3 -m venv ...`` line is left out (vtreg is installed: this venv is on PATH);
* port 8000 becomes a free port, and ``/etc/vtreg-root.json`` a file of the test's own
  (the machine's /etc is not the test's to write);
* after the server's ``&`` line the script waits until the port accepts connections, and
  stops the server when it ends;
* ``unshare -n`` needs root (a network namespace): without it that one step is left out
  and, once every other step has passed, the test is skipped saying so.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_quickstart import _fresh_clone

ROOT = Path(__file__).parents[2]
_WALKTHROUGH = re.compile(r"## From a fresh clone\n\n```sh\n(.*?)```", re.DOTALL)
_WAIT = (
    "import socket, sys, time\n"
    "for _ in range(600):\n"
    "    try: socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close(); break\n"
    "    except OSError: time.sleep(0.1)\n"
)


def _commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    commands, pending = [], ""
    for line in block.splitlines():
        line = pending + line.split("  #", 1)[0].rstrip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _script(commands: list[str], port: int, root_file: Path, *, network_cut: bool) -> str:
    lines = ["set -u"]
    for command in commands:
        if command.startswith("python3 -m venv"):
            continue
        if command.startswith("unshare -n") and not network_cut:
            continue
        command = command.replace("8000", str(port)).replace("/etc/vtreg-root.json", str(root_file))
        if command.endswith("&"):
            lines.append(command)
            lines.append("server=$!; trap 'kill $server' EXIT")
            lines.append(f"python3 -c {shlex.quote(_WAIT)} {port}")
            continue
        check = f"[ $? -eq 0 ] || {{ echo FAILED: {shlex.quote(command)} >&2; exit 99; }}"
        lines.append(f"{command}\n{check}")
    return "\n".join(lines) + "\n"


def test_the_fleet_walkthrough_runs_as_written(tmp_path: Path) -> None:
    commands = _commands(_WALKTHROUGH.findall((ROOT / "docs" / "fleet.md").read_text())[0])
    assert any(c.startswith("unshare -n vtreg run") for c in commands)
    network_cut = os.geteuid() == 0
    clone = _fresh_clone(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    env["VTREG_HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    script = _script(commands, _free_port(), tmp_path / "vtreg-root.json", network_cut=network_cut)

    done = subprocess.run(
        ["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    if network_cut:
        assert "Hello, Ada!" in done.stdout
    # The last sync brought the revocation the publisher published.
    verified = subprocess.run(
        ["vtreg", "verify", "examples/hello", "--fleet", "host.state"],
        cwd=clone, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 1, verified.stderr
    assert "revoked" in verified.stderr
    if not network_cut:
        pytest.skip("every step ran but `unshare -n vtreg run ...`: unshare -n needs root")
