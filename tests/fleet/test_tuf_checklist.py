"""The scenarios of python-tuf's tests/test_updater_top_level_update.py that need more than one
mirror's change: an expiry that passes between two syncs, a chain of roots, a recovery.

Each test syncs a host from a repository vtreg wrote, over HTTP on 127.0.0.1, through
:func:`vtreg.registry.fleet.sync.sync` (what ``vtreg fleet sync`` calls; the tampered
``--root`` case runs the command itself). A refusal must carry its code and leave the
state file byte for byte as it was. ngclient judges expiry by the real clock, so the
expiries that must pass are a few seconds long and the test sleeps past them; vtreg's own
reference time is a parameter and needs no sleep. docs/fleet.md maps every scenario.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, Snapshot, SuccinctRoles, Timestamp

from tests.fleet.conftest import Fleet, Server, mirror, resign, utc_now
from tests.helpers import invoke_cli, one_line_error
from vtreg.registry.fleet._signer import VtregSigner
from vtreg.registry.fleet.repository import meta_file, rotate_root
from vtreg.registry.fleet.state import StateFile, read_fleet_state
from vtreg.registry.fleet.sync import SyncRefused
from vtreg.verifier.keys import SigningKey

Factory = Callable[..., Path]

# Long enough for a publish and a sync on a loaded machine, short enough to wait out.
SHORT = timedelta(seconds=4)
YEAR = timedelta(days=365)


def _versions(fleet: Fleet) -> dict[str, int]:
    return {name: info.version for name, info in read_fleet_state(str(fleet.state)).roles.items()}


def _metadata(fleet: Fleet) -> dict[str, str]:
    state = StateFile(str(fleet.state))
    try:
        return state.metadata()
    finally:
        state.close()


def _bin_version(fleet: Fleet, role: str) -> int:
    version: int = Metadata.from_bytes(_metadata(fleet)[role].encode("utf-8")).signed.version
    return version


def _wait_until_expired(fleet: Fleet) -> None:
    """Sleep until the first role the host's state trusts has expired (by the real clock)."""
    expires = read_fleet_state(str(fleet.state)).expires
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
    assert datetime.now(UTC) > expires


def _refused(fleet: Fleet, source: str, code: str, **kwargs: Any) -> None:
    """The sync from ``source`` is refused with ``code`` and the state file is untouched."""
    before = fleet.state.read_bytes()
    with pytest.raises(SyncRefused) as refused:
        fleet.sync(source, **kwargs)
    assert refused.value.code == code, refused.value
    assert fleet.state.read_bytes() == before


def _bin_of(name: str) -> str:
    return SuccinctRoles([], 1, 8, "bins").get_role_for_target(f"names/{name}")


# --- expiry between two syncs ---


def test_expired_metadata_a_host_whose_timestamp_and_snapshot_expired_syncs_again(
    fleet: Fleet, serve: Callable[[Path], Server], plugin_factory: Factory, key: SigningKey
) -> None:
    server = serve(fleet.repo.path)
    fleet.publish(timestamp=SHORT, snapshot=SHORT)
    fleet.sync(server.url)
    _wait_until_expired(fleet)  # the local timestamp and snapshot are now expired
    fleet.trust(plugin_factory("hello"), key)
    fleet.publish()

    assert fleet.sync(server.url).changed
    assert _versions(fleet)["timestamp"] == _versions(fleet)["snapshot"] == 2
    assert read_fleet_state(str(fleet.state)).expires > utc_now()
    assert StateFile(str(fleet.state)).full_trust() == fleet.registry.full_state()


def _replay_the_older_timestamp(fleet: Fleet, attack: Path, older: bytes) -> None:
    (attack / "timestamp.json").write_bytes(older)  # v1, signed, not expired


def _name_the_older_snapshot(fleet: Fleet, attack: Path, older: bytes) -> None:
    del older
    # Online key: snapshot v1 signed again, unexpired and naming the roles snapshot v2 names,
    # and a fresh timestamp v3 naming it: only the expired timestamp's v2 stands in the way.
    snapshot = resign(
        attack / "1.snapshot.json",
        [fleet.online],
        lambda signed: setattr(signed, "expires", utc_now() + timedelta(days=1)),
    )

    def edit(signed: Timestamp) -> None:
        signed.version += 1
        signed.expires = utc_now() + timedelta(days=1)
        signed.snapshot_meta = meta_file(1, snapshot)

    resign(attack / "timestamp.json", [fleet.online], edit)


