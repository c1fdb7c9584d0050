"""``audit checkpoint`` killed (``kill -9``) at its write steps: the signer's state is old or new.

The log signer's state file lives outside the database (it is what stops the
log key signing two histories), so a checkpoint writes twice: the state file,
then the checkpoint row. The real ``vtreg audit checkpoint`` runs under strace,
which delivers SIGKILL on entry to a chosen system call
(``--inject=SYS:signal=SIGKILL:when=N``), at each of its writes to the state
file's directory and to the registry's files. Afterwards the state file is the
old one or the new one byte for byte (never half), the registry opens with its
chain intact, a retried checkpoint works, and a verifier accepts what it signs.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok
from vtreg.registry.service import Registry

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is not installed")

WRITES = "pwrite64,write,fsync,fdatasync,ftruncate,unlink,rename,renameat,renameat2,linkat"


def _vtreg(work: Path, strace: list[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    assert STRACE is not None
    # No bytecode written: a first run in a fresh checkout would write .pyc files, and the
    # kills count write calls that must be the same in every run.
    env = {
        "VTREG_HOME": str(work / "home"),
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    db = (
        "--db",
        f"sqlite:///{work / 'registry.db'}",
        "--state",
        str(work / "home" / "signer.json"),
    )
    return subprocess.run(
        [STRACE, *strace, "--", sys.executable, "-m", "vtreg", *map(str, args), *db],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120,
        check=False,
    )  # fmt: skip


def _steps(trace: str, work: Path) -> list[tuple[str, int]]:
    """The writes to be killed at, each as (system call, its count among calls of that name).

    strace counts per system call name. Every write to the state file's
    directory is kept; of the registry's (many page writes) a spread.
    """
    seen: Counter[str] = Counter()
    state, registry = [], []
    for line in trace.splitlines():
        if call := re.match(r"(\w+)\(", line):
            seen[call[1]] += 1
            if str(work / "home") in line or "signer.json" in line:
                state.append((call[1], seen[call[1]]))
            elif str(work) in line:
                registry.append((call[1], seen[call[1]]))
    return state + registry[:: max(1, len(registry) // 3)] + registry[-1:]


def _signed(state: bytes) -> dict[str, object]:
    """What a state file says was signed: all of it but the time (each run has its own)."""
    fields = json.loads(state)
    del fields["signed_at"]
    return dict(fields)


def test_a_checkpoint_killed_at_each_write_step_leaves_the_old_or_the_new_state(
    tmp_path: Path,
) -> None:
    start, work = tmp_path / "start", tmp_path / "work"
    (start / "home").mkdir(parents=True, mode=0o700)
    ok(invoke_cli("keygen", "log", "--out", tmp_path, "--unencrypted"))
    ok(invoke_cli("keygen", "alice", "--out", tmp_path, "--unencrypted"))
    key = ("--key", tmp_path / "log.key")
    env = {"VTREG_HOME": str(start / "home")}
    db = ("--db", f"sqlite:///{start / 'registry.db'}", "--state", start / "home" / "signer.json")
    init = ("audit", "init", *key, "--origin", "example.com/log", "--new-log")
    vkey = ok(invoke_cli(*init, *db, env=env)).stdout.strip()
    ok(invoke_cli("audit", "checkpoint", *key, *db, env=env))
    ok(invoke_cli("key", "add", tmp_path / "alice.pub", *db[:2], env=env))  # a new event
    old = (start / "home" / "signer.json").read_bytes()

    shutil.copytree(start, work)
    traced = _vtreg(work, ["-y", "-o", str(tmp_path / "trace"), "-e", f"trace={WRITES}"],
                    "audit", "checkpoint", *key)  # fmt: skip
    assert traced.returncode == 0, traced.stderr
    new = (work / "home" / "signer.json").read_bytes()
    assert new != old
    steps = _steps((tmp_path / "trace").read_text(), work)
    assert {call for call, _ in steps} >= {"write", "fsync", "pwrite64", "fdatasync"}, steps

    states = set()
    for call, nth in steps:
        shutil.rmtree(work)
        shutil.copytree(start, work)
        inject = ["-qq", "-o", "/dev/null", "-e", f"trace={call}"]
        inject += ["-e", f"inject={call}:signal=SIGKILL:when={nth}"]
        killed = _vtreg(work, inject, "audit", "checkpoint", *key)
        assert killed.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (call, nth)

        state = (work / "home" / "signer.json").read_bytes()
        assert _signed(state) in (_signed(old), _signed(new)), (call, nth)  # never half
        states.add(_signed(state) == _signed(new))
        with Registry.open(f"sqlite:///{work / 'registry.db'}") as registry:
            report = registry.verify_audit()
            assert report.ok, report.problem
        again = _vtreg(work, ["-qq", "-o", "/dev/null", "-e", "trace=none"], "audit", "checkpoint",
                       *key, "--json")  # fmt: skip
        assert again.returncode == 0, (call, nth, again.stderr)
        (work / "checkpoint").write_text(json.loads(again.stdout)["checkpoint"])
        verified = ok(
            invoke_cli(
                "audit", "verify", "--checkpoint", work / "checkpoint", "--log", vkey,
                "--verifier-state", work / "host", "--db", f"sqlite:///{work / 'registry.db'}",
                env={"VTREG_HOME": str(work / "home")},
            )
        )  # fmt: skip
        assert verified.code == 0
    assert states == {False, True}  # killed both before and after the state was replaced
