"""A fleet host decides about a plugin of several platforms as the registry does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fleet.conftest import Fleet
from tests.helpers import foreign_library
from tests.loader.conftest import RecordingAudit
from vtreg.loader import PluginLoader
from vtreg.registry.fleet import FleetTrust
from vtreg.registry.fleet.state import StateFile
from vtreg.verifier.errors import PolicyError
from vtreg.verifier.keys import SigningKey

Factory = Callable[..., Path]


def test_a_fleet_host_keeps_the_platforms_and_their_floors(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey, tmp_path: Path
) -> None:
    both = plugin_factory("tool", "1.0.0", parent=tmp_path / "trusted")
    (both / "libtool.dylib").write_bytes(foreign_library("macos-arm64"))
    linux_only = plugin_factory("tool", "2.0.0", parent=tmp_path / "newer")
    fleet.trust(both, key)
    fleet.trust(linux_only, key)
    fleet.publish()
    fleet.sync()

    synced = StateFile(str(fleet.state)).full_trust()
    assert synced == fleet.registry.full_state()
    assert sorted(c.platforms for c in (synced.contents or {}).values()) == [
        ("linux-x86_64",),
        ("linux-x86_64", "macos-arm64"),
    ]
    assert synced.floors == {("tool", "linux-x86_64"): "2.0.0", ("tool", "macos-arm64"): "1.0.0"}

    loader = PluginLoader(FleetTrust(fleet.state), RecordingAudit(), [both.parent])
    with pytest.raises(PolicyError, match="for linux-x86_64") as refused:
        loader.load_plugin(both)
    assert refused.value.code == "rollback"