@pytest.mark.parametrize(
    "rollback",
    [
        pytest.param(_replay_the_older_timestamp, id="expired_timestamp_version_rollback"),
        pytest.param(_name_the_older_snapshot, id="expired_timestamp_snapshot_rollback"),
    ],
)
def test_an_expired_local_timestamp_still_guards_against_rollback(
    fleet: Fleet,
    serve: Callable[[Path], Server],
    tmp_path: Path,
    rollback: Callable[[Fleet, Path, bytes], None],
) -> None:
    fleet.publish(snapshot=SHORT)  # timestamp v1 (a day), snapshot v1 (soon expired)
    older = (fleet.repo.path / "timestamp.json").read_bytes()
    published = fleet.publish(timestamp=SHORT)  # timestamp v2 (soon expired), snapshot v2
    assert (published.timestamp, published.snapshot) == (2, 2)  # the same roles as v1 names
    honest = serve(fleet.repo.path)
    fleet.sync(honest.url)
    _wait_until_expired(fleet)  # the state's timestamp v2 has expired
    attack = mirror(fleet, tmp_path)
    rollback(fleet, attack, older)

    _refused(fleet, serve(attack).url, "metadata-rollback")
    fleet.publish()
    fleet.sync(honest.url)  # the honest repository's next timestamp is taken
    assert _versions(fleet)["timestamp"] == 3


def test_timestamp_eq_versions_check_a_changed_timestamp_of_the_same_version_is_discarded(
    fleet: Fleet, serve: Callable[[Path], Server], tmp_path: Path
) -> None:
    fleet.publish()
    fleet.sync(serve(fleet.repo.path).url)
    kept = _metadata(fleet)
    attack = mirror(fleet, tmp_path)

    def edit(signed: Timestamp) -> None:  # signed by the online key, version unchanged
        signed.snapshot_meta.version = 100

    resign(attack / "timestamp.json", [fleet.online], edit)

    result = fleet.sync(serve(attack).url)  # not an attack to python-tuf: the old one is kept
    assert not result.changed
    assert _metadata(fleet) == kept
    assert _versions(fleet)["snapshot"] == 1


# --- the trusted root ---


def _strip_signatures(path: Path) -> bytes:
    md: Metadata[Any] = Metadata.from_bytes(path.read_bytes())
    md.signatures.clear()
    return md.to_bytes()


def test_trusted_root_unsigned_a_root_file_without_its_signatures_is_refused(
    fleet: Fleet, serve: Callable[[Path], Server], tmp_path: Path
) -> None:
    fleet.publish()
    root = tmp_path / "vtreg-root.json"
    root.write_bytes(_strip_signatures(fleet.repo.path / "1.root.json"))
    home = {"VTREG_HOME": str(tmp_path / "host")}

    synced = invoke_cli(
        "fleet", "sync", serve(fleet.repo.path).url, "--state", fleet.state, "--root", root,
        env=home,
    )  # fmt: skip

    one_line_error(synced, 1, r"refused: arbitrary metadata: .*root")
    assert not fleet.state.exists()


def test_trusted_root_unsigned_the_states_root_without_its_signatures_is_refused(
    fleet: Fleet, serve: Callable[[Path], Server]
) -> None:
    fleet.publish()
    server = serve(fleet.repo.path)
    fleet.sync(server.url)
    unsigned = _strip_signatures(fleet.repo.path / "1.root.json").decode("utf-8")
    db = sqlite3.connect(fleet.state)  # the host's own file, edited behind vtreg's back
    with db:
        db.execute("UPDATE metadata SET text = ? WHERE role = 'root'", (unsigned,))
    db.close()

    _refused(fleet, server.url, "metadata-unsigned")


