"""The host API has no traps: each misuse is a vtreg error at the call that made it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.loader.conftest import Build, RecordingAudit
from vtreg import loader as vtreg_loader
from vtreg.loader import KeyPolicy, PluginContext, PluginLoader
from vtreg.verifier import errors
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.trust import TrustState


@pytest.mark.parametrize(
    "trusted_dirs",
    [
        pytest.param("/srv/plugins", id="str"),
        pytest.param(Path("/srv/plugins"), id="path"),
        pytest.param(b"/srv/plugins", id="bytes"),
        pytest.param(iter(["/srv/plugins"]), id="iterator"),
    ],
)
def test_trusted_dirs_must_be_a_list(key: SigningKey, trusted_dirs: Any) -> None:
    # A str would be iterated: "/" would become a trusted directory.
    with pytest.raises(errors.UsageError, match="trusted_dirs must be a list of directories"):
        PluginLoader(KeyPolicy([key.public_key]), None, trusted_dirs)


def test_the_audit_choice_must_be_explicit(key: SigningKey) -> None:
    with pytest.raises(TypeError, match="audit"):
        PluginLoader(KeyPolicy([key.public_key]))  # type: ignore[call-arg]
    with pytest.raises(errors.UsageError, match="audit must be an AuditSink"):
        PluginLoader(KeyPolicy([key.public_key]), audit=[])  # type: ignore[arg-type]
    assert PluginLoader(KeyPolicy([key.public_key]), None).trusted_dirs == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"isolation": "thread"}, "isolation must be", id="isolation"),
        pytest.param({"timeout": 0}, "timeout must be a positive", id="timeout-zero"),
        pytest.param({"timeout": "5"}, "timeout must be a positive", id="timeout-str"),
        pytest.param({"memory_limit": 512}, r"memory_limit is in bytes \(512 << 20", id="mib"),
        pytest.param({"memory_limit": -1}, "memory_limit is in bytes", id="negative"),
        pytest.param({"memory_limit": 1.5e9}, "a number of bytes", id="float"),
    ],
)
def test_bad_options_fail_at_construction(
    key: SigningKey, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.UsageError, match=message):
        PluginLoader(KeyPolicy([key.public_key]), None, **kwargs)


def test_trust_must_be_a_policy() -> None:
    with pytest.raises(errors.UsageError, match="trust must be a TrustPolicy"):
        PluginLoader("registry.db", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        pytest.param("alice.pub", "not a path", id="str"),
        pytest.param(Path("alice.pub"), "not a path", id="path"),
        pytest.param(["alice.pub"], "not str", id="list-of-str"),
    ],
)
def test_key_policy_checks_its_keys_at_once(keys: Any, message: str) -> None:
    with pytest.raises(errors.UsageError, match=message):
        KeyPolicy(keys)


def test_key_policy_threshold_must_be_reachable(key: SigningKey) -> None:
    with pytest.raises(errors.UsageError, match="threshold 2 cannot be met by 1 key"):
        KeyPolicy([key.public_key], threshold=2)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_execute_after_close_is_a_usage_error(
    build: Build,
    key: SigningKey,
    trusted: Path,
    audit_log: RecordingAudit,
    isolation: Any,
) -> None:
    plugin = PluginLoader(KeyPolicy([key.public_key]), audit_log, [trusted], isolation=isolation)
    loaded = plugin.load_plugin(build())
    loaded.close()
    loaded.close()  # twice is harmless

    with pytest.raises(errors.UsageError, match="was closed; load it again"):
        loaded.execute()


def test_execute_takes_a_plugin_context(build: Build, plugin_loader: PluginLoader) -> None:
    plugin = plugin_loader.load_plugin(build())
    with pytest.raises(errors.UsageError, match=r"takes a PluginContext, not dict"):
        plugin.execute({"input": {"name": "Ada"}})  # type: ignore[arg-type]
    assert plugin.execute(PluginContext(input={"name": "Ada"})).success


def test_a_context_that_is_not_utf8_is_a_usage_error(
    build: Build, plugin_loader: PluginLoader
) -> None:
    plugin = plugin_loader.load_plugin(build())
    with pytest.raises(errors.UsageError, match="not UTF-8"):
        plugin.execute(PluginContext(input={"name": "\udcff"}))


def test_the_errors_a_host_catches_come_from_vtreg_loader() -> None:
    assert vtreg_loader.VtregError is errors.VtregError
    assert vtreg_loader.VerificationError is errors.VerificationError
    assert vtreg_loader.UsageError is errors.UsageError
    assert vtreg_loader.NotFoundError is errors.NotFoundError
    assert issubclass(vtreg_loader.AbiError, vtreg_loader.VerificationError)
    assert issubclass(vtreg_loader.PluginCallError, vtreg_loader.VtregError)


class DownForBeta:
    """A TrustPolicy whose registry is unreachable whenever it is asked about "beta"."""

    def __init__(self, inner: KeyPolicy) -> None:
        self.inner = inner

    def state_for(self, envelope: bytes | None) -> TrustState:
        from vtreg.verifier.tree import claimed_lengths

        _, lengths = claimed_lengths(envelope)
        if lengths is not None and "libbeta.so" in lengths:
            raise errors.RegistryError("the registry is unreachable")
        return self.inner.state_for(envelope)


def test_discovery_reports_what_could_not_be_decided(
    build: Build, key: SigningKey, trusted: Path
) -> None:
    build("alpha")
    build("beta")
    loader = PluginLoader(DownForBeta(KeyPolicy([key.public_key])), None, [trusted])

    found = loader.discover_plugins()

    assert [p.metadata.name for p in found.plugins] == ["alpha"]
    [skipped] = found.skipped
    assert (skipped.path, skipped.code, skipped.refused) == (trusted / "beta", "error", False)
    assert skipped.message == "the registry is unreachable"
