"""The host's fleet state is a trust store: the registry's owner and mode rules apply to it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fleet.conftest import Fleet
from tests.helpers import c_string, invoke_cli, ok, one_line_error, run_cli
from tests.loader.conftest import RecordingAudit
from vtreg.loader import PluginLoader
from vtreg.registry.fleet import FleetTrust
from vtreg.verifier.errors import VerificationError, VtregError, WriteError
from vtreg.verifier.keys import SigningKey

Factory = Callable[..., Path]
OTHER_UID = 12345  # any uid but this process's and root's
ATTACKS = [
    pytest.param("other-owner", f"belongs to uid {OTHER_UID}, not to this user", id="other-owner"),
    pytest.param(0o020, r"is group- or world-writable \(0\d[2367]\d\)", id="group-writable"),
    pytest.param(0o002, r"is group- or world-writable \(0\d\d[2367]\)", id="world-writable"),
]


def _attack(victim: Path, attack: str | int) -> None:
    if attack == "other-owner":
        if os.geteuid() != 0:
            pytest.skip("giving a file to another user needs root")
        os.chown(victim, OTHER_UID, OTHER_UID)
    else:
        assert isinstance(attack, int)
        victim.chmod(victim.stat().st_mode | attack)


def _undo(victim: Path, mode: int) -> None:
    os.chown(victim, os.geteuid(), os.getegid())
    victim.chmod(mode)


@pytest.mark.parametrize("target", ["directory", "file"])
@pytest.mark.parametrize(("attack", "message"), ATTACKS)
def test_a_state_someone_else_could_swap_is_never_decided_from(
    fleet: Fleet,
    plugin_factory: Factory,
    key: SigningKey,
    tmp_path: Path,
    target: str,
    attack: str | int,
    message: str,
) -> None:
    marker = tmp_path / "constructor-ran"
    plugin = plugin_factory("hello", source="variants.c", defines={"MARKER": c_string(str(marker))})
    plugin.chmod(0o755)
    fleet.trust(plugin, key)
    fleet.publish()
    (tmp_path / "host").mkdir(mode=0o700)
    state = tmp_path / "host" / "fleet.state"
    assert fleet.sync(state=state).changed
    host = {"VTREG_HOME": str(tmp_path / "host-home")}
    trust = FleetTrust(state)
    trust.fleet_state()  # a long-lived host has it open already
    victim = state.parent if target == "directory" else state
    mode = victim.stat().st_mode & 0o7777
    assert (state.parent.stat().st_mode & 0o777, state.stat().st_mode & 0o777) == (0o700, 0o600)

    _attack(victim, attack)
    if target == "directory":
        # What the directory's new writer does: a state of their own, renamed over.
        shutil.copy2(state, state.with_name("theirs"))
        state.with_name("theirs").replace(state)
    what = f"the fleet state {target} .*{message}"

    audit = RecordingAudit()
    with pytest.raises(VtregError, match=what) as raised:
        PluginLoader(trust, audit, [plugin.parent]).load_plugin(plugin)
    assert not isinstance(raised.value, VerificationError)  # could not decide
    assert [e.outcome for e in audit.events] == ["error"]
    with pytest.raises(VtregError, match=what):
        FleetTrust(state).fleet_state()
    one_line_error(invoke_cli("verify", plugin, "--fleet", state, env=host), 3, what)
    one_line_error(run_cli("run", plugin, "--fleet", state, env=host), 3, what)
    one_line_error(invoke_cli("fleet", "status", "--state", state, env=host), 3, what)
    assert not marker.exists(), "a load decided from a state another user could swap ran"

    _undo(victim, mode)  # the control: the same state, as a sync made it, loads
    ok(run_cli("run", plugin, "--fleet", state, env=host))
    assert marker.exists()


def test_a_sync_makes_the_state_private_whatever_the_umask(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey, tmp_path: Path
) -> None:
    fleet.trust(plugin_factory("hello"), key)
    fleet.publish()
    state = tmp_path / "host" / "fleet.state"
    previous = os.umask(0)
    try:
        fleet.sync(state=state)  # its directory is created
        fleet.publish()
        fleet.sync(state=state)  # nothing new: the header updated in place, with its journal
    finally:
        os.umask(previous)
    assert state.parent.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in state.parent.iterdir()} == {
        "fleet.state": 0o600
    }


@pytest.mark.parametrize(("attack", "message"), ATTACKS)
def test_a_sync_never_writes_a_state_into_a_directory_others_could_write(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey, tmp_path: Path,
    attack: str | int, message: str,
) -> None:  # fmt: skip
    fleet.trust(plugin_factory("hello"), key)
    fleet.publish()
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    _attack(shared, attack)

    with pytest.raises(WriteError, match=f"the fleet state directory .*{message}"):
        fleet.sync(state=shared / "fleet.state")
    assert list(shared.iterdir()) == []
