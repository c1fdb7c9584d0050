"""An incremental publish reads and rewrites only what the audit log says changed.

After each change, the repository must say exactly what a full publish of
the whole registry would say: every bin's targets are compared with those a
full publish computes, and a host that syncs decides accordingly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import SuccinctRoles, Targets

from tests.fleet.conftest import Fleet, utc_now
from vtreg.loader import PluginLoader
from vtreg.registry.fleet import FleetTrust
from vtreg.registry.fleet.repository import PublishResult, entry_target, publish
from vtreg.registry.service import Registry
from vtreg.verifier.errors import PolicyError, VtregError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.tree import capture
from vtreg.verifier.trust_state import content_to_json, floor_to_json

Factory = Callable[..., Path]


def publish_changes(fleet: Fleet, *, at_offset: timedelta = timedelta(0)) -> PublishResult:
    """What `vtreg fleet publish` does: incremental when the repository allows it."""
    at = utc_now() + at_offset
    since = fleet.repo.incremental_since(fleet.signer, at=at, snapshot_expires=timedelta(days=7))
    seq, state, touched = fleet.registry.publish_view(since)
    return publish(
        fleet.repo, state, fleet.signer, at=at, timestamp_expires=timedelta(days=1),
        snapshot_expires=timedelta(days=7), targets_expires=timedelta(days=90),
        touched=touched, seq=seq,
    )  # fmt: skip


def published_bins(fleet: Fleet) -> SuccinctRoles:
    """The hash bins the published targets delegate to."""
    current = fleet.repo.current()
    assert current is not None
    assert current.targets.signed.delegations is not None
    roles = current.targets.signed.delegations.succinct_roles
    assert roles is not None
    return roles


def assert_as_full(fleet: Fleet) -> None:
    """Every bin published holds exactly the entries a full publish would give it."""
    state = fleet.registry.full_state()
    current = fleet.repo.current()
    assert current is not None
    roles = published_bins(fleet)
    expected: dict[str, dict[str, object]] = {role: {} for role in roles.get_roles()}
    for name in {c.name for c in (state.contents or {}).values()}:
        entry = {
            "contents": [
                content_to_json(c) for _, c in sorted((state.contents or {}).items())
                if c.name == name
            ],
            "floors": [floor_to_json(n, p, v) for (n, p), v in sorted(state.floors.items())
                       if n == name],
        }  # fmt: skip
        path = f"names/{name}"
        expected[roles.get_role_for_target(path)][path] = entry_target(path, entry)
    for role, targets in expected.items():
        version = current.snapshot.signed.meta[f"{role}.json"].version
        published = fleet.repo.load(f"{version}.{role}.json", Targets).signed.targets
        assert published == targets, role


def test_each_change_rewrites_only_its_bin_and_says_what_a_full_publish_says(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    hello, other = plugin_factory("hello", "1.0.0"), plugin_factory("other")
    fleet.trust(hello, key)
    fleet.trust(other, key)
    first = publish_changes(fleet)
    assert first.touched is None  # nothing published before: in full
    fleet.sync()
    newer = plugin_factory("hello", "2.0.0", parent=hello.parent.parent / "newer")
    fleet.trust(newer, key)
    second = publish_changes(fleet)
    assert second.touched == 1
    assert [w for w in second.written if "bins-" in w]
    assert len(second.written) == 3
    assert_as_full(fleet)
    fleet.registry.revoke(name="other", reason="recalled")
    third = publish_changes(fleet)
    assert third.touched == 1
    assert_as_full(fleet)
    fleet.registry.untrust(name="hello", version="1.0.0", reason="old")
    publish_changes(fleet)
    assert_as_full(fleet)
    assert fleet.sync().changed
    with pytest.raises(PolicyError) as refused:
        PluginLoader(FleetTrust(fleet.state), None, [other.parent]).load_plugin(other)
    assert refused.value.code == "content-revoked"
    assert PluginLoader(FleetTrust(fleet.state), None, [newer.parent]).load_plugin(newer)


def test_nothing_changed_publishes_no_bin(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    fleet.trust(plugin_factory("hello"), key)
    publish_changes(fleet)
    again = publish_changes(fleet)
    assert (again.touched, [w for w in again.written if "bins-" in w]) == (0, [])


def test_an_online_key_rotation_or_bins_near_expiry_publish_in_full(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    from vtreg.registry.fleet._signer import VtregSigner
    from vtreg.registry.fleet.repository import rotate_root

    fleet.trust(plugin_factory("hello"), key)
    publish_changes(fleet)
    # bins expire in 90 days: a publish 85 days on would leave them expiring before the snapshot
    assert publish_changes(fleet, at_offset=timedelta(days=85)).touched is None
    new_online = SigningKey.generate("online2")
    rotate_root(
        fleet.repo, fleet.root_keys[:2], fleet.root_keys[:2], 2,
        expires=utc_now() + timedelta(days=365), online=new_online,
        online_key_file=str(fleet.repo.path / "unused.key"),
    )  # fmt: skip
    fleet.signer = VtregSigner(new_online)
    rotated = publish_changes(fleet)
    assert rotated.touched is None  # every role signed again by the new key
    assert_as_full(fleet)


def test_an_incremental_publish_needs_a_previous_one(fleet: Fleet) -> None:
    seq, state, _ = fleet.registry.publish_view(None)
    with pytest.raises(VtregError, match="needs a previous one"):
        publish(
            fleet.repo, state, fleet.signer, at=utc_now(), timestamp_expires=timedelta(days=1),
            snapshot_expires=timedelta(days=7), targets_expires=timedelta(days=90),
            touched=frozenset(), seq=seq,
        )  # fmt: skip


def test_the_registry_names_what_changed_since_a_seq_on_both_engines(
    registry: Registry, plugin_factory: Factory, key: SigningKey, tmp_path: Path
) -> None:
    from tests.fleet.conftest import sign_plugin

    registry.add_key(key.public_key)
    hello = sign_plugin(plugin_factory("hello"), key)
    registry.trust(capture(hello))
    seq, full, touched = registry.publish_view(None)
    assert touched is None
    assert {c.name for c in (full.contents or {}).values()} == {"hello"}
    many = [sign_plugin(plugin_factory(f"p{i}", parent=tmp_path / f"d{i}"), key) for i in range(3)]
    for plugin in many:
        registry.trust(capture(plugin))
    registry.revoke(name="hello", reason="recalled")
    after, state, changed = registry.publish_view(seq)
    assert after > seq
    assert changed == frozenset({"hello", "p0", "p1", "p2"})
    assert state.names == changed
    assert {c.name for c in (state.contents or {}).values()} == changed
    assert registry.publish_view(after)[2] == frozenset()
    # a log shorter than the seq recorded (a restored backup): everything, in full
    assert registry.publish_view(after + 1000)[2] is None


def _hello_bin_file(fleet: Fleet) -> Path:
    current = fleet.repo.current()
    assert current is not None
    role = published_bins(fleet).get_role_for_target("names/hello")
    return fleet.repo.path / f"{current.snapshot.signed.meta[f'{role}.json'].version}.{role}.json"


def test_a_bin_that_is_not_the_file_the_snapshot_names_is_never_built_on(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    hello = plugin_factory("hello", "1.0.0")
    fleet.trust(hello, key)
    publish_changes(fleet)
    cut = _hello_bin_file(fleet)
    cut.write_bytes(cut.read_bytes()[:-10])  # lost in a crash, say
    full = fleet.publish()  # nothing changed, yet that bin is written anew
    assert [w for w in full.written if "bins-" in w] == [_hello_bin_file(fleet).name]
    assert_as_full(fleet)
    assert fleet.sync().changed
    cut = _hello_bin_file(fleet)
    cut.write_bytes(cut.read_bytes()[:-10])
    fleet.trust(plugin_factory("hello", "2.0.0", parent=hello.parent.parent / "newer"), key)
    with pytest.raises(VtregError, match=r"bins-.*is not the file the snapshot names"):
        publish_changes(fleet)  # it would keep the bin's other names from that file