def test_trusted_root_expired_is_refused_then_recovers_when_a_newer_root_appears(
    fleet: Fleet, serve: Callable[[Path], Server]
) -> None:
    keys = fleet.root_keys[:2]
    rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() + SHORT)
    fleet.publish()
    server = serve(fleet.repo.path)
    fleet.sync(server.url)
    assert _versions(fleet)["root"] == 2
    _wait_until_expired(fleet)  # the root the state trusts is now expired

    _refused(fleet, server.url, "metadata-expired")  # no newer root yet
    rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() + YEAR)
    fleet.publish()
    fleet.sync(server.url)
    assert _versions(fleet)["root"] == 3


def test_intermediate_root_incorrectly_signed_stops_the_chain_before_a_good_final_root(
    fleet: Fleet, serve: Callable[[Path], Server], tmp_path: Path
) -> None:
    fleet.publish()
    honest = serve(fleet.repo.path)
    fleet.sync(honest.url)
    keys = fleet.root_keys[:2]
    rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() + YEAR)
    rotate_root(fleet.repo, keys, keys, 2, expires=utc_now() + YEAR)
    fleet.publish()
    attack = mirror(fleet, tmp_path)
    resign(attack / "2.root.json", [])  # v2 unsigned; v3 stays signed by v2's keys

    _refused(fleet, serve(attack).url, "metadata-unsigned")
    assert _versions(fleet)["root"] == 1
    fleet.sync(honest.url)  # the same v3 through an honest v2 is accepted
    assert _versions(fleet)["root"] == 3


# --- rollback checked against a local snapshot the new timestamp no longer names ---


def test_snapshot_rollback_with_local_snapshot_hash_mismatch(
    fleet: Fleet, serve: Callable[[Path], Server], tmp_path: Path, other_key: SigningKey
) -> None:
    fleet.publish()
    fleet.registry.add_key(other_key.public_key)
    fleet.publish()  # targets v2 in snapshot v2
    fleet.sync(serve(fleet.repo.path).url)
    attack = mirror(fleet, tmp_path)

    def older_targets(signed: Snapshot) -> None:  # online key: snapshot v3 naming targets v1
        signed.version = 3
        signed.meta["targets.json"] = meta_file(1, (attack / "1.targets.json").read_bytes())

    snapshot = resign(
        attack / "2.snapshot.json", [fleet.online], older_targets, to=attack / "3.snapshot.json"
    )

    def stamp(signed: Timestamp) -> None:
        signed.version += 1
        signed.snapshot_meta = meta_file(3, snapshot)

    resign(attack / "timestamp.json", [fleet.online], stamp)
    served = Metadata[Timestamp].from_bytes((attack / "timestamp.json").read_bytes())
    local = meta_file(2, _metadata(fleet)["snapshot"].encode("utf-8"))
    assert served.signed.snapshot_meta.hashes != local.hashes  # the local one no longer matches

    _refused(fleet, serve(attack).url, "metadata-rollback")


# --- fast-forward recovery of targets and the bins ---


def test_new_targets_fast_forward_recovery_of_targets_and_a_bin(
    fleet: Fleet,
    serve: Callable[[Path], Server],
    plugin_factory: Factory,
    key: SigningKey,
    other_key: SigningKey,
    tmp_path: Path,
) -> None:
    fleet.trust(plugin_factory("hello"), key)
    fleet.publish()
    honest = serve(fleet.repo.path)
    fleet.sync(honest.url)
    # Someone holding the online key pushes targets and hello's bin far ahead.
    attack, role = mirror(fleet, tmp_path), _bin_of("hello")

    def ahead(signed: Any) -> None:
        signed.version = 5000

    for name in ("targets", role):
        resign(attack / f"1.{name}.json", [fleet.online], ahead, to=attack / f"5000.{name}.json")

    def snapshot_ahead(signed: Snapshot) -> None:
        signed.version = 2
        for name in ("targets", role):
            data = (attack / f"5000.{name}.json").read_bytes()
            signed.meta[f"{name}.json"] = meta_file(5000, data)

    snapshot = resign(
        attack / "1.snapshot.json", [fleet.online], snapshot_ahead, to=attack / "2.snapshot.json"
    )

    def stamp(signed: Timestamp) -> None:
        signed.version = 2
        signed.snapshot_meta = meta_file(2, snapshot)

    resign(attack / "timestamp.json", [fleet.online], stamp)
    fleet.sync(serve(attack).url)  # signed by the online key: the host cannot tell
    assert (_versions(fleet)["targets"], _bin_version(fleet, role)) == (5000, 5000)

    fleet.registry.add_key(other_key.public_key)
    fleet.publish()
    fleet.trust(plugin_factory("other"), key)
    fleet.publish()  # timestamp and snapshot v3, targets v2: a rollback to this host
    _refused(fleet, honest.url, "metadata-rollback")

    new_online = SigningKey.generate("online-2")
    keys = fleet.root_keys[:2]
    rotate_root(fleet.repo, keys, fleet.root_keys, 2, expires=utc_now() + YEAR, online=new_online)
    fleet.signer = VtregSigner(new_online)
    fleet.publish()  # every role signed again with the new key
    fleet.sync(honest.url)
    assert _versions(fleet)["targets"] < 5000
    assert _bin_version(fleet, role) < 5000
    assert StateFile(str(fleet.state)).full_trust() == fleet.registry.full_state()


