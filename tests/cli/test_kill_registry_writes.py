"""``trust``, ``revoke`` and ``key add`` killed (``kill -9``) at their write steps lose nothing.

Each case runs the real ``vtreg`` under strace, which delivers SIGKILL on entry
to the Nth system call of a class (``--inject=SYS:signal=SIGKILL:when=N``): no
hook inside vtreg, the process dies exactly where a ``kill -9`` at that moment
would leave it. One traced run lists the write steps (for SQLite those on the
registry's files: the WAL, its index, the database, the directory; for
PostgreSQL each message the client sends); then, from the same starting
registry each time, the command is killed before a spread of them. Afterwards
the registry opens, ``audit verify`` holds, and the change is wholly there (its
row and its one audit event) or wholly absent.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.databases import _admin_engine
from tests.helpers import invoke_cli, ok
from vtreg.registry.service import Registry

PluginFactory = Callable[..., Path]

STRACE = shutil.which("strace")
pytestmark = pytest.mark.skipif(STRACE is None, reason="strace is not installed")

SQLITE_WRITES = "pwrite64,write,fsync,fdatasync,ftruncate,unlink,rename"
POSTGRES_WRITES = "sendto"
MAX_KILLS = 8  # per command and engine: bounded, and on both sides of the commit


@dataclass(frozen=True)
class Step:
    """The ``nth`` call of system call ``call`` in a run."""

    call: str
    nth: int


@dataclass
class Case:
    """A registry to restore before each killed run, and how to read its state."""

    url: str
    restore: Callable[[], str]  # a fresh copy of the starting registry: its URL
    writes: str
    ours: Callable[[str], bool]  # is this traced call one of the registry's writes?


def _vtreg(
    url: str, args: tuple[str, ...], strace: list[str], home: Path
) -> subprocess.CompletedProcess[str]:
    assert STRACE is not None
    # No bytecode written: a first run in a fresh checkout would write .pyc files, and the
    # kills count write calls that must be the same in every run.
    env = {"VTREG_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [STRACE, *strace, "--", sys.executable, "-m", "vtreg", *args, "--db", url],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120,
        check=False,
    )  # fmt: skip


def _write_steps(case: Case, args: tuple[str, ...], home: Path, tmp: Path) -> list[Step]:
    """The registry's writes in one run: each as its call and its count among those calls.

    strace counts the calls it injects into per system call and per process,
    so a step is "the Nth pwrite64", not "the Nth write of any kind".
    """
    trace = tmp / "trace"
    url = case.restore()
    done = _vtreg(url, args, ["-y", "-o", str(trace), "-e", f"trace={case.writes}"], home)
    assert done.returncode == 0, done.stderr
    seen: Counter[str] = Counter()
    steps = []
    for line in trace.read_text().splitlines():
        if call := re.match(r"(\w+)\(", line):
            seen[call[1]] += 1
            if case.ours(line):
                steps.append(Step(call[1], seen[call[1]]))
    assert steps, trace.read_text()
    # The first and the last, every sync (a commit point), and a spread of the rest.
    keep = [steps[0], *(s for s in steps if s.call in ("fsync", "fdatasync")), steps[-1]]
    spread = steps[:: max(1, len(steps) // max(1, MAX_KILLS - len(keep)))]
    keep += spread[: max(0, MAX_KILLS - len(keep))]
    return sorted(set(keep), key=steps.index)


def _killed(case: Case, args: tuple[str, ...], step: Step, home: Path) -> str:
    url = case.restore()
    inject = f"inject={step.call}:signal=SIGKILL:when={step.nth}"
    done = _vtreg(
        url, args, ["-qq", "-o", "/dev/null", "-e", f"trace={step.call}", "-e", inject], home
    )
    # strace ends itself with its tracee's signal.
    assert done.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (step, done.stderr)
    return url


def _state(url: str) -> tuple[int, frozenset[tuple[str, ...]]]:
    """The number of audit events (the chain checked) and what the change touches."""
    with Registry.open(url) as registry:
        report = registry.verify_audit()
        assert report.ok, report.problem
        keys = {(k.keyid, str(k.revoked_reason)) for k in registry.list_keys()}
        plugins = {(p.name, p.version, str(p.revoked_reason)) for p in registry.plugins()}
        return report.events, frozenset(keys | plugins)


@pytest.fixture
def case(database_url: str, tmp_path: Path) -> Iterator[Case]:
    if database_url.startswith("sqlite"):
        start = tmp_path / "start"
        start.mkdir()
        url = f"sqlite:///{start / 'registry.db'}"
        runs = iter(range(10_000))

        def restore_sqlite() -> str:
            copy = tmp_path / f"run-{next(runs)}"
            shutil.copytree(start, copy)
            return f"sqlite:///{copy / 'registry.db'}"

        yield Case(url, restore_sqlite, SQLITE_WRITES, lambda line: str(tmp_path) in line)
        return
    # PostgreSQL: each run gets a copy of the starting database (CREATE DATABASE ... TEMPLATE).
    admin = _admin_engine(database_url)
    template = sa.make_url(database_url).database
    made: list[str] = []

    def restore_postgres() -> str:
        name = f"{template}_k{len(made)}"
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        made.append(name)
        return sa.make_url(database_url).set(database=name).render_as_string(hide_password=False)

    try:
        yield Case(database_url, restore_postgres, POSTGRES_WRITES, lambda line: True)
    finally:
        with admin.connect() as connection:
            for name in made:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.parametrize("command", ["trust", "revoke", "key add"])
def test_a_write_killed_at_each_step_is_wholly_there_or_wholly_absent(
    case: Case, command: str, plugin_factory: PluginFactory, keys: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    db = ("--db", case.url)
    ok(invoke_cli("key", "add", keys / "alice.pub", *db, env={"VTREG_HOME": str(home)}))
    if command == "revoke":
        ok(invoke_cli("trust", plugin, *db, env={"VTREG_HOME": str(home)}))
    args = {
        "trust": ("trust", str(plugin)),
        "revoke": ("revoke", "hello@1.0.0", "--reason", "bad build"),
        "key add": ("key", "add", str(keys / "bob.pub")),
    }[command]
    before = _state(case.url)
    finished = case.restore()
    ok(invoke_cli(*args, "--db", finished, env={"VTREG_HOME": str(home)}))
    after = _state(finished)
    assert after[0] == before[0] + 1  # one event more
    assert after[1] != before[1]

    outcomes = set()
    for step in _write_steps(case, args, home, tmp_path):
        state = _state(_killed(case, args, step, home))
        assert state in (before, after), (step, state)
        outcomes.add(state == after)
    assert outcomes == {False, True}  # killed both before and after the commit
