"""Root rotation (the chain and its limits) and recovery after an online-key compromise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.conftest import Fleet, Server, mirror, resign, utc_now
from vtreg.registry.fleet._signer import VtregSigner
from vtreg.registry.fleet.repository import rotate_root
from vtreg.registry.fleet.state import read_fleet_state
from vtreg.registry.fleet.sync import SyncRefused
from vtreg.verifier.errors import UsageError
from vtreg.verifier.keys import SigningKey

YEAR = timedelta(days=365)


def _versions(fleet: Fleet) -> dict[str, int]:
    return {name: info.version for name, info in read_fleet_state(str(fleet.state)).roles.items()}


def test_a_host_follows_a_chain_of_root_rotations(fleet: Fleet) -> None:
    fleet.publish()
    fleet.sync()
    second = [SigningKey.generate(f"second{i}") for i in range(2)]
    third = [SigningKey.generate(f"third{i}") for i in range(3)]
    rotate_root(fleet.repo, fleet.root_keys[:2], second, 2, expires=utc_now() + YEAR)
    rotate_root(fleet.repo, second, third, 3, expires=utc_now() + YEAR)
    fleet.publish()
    fleet.sync()
    assert _versions(fleet)["root"] == 3


def test_a_rotation_needs_a_threshold_of_the_old_root_keys(fleet: Fleet) -> None:
    with pytest.raises(UsageError, match="needs 2 of its keys"):
        rotate_root(
            fleet.repo, fleet.root_keys[:1], [SigningKey.generate()], 1, expires=utc_now() + YEAR
        )


def test_a_host_follows_at_most_256_root_rotations(fleet: Fleet, tmp_path: Path) -> None:
    fleet.publish()
    fleet.sync()
    keys = fleet.root_keys[:2]
    for _ in range(257):  # python-tuf's default bound (UpdaterConfig.max_root_rotations)
        rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() + YEAR)
    new_online = SigningKey.generate("online-2")
    rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() + YEAR, online=new_online)
    fleet.signer = VtregSigner(new_online)
    fleet.publish()
    # Root 259 names the new online key; a host stops at 257 and refuses what it signed.
    with pytest.raises(SyncRefused) as refused:
        fleet.sync()
    assert refused.value.code == "metadata-unsigned"


def test_fast_forward_recovery_after_an_online_key_rotation(
    fleet: Fleet, serve: Callable[[Path], Server], tmp_path: Path
) -> None:
    fleet.publish()
    honest = serve(fleet.repo.path)
    fleet.sync(honest.url)
    # Someone with the online key pushes a timestamp and snapshot far ahead.
    attacked = mirror(fleet, tmp_path)

    def ahead(signed: Any) -> None:
        signed.version = 1000

    resign(attacked / "1.snapshot.json", [fleet.online], ahead, to=attacked / "1000.snapshot.json")
    from vtreg.registry.fleet.repository import meta_file

    data = (attacked / "1000.snapshot.json").read_bytes()

    def stamp(signed: Any) -> None:
        signed.version = 1000
        signed.snapshot_meta = meta_file(1000, data)

    resign(attacked / "timestamp.json", [fleet.online], stamp)
    fleet.sync(serve(attacked).url)  # signed by the online key: the host cannot tell
    assert _versions(fleet)["timestamp"] == 1000

    fleet.publish()
    with pytest.raises(SyncRefused) as refused:  # the honest repository now looks like a rollback
        fleet.sync(honest.url)
    assert refused.value.code == "metadata-rollback"

    new_online = SigningKey.generate("online-2")
    rotate_root(
        fleet.repo,
        fleet.root_keys[:2],
        fleet.root_keys,
        2,
        expires=utc_now() + YEAR,
        online=new_online,
    )
    fleet.signer = VtregSigner(new_online)
    fleet.publish()
    fleet.sync(honest.url)
    versions = _versions(fleet)
    assert versions["root"] == 2
    assert versions["timestamp"] < 1000
    assert versions["snapshot"] < 1000


def test_an_expired_intermediate_root_does_not_stop_the_chain(fleet: Fleet) -> None:
    fleet.publish()
    fleet.sync()
    keys = fleet.root_keys[:2]
    rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() - timedelta(hours=1))
    rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() + YEAR)
    fleet.publish()
    fleet.sync()
    assert _versions(fleet)["root"] == 3


def test_an_expired_trusted_root_with_no_newer_one_is_refused(fleet: Fleet) -> None:
    keys = fleet.root_keys[:2]
    rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() - timedelta(hours=1))
    fleet.publish()
    with pytest.raises(SyncRefused) as refused:
        fleet.sync()
    assert refused.value.code == "metadata-expired"
    assert not fleet.state.exists()
