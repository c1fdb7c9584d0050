"""``vtreg fleet sync`` killed (SIGKILL) while it writes the state leaves the previous state.

Each case runs the real ``vtreg fleet sync`` in a child process that kills itself with
SIGKILL at a chosen point of its write, as a ``kill -9`` (or a power cut, short of what
fsync covers) at that moment would: just before the rename of a new state file over the
old one, or inside the in-place update of a sync that found nothing new, before each of
its SQLite statements. Then the state must be the old one, byte for byte, a load must
decide from it, and the next sync must bring the new trust. (The style of
tests/cli/test_crash_safety.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fleet.conftest import Fleet, utc_now
from vtreg.loader import PluginLoader
from vtreg.registry.fleet import FleetTrust
from vtreg.registry.fleet.repository import refresh
from vtreg.registry.fleet.state import StateFile, read_fleet_state
from vtreg.verifier.errors import PolicyError
from vtreg.verifier.keys import SigningKey

Factory = Callable[..., Path]

_KILLER = textwrap.dedent(
    """
    import os, signal, sqlite3, sys

    where, state = sys.argv[1], os.path.abspath(sys.argv[2])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if where == "rename" and os.path.abspath(os.fspath(dst)) == state:
            die()  # the new state is written and fsynced, not yet renamed over the old one
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    real_connect = sqlite3.connect

    def connect(database, *args, **kwargs):
        db = real_connect(database, *args, **kwargs)
        if where.startswith("sql:") and os.path.abspath(os.fspath(database)) == state:
            statement = where[4:]
            db.set_trace_callback(lambda sql: sql.startswith(statement) and die())
        return db

    sqlite3.connect = connect

    from vtreg.registry.cli import main

    sys.argv = ["vtreg", *sys.argv[3:]]
    main()
    """
)


def _killed_sync(fleet: Fleet, where: str) -> int:
    """Run ``vtreg fleet sync REPO --state STATE``, SIGKILLed at ``where``; its exit status."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    env["VTREG_HOME"] = str(fleet.state.parent / "host-home")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, where, str(fleet.state), "fleet", "sync",
         str(fleet.repo.path), "--state", str(fleet.state)],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120,
        check=False,
    )  # fmt: skip
    return proc.returncode


def _temporaries(fleet: Fleet) -> list[str]:
    return [n for n in os.listdir(fleet.state.parent) if n.startswith(".vtreg-state-")]


def test_a_sync_killed_before_its_rename_keeps_the_old_state(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    plugin = plugin_factory("hello")
    fleet.trust(plugin, key)
    fleet.publish()
    fleet.sync()
    before = fleet.state.read_bytes()
    fleet.registry.revoke(name="hello", reason="recalled")
    fleet.publish()  # a new snapshot: the next sync writes a new state file

    assert _killed_sync(fleet, "rename") == -signal.SIGKILL

    assert fleet.state.read_bytes() == before
    assert len(_temporaries(fleet)) == 1  # what a kill -9 cannot help leaving
    PluginLoader(FleetTrust(fleet.state), None, [plugin.parent]).load_plugin(plugin)
    assert fleet.sync().changed
    with pytest.raises(PolicyError, match="revoked"):
        PluginLoader(FleetTrust(fleet.state), None, [plugin.parent]).load_plugin(plugin)


@pytest.mark.parametrize(
    "statement",
    ["DELETE FROM header", "INSERT INTO header", "INSERT OR REPLACE INTO metadata", "COMMIT"],
)
def test_a_sync_killed_inside_its_in_place_update_keeps_the_old_state(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey, statement: str
) -> None:
    plugin = plugin_factory("hello")
    fleet.trust(plugin, key)
    fleet.publish()
    fleet.sync()
    before = fleet.state.read_bytes()
    header = read_fleet_state(str(fleet.state))
    refresh(fleet.repo, fleet.signer, at=utc_now(), timestamp_expires=timedelta(days=2))

    assert _killed_sync(fleet, f"sql:{statement}") == -signal.SIGKILL

    journal = Path(f"{fleet.state}-journal")  # from the first write on, a hot journal is left
    assert journal.exists() == (statement != "DELETE FROM header")
    assert fleet.state.read_bytes() == before
    state = StateFile(str(fleet.state))  # read-only, as every load opens it
    try:
        assert state.header == header
    finally:
        state.close()
    PluginLoader(FleetTrust(fleet.state), None, [plugin.parent]).load_plugin(plugin)
    fleet.sync()
    assert read_fleet_state(str(fleet.state)).roles["timestamp"].version == 2
    assert not journal.exists()
