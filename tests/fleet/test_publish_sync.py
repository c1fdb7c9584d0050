"""Publish a registry's trust as TUF metadata, sync a host over HTTP, decide loads from it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import SuccinctRoles
from tuf.ngclient import Updater

from tests.fleet.conftest import Fleet, Server, utc_now
from tests.loader.conftest import RecordingAudit
from vtreg.loader import AuditEvent, PluginLoader
from vtreg.registry.fleet import GRACE_ACTION, FleetTrust, read_fleet_state
from vtreg.registry.fleet.state import StateFile
from vtreg.registry.fleet.sync import SyncError
from vtreg.registry.service import Registry
from vtreg.verifier.errors import (
    PolicyError,
    RegistryError,
    UsageError,
    VerificationError,
    VtregError,
)
from vtreg.verifier.keys import SigningKey

Factory = Callable[..., Path]


def test_a_host_loads_what_it_synced_and_refuses_it_once_revoked(
    fleet: Fleet, serve: Callable[[Path], Server], plugin_factory: Factory, key: SigningKey
) -> None:
    plugin = plugin_factory("hello", "1.0.0")
    fleet.trust(plugin, key)
    fleet.publish()
    server = serve(fleet.repo.path)
    assert fleet.sync(server.url).changed

    audit = RecordingAudit()
    loader = PluginLoader(FleetTrust(fleet.state), audit, [plugin.parent])
    assert loader.load_plugin(plugin).execute().success

    fleet.registry.revoke(name="hello", reason="recalled")
    fleet.publish()
    assert fleet.sync(server.url).changed
    with pytest.raises(PolicyError, match=r"revoked.*recalled") as refused:
        loader.load_plugin(plugin)  # the same FleetTrust reads the replaced state file
    assert refused.value.code == "content-revoked"
    assert [(e.action, e.outcome) for e in audit.events] == [
        ("plugin.load", "allowed"), ("plugin.load", "refused")
    ]  # fmt: skip


def test_the_state_carries_keys_contents_thresholds_pins_and_floors(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey, tmp_path: Path
) -> None:
    old = plugin_factory("tool", "1.0.0", parent=tmp_path / "old")
    new = plugin_factory("tool", "2.0.0")
    fleet.trust(old, key, pin=True)
    fleet.trust(new, key)
    fleet.publish()
    fleet.sync()

    synced = StateFile(str(fleet.state)).full_trust()
    assert synced == fleet.registry.full_state()
    assert synced.floors == {("tool", next(iter(synced.floors))[1]): "2.0.0"}
    assert sorted(c.pinned for c in (synced.contents or {}).values()) == [False, True]


def test_publish_rewrites_only_the_bin_a_change_touches(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    first = fleet.publish()
    assert len(first.written) == 256 + 3  # every bin, targets, snapshot, timestamp

    fleet.trust(plugin_factory("hello"), key)
    second = fleet.publish()
    bins = [name for name in second.written if ".bins-" in name]
    assert len(bins) == 1
    assert second.written == (bins[0], f"{second.snapshot}.snapshot.json", "timestamp.json")
    assert second.targets == first.targets  # the keys did not change

    unchanged = fleet.publish()
    assert unchanged.written == ("timestamp.json",)


def test_a_host_with_nothing_new_downloads_only_the_timestamp(
    fleet: Fleet, serve: Callable[[Path], Server], plugin_factory: Factory, key: SigningKey
) -> None:
    fleet.trust(plugin_factory("hello"), key)
    fleet.publish()
    server = serve(fleet.repo.path)
    fleet.sync(server.url)
    from vtreg.registry.fleet.repository import refresh

    refresh(fleet.repo, fleet.signer, at=utc_now(), timestamp_expires=timedelta(days=1))
    again = fleet.sync(server.url)
    assert not again.changed
    assert 0 < again.downloaded < 1024
    assert again.downloaded == len((fleet.repo.path / "timestamp.json").read_bytes())


def test_python_tufs_own_updater_refreshes_from_a_vtreg_repository(
    fleet: Fleet,
    serve: Callable[[Path], Server],
    plugin_factory: Factory,
    key: SigningKey,
    tmp_path: Path,
) -> None:
    fleet.trust(plugin_factory("hello"), key)
    fleet.publish()
    server = serve(fleet.repo.path)
    cache = tmp_path / "tuf-cache"
    cache.mkdir()
    root = (fleet.repo.path / "1.root.json").read_bytes()
    updater = Updater(str(cache), server.url, bootstrap=root)
    updater.refresh()
    target = updater.get_targetinfo("names/hello")
    assert target is not None
    assert [c["name"] for c in target.custom["contents"]] == ["hello"]
    key_target = updater.get_targetinfo(f"keys/{key.keyid}")
    assert key_target is not None
    assert key_target.custom["key"]["keyid"] == key.keyid


def test_a_refused_sync_changes_nothing_in_the_state(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    fleet.publish()
    fleet.sync()
    before = fleet.state.read_bytes()
    fleet.trust(plugin_factory("hello"), key)
    fleet.publish()
    (fleet.repo.path / "timestamp.json").write_bytes(b'{"signed": {}, "signatures": []}')
    with pytest.raises(VerificationError):
        fleet.sync()
    assert fleet.state.read_bytes() == before


def test_an_unreachable_repository_is_could_not_decide(fleet: Fleet) -> None:
    fleet.publish()
    with pytest.raises(SyncError, match="could not read the repository"):
        fleet.sync("http://127.0.0.1:9/")  # discard port: nothing listens
    assert not fleet.state.exists()


def test_the_first_sync_needs_a_root(fleet: Fleet) -> None:
    from vtreg.registry.fleet.sync import sync

    fleet.publish()
    with pytest.raises(UsageError, match="--root"):
        sync(str(fleet.repo.path), str(fleet.state), root=None, clock=utc_now())


# --- offline policy ---


def _expired_state(fleet: Fleet, plugin_factory: Factory, key: SigningKey) -> Path:
    """A host state whose timestamp expired an hour ago (synced two hours ago)."""
    plugin = plugin_factory("hello")
    fleet.trust(plugin, key)
    fleet.publish(timestamp=timedelta(hours=2))
    fleet.sync()
    return plugin


def test_an_expired_state_refuses_loads_with_trust_expired(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    plugin = _expired_state(fleet, plugin_factory, key)
    later = utc_now() + timedelta(hours=3)
    loader = PluginLoader(FleetTrust(fleet.state, clock=lambda: later), None, [plugin.parent])
    with pytest.raises(PolicyError, match=r"expired at .*run `vtreg fleet sync`") as refused:
        loader.load_plugin(plugin)
    assert refused.value.code == "trust-expired"


def test_a_grace_allows_last_known_good_loads_each_audited_as_such(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    plugin = _expired_state(fleet, plugin_factory, key)
    later = utc_now() + timedelta(hours=3)
    audit = RecordingAudit()
    trust = FleetTrust(fleet.state, grace=timedelta(hours=2), audit=audit, clock=lambda: later)
    loader = PluginLoader(trust, audit, [plugin.parent])
    loader.load_plugin(plugin)
    loader.load_plugin(plugin)
    assert [e.action for e in audit.events] == [GRACE_ACTION, "plugin.load"] * 2
    assert audit.events[0].details["grace_seconds"] == 7200

    much_later = utc_now() + timedelta(hours=5)
    trust.clock = lambda: much_later
    with pytest.raises(PolicyError, match="grace is over"):
        loader.load_plugin(plugin)


class _CountingAudit:
    """The host's real audit registry, counting how often a write was attempted."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.attempts = 0

    def record(self, event: AuditEvent) -> None:
        self.attempts += 1
        self.registry.record(event)