# --- the table in docs/fleet.md ---

ROOT = Path(__file__).parents[2]
# Every test of python-tuf's tests/test_updater_top_level_update.py (TestRefresh).
PYTHON_TUF_SCENARIOS = [
    "first_time_refresh",
    "trusted_root_missing",
    "trusted_root_expired",
    "trusted_root_unsigned",
    "max_root_rotations",
    "intermediate_root_incorrectly_signed",
    "intermediate_root_expired",
    "final_root_incorrectly_signed",
    "new_root_same_version",
    "new_root_nonconsecutive_version",
    "final_root_expired",
    "new_timestamp_unsigned",
    "expired_timestamp_version_rollback",
    "expired_timestamp_snapshot_rollback",
    "new_timestamp_version_rollback",
    "new_timestamp_snapshot_rollback",
    "new_timestamp_expired",
    "new_timestamp_fast_forward_recovery",
    "new_snapshot_hash_mismatch",
    "new_snapshot_unsigned",
    "new_snapshot_version_mismatch",
    "new_snapshot_version_rollback",
    "new_snapshot_fast_forward_recovery",
    "new_snapshot_expired",
    "new_targets_hash_mismatch",
    "new_targets_unsigned",
    "new_targets_version_mismatch",
    "new_targets_expired",
    "compute_metafile_hashes_length",
    "new_targets_fast_forward_recovery",
    "not_loading_targets_twice",
    "snapshot_rollback_with_local_snapshot_hash_mismatch",
    "load_metadata_from_cache",
    "expired_metadata",
    "max_metadata_lengths",
    "timestamp_eq_versions_check",
]


def _checklist_rows() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "fleet.md").read_text()
    table = text.split("| python-tuf scenario | vtreg test (`tests/fleet/...`) |", 1)[1]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        scenario, tests = line.strip("|").split(" | ", 1)
        rows.append((scenario, tests))
    return rows


def test_the_checklist_in_fleet_md_maps_every_scenario_to_tests_that_exist() -> None:
    rows = _checklist_rows()
    mapped = [name for scenario, _ in rows for name in re.findall(r"`test_(\w+)`", scenario)]
    assert sorted(mapped) == sorted(PYTHON_TUF_SCENARIOS)  # each once, none left out
    missing = []
    for _, tests in rows:
        path, test = None, None
        for span in re.findall(r"`([^`]+)`", tests):
            found = re.fullmatch(r"(test_\w+\.py::|\.\.\.::)?(test_\w+|\.\.\.)(?:\[(.+)\])?", span)
            if found is None:
                continue  # a code or a file name, not a test
            where, name, ids = found.groups()
            if where not in (None, "...::"):
                path, test = ROOT / "tests" / "fleet" / where[:-2], None
            assert path is not None, span
            source = path.read_text()
            if name != "...":
                test = name
            elif test is None:  # `FILE::...[id]`: the one (parametrized) test of FILE
                (test,) = re.findall(r"^def (test_\w+)\(", source, re.MULTILINE)
            if not re.search(rf"^def {test}\(", source, re.MULTILINE):
                missing.append(f"{path.name}::{test}")
            missing += [f"{path.name}::{test}[{i}]" for i in (ids or "").split(",") if i and
                        f'id="{i}"' not in source]  # fmt: skip
    assert missing == []
