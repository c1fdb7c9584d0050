"""The loader with the registry as its TrustPolicy and AuditSink (both engines)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from tests.databases import chain_head_held
from tests.loader.conftest import Build
from tests.signing import add_sha512, sign_custom_statement
from vtreg.loader import Isolation, PluginLoader
from vtreg.registry.service import Registry
from vtreg.verifier.errors import PolicyError, RegistryError, SignatureError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.tree import capture


@pytest.fixture
def trusted_registry(registry: Registry, key: SigningKey) -> Registry:
    registry.add_key(key.public_key)
    return registry


def test_only_trusted_content_loads_and_every_decision_is_audited(
    trusted_registry: Registry, build: Build, trusted: Path, key: SigningKey, tmp_path: Path
) -> None:
    loader = PluginLoader(trusted_registry, trusted_registry, [trusted])
    marker = tmp_path / "constructor-ran"
    plugin_dir = build("hello", marker=marker)

    with pytest.raises(PolicyError, match="is signed but not trusted"):
        loader.load_plugin(plugin_dir)
    assert not marker.exists()

    trusted_registry.trust(capture(plugin_dir))
    plugin = loader.load_plugin(plugin_dir)
    assert plugin.execute().success

    trusted_registry.revoke_key(key.keyid, "compromised")
    with pytest.raises(SignatureError, match=r"key revoked \(compromised\)"):
        loader.load_plugin(plugin_dir)

    loads = trusted_registry.audit_events(action="plugin.load")
    assert [(e.outcome, e.plugin) for e in reversed(loads)] == [
        ("refused", "hello"), ("allowed", "hello"), ("refused", "hello")
    ]  # fmt: skip
    assert loads[0].keyids == (key.keyid,)  # the revoked key's signature is named
    assert trusted_registry.verify_audit().ok


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_decision_the_registry_cannot_record_is_not_loaded(
    trusted_registry: Registry,
    database_url: str,
    build: Build,
    trusted: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolation: Isolation,
) -> None:
    # Fail closed, with the real audit log: another session holds its chain head.
    marker = tmp_path / "constructor-ran"
    plugin_dir = build("hello", marker=marker)
    trusted_registry.trust(capture(plugin_dir))
    monkeypatch.setenv("VTREG_LOCK_TIMEOUT", "1")  # read when a registry is opened
    with Registry.open(database_url) as registry:
        loader = PluginLoader(registry, registry, [trusted], isolation=isolation)
        with (
            chain_head_held(database_url),
            pytest.raises(RegistryError, match=r"gave up waiting for a lock after 1 s"),
        ):
            loader.load_plugin(plugin_dir)

    assert not marker.exists(), "a load that was not recorded ran the plugin's constructor"
    assert trusted_registry.audit_events(action="plugin.load") == []
    assert trusted_registry.verify_audit().ok


def test_rollback_is_refused_by_the_loader(
    trusted_registry: Registry, build: Build, trusted: Path, tmp_path: Path
) -> None:
    old = build("tool", "1.0.0", parent=tmp_path / "old")
    new = build("tool", "2.0.0")
    trusted_registry.trust(capture(old))
    trusted_registry.trust(capture(new))
    (trusted / "tool").rename(trusted / "tool-new")
    old.rename(trusted / "tool")  # the older, once-trusted version swapped in

    loader = PluginLoader(trusted_registry, trusted_registry, [trusted])
    with pytest.raises(PolicyError, match=r"rollback: tool 1\.0\.0 is older than the trusted"):
        loader.load_plugin(trusted / "tool")
    assert loader.load_plugin(trusted / "tool-new").metadata.version == "2.0.0"


def test_a_statement_with_more_digests_is_trusted_and_loaded_with_them(
    trusted_registry: Registry, build: Build, trusted: Path, key: SigningKey, now: datetime
) -> None:
    plugin_dir = build("hello")
    sign_custom_statement(plugin_dir, key, now, add_sha512(plugin_dir))
    trusted_registry.trust(capture(plugin_dir))

    plugin = PluginLoader(trusted_registry, trusted_registry, [trusted]).load_plugin(plugin_dir)

    assert plugin.verified.files["libhello.so"]["sha512"]
    assert plugin.execute().success


def test_a_plugin_directory_whose_name_is_not_utf8_is_decided_and_audited(
    trusted_registry: Registry, build: Build, trusted: Path, key: SigningKey, other_key: SigningKey
) -> None:
    # POSIX paths are bytes. A name that is not UTF-8 must neither break the audit
    # encoding (code that ran going unrecorded) nor stop discovery.
    good = build("hello")
    trusted_registry.trust(capture(good))
    odd = Path(os.fsdecode(os.fsencode(trusted) + b"/hel\xfflo"))
    good.rename(odd)
    build("gamma", signed_by=other_key)  # refused: an unknown key

    loader = PluginLoader(trusted_registry, trusted_registry, [trusted])
    plugins = loader.discover_plugins().plugins

    assert [p.metadata.name for p in plugins] == ["hello"]
    events = trusted_registry.audit_events(action="plugin.load")
    paths = {e.outcome: e.details["path"] for e in events}
    assert paths["allowed"] == f"{trusted}/hel\\xfflo"  # one byte, written reversibly
    assert "refused" in paths
    assert trusted_registry.verify_audit().ok