def test_a_grace_load_the_host_audit_cannot_record_waits_once(
    fleet: Fleet,
    plugin_factory: Factory,
    key: SigningKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = _expired_state(fleet, plugin_factory, key)
    later = utc_now() + timedelta(hours=3)
    monkeypatch.setenv("VTREG_LOCK_TIMEOUT", "1")
    audit_file = tmp_path / "fleet-audit.db"
    with Registry.open(f"sqlite:///{audit_file}") as registry:
        audit = _CountingAudit(registry)
        trust = FleetTrust(fleet.state, grace=timedelta(hours=2), audit=audit, clock=lambda: later)
        loader = PluginLoader(trust, audit, [plugin.parent])
        with contextlib.closing(sqlite3.connect(audit_file, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the log
            with pytest.raises(RegistryError, match=r"gave up waiting for a lock after 1 s"):
                loader.load_plugin(plugin)

        # The last-known-good event was not recorded: no error event is tried after it
        # (a second wait), and nothing is logged besides the one error the host sees.
        assert audit.attempts == 1
        assert not [r for r in caplog.records if "could not audit" in r.getMessage()]
        assert registry.verify_audit().events == 0


def test_a_clock_set_back_does_not_revive_an_expired_state(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    plugin = plugin_factory("hello")
    fleet.trust(plugin, key)
    fleet.publish(timestamp=timedelta(hours=2))
    # The last sync happened (by the host's clock then) after the timestamp expired...
    fleet.sync()
    state = read_fleet_state(str(fleet.state))
    from dataclasses import replace

    from vtreg.registry.fleet.state import update_fleet_state

    later = replace(state, synced_at=state.expires + timedelta(1))
    update_fleet_state(str(fleet.state), later, {})
    # ...so a clock that now reads before the expiry is not believed.
    loader = PluginLoader(FleetTrust(fleet.state, clock=utc_now), None, [plugin.parent])
    with pytest.raises(PolicyError) as refused:
        loader.load_plugin(plugin)
    assert refused.value.code == "trust-expired"


def test_a_grace_needs_an_audit_sink(fleet: Fleet) -> None:
    with pytest.raises(UsageError, match="audit"):
        FleetTrust(fleet.state, grace=timedelta(hours=1))


def test_a_host_of_a_few_names_downloads_only_their_bins(
    fleet: Fleet, serve: Callable[[Path], Server], plugin_factory: Factory, key: SigningKey
) -> None:
    from vtreg.registry.fleet.sync import sync
    from vtreg.verifier.errors import VtregError

    hello, other = plugin_factory("hello"), plugin_factory("other")
    fleet.trust(hello, key)
    fleet.trust(other, key)
    fleet.publish()
    server = serve(fleet.repo.path)
    root = (fleet.repo.path / "1.root.json").read_bytes()
    everything = sync(server.url, str(fleet.state) + ".all", root=root, clock=utc_now())
    few = sync(server.url, str(fleet.state), root=root, clock=utc_now(), names=["hello"])
    few_roles = StateFile(str(fleet.state)).metadata()
    assert [role for role in few_roles if role.startswith("bins-")] == [
        SuccinctRoles([], 1, 8, "bins").get_role_for_target("names/hello")
    ]
    assert len(StateFile(str(fleet.state) + ".all").metadata()) == 4 + 256
    assert few.downloaded < everything.downloaded / 2

    loader = PluginLoader(FleetTrust(fleet.state), None, [hello.parent])
    assert loader.load_plugin(hello).execute().success
    with pytest.raises(VtregError, match="does not hold other") as undecided:
        loader.load_plugin(other)
    assert not isinstance(undecided.value, VerificationError)  # could not decide, not "no"


def test_a_sync_with_nothing_new_updates_the_header_in_place_and_keeps_the_rows(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    from vtreg.registry.fleet.repository import refresh

    fleet.trust(plugin_factory("hello"), key)
    fleet.publish()
    fleet.sync()
    before = StateFile(str(fleet.state))
    rows = before.full_trust()
    identity = fleet.state.stat().st_ino
    refresh(fleet.repo, fleet.signer, at=utc_now(), timestamp_expires=timedelta(days=2))
    fleet.sync()
    after = StateFile(str(fleet.state))
    assert fleet.state.stat().st_ino == identity  # not rewritten: one transaction in place
    assert after.header.roles["timestamp"].version == before.header.roles["timestamp"].version + 1
    assert after.header.expires > before.header.expires
    assert after.full_trust() == rows
    assert (
        after.metadata(["timestamp"])["timestamp"]
        == (fleet.repo.path / "timestamp.json").read_text()
    )
    fleet.trust(plugin_factory("other"), key)
    fleet.publish()
    assert fleet.sync().changed  # a new snapshot: a new file, renamed over the old one
    assert fleet.state.stat().st_ino != identity


def test_a_load_reads_only_the_row_of_the_name_it_claims(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey
) -> None:
    """Another name's row, damaged, does not matter to this load: it is never read."""
    import sqlite3

    hello, other = plugin_factory("hello"), plugin_factory("other")
    fleet.trust(hello, key)
    fleet.trust(other, key)
    fleet.publish()
    fleet.sync()
    with sqlite3.connect(fleet.state) as db:
        db.execute("UPDATE names SET entry = 'not json' WHERE name = 'other'")
    db.close()
    loader = PluginLoader(FleetTrust(fleet.state), None, [hello.parent])
    assert loader.load_plugin(hello).execute().success
    with pytest.raises(VtregError, match="malformed entry"):
        PluginLoader(FleetTrust(fleet.state), None, [other.parent]).load_plugin(other)
