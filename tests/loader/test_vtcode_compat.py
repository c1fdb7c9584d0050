"""vtreg's loader does what VT Code's native_plugin.rs does, shape by shape (tests/plugins/compat.c).

Each test names the VT Code behaviour it matches; where vtreg differs on
purpose, docs/vtcode-compatibility.md says so and the test shows that too.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import foreign_library
from tests.loader.conftest import Compat, RecordingAudit, key_loader
from vtreg.loader import (
    AbiError,
    NativePlugin,
    PluginCallError,
    PluginContext,
)
from vtreg.verifier.errors import FormatError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

ISOLATIONS = pytest.mark.parametrize("isolation", ["none", "process"])


def _metadata(name: str = "cx", version: str = "1.0.0", **fields: Any) -> dict[str, Any]:
    return {"name": name, "description": "compat", "version": version, "abi_version": 1} | fields


def _four_calls_at_once(plugin: NativePlugin) -> list[dict[str, Any]]:
    """Start four calls together (a Python barrier) and return what each saw inside the plugin."""
    start = threading.Barrier(4)
    outputs: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            start.wait()
            outputs.append(plugin.execute().output)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return outputs


# --- thread_safe: the library's metadata decides, as in VT Code ---


def test_thread_safe_in_metadata_runs_four_calls_at_once(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit
) -> None:
    # The C barrier opens only once all four calls are inside execute() together;
    # its bound (10 s) only keeps a broken host from hanging the test.
    plugin_dir = compat(metadata=_metadata(thread_safe=True), barrier_ms=10_000)
    plugin = key_loader(key, trusted, "none", audit_log).load_plugin(plugin_dir)

    outputs = _four_calls_at_once(plugin)

    assert plugin.thread_safe is True
    assert [o["reached"] for o in outputs] == [True] * 4
    assert max(o["max_active"] for o in outputs) == 4


def test_an_isolated_thread_safe_plugin_still_takes_one_call_at_a_time(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit
) -> None:
    # A deliberate difference: one worker process serves one call at a time
    # (docs/vtcode-compatibility.md). The flag is read the same way.
    plugin_dir = compat(metadata=_metadata(thread_safe=True), barrier_ms=100)
    plugin = key_loader(key, trusted, "process", audit_log).load_plugin(plugin_dir)
    try:
        outputs = _four_calls_at_once(plugin)
    finally:
        plugin.close()

    assert plugin.thread_safe is True
    assert max(o["max_active"] for o in outputs) == 1


@pytest.mark.parametrize(
    ("metadata_flag", "manifest"),
    [
        pytest.param(None, {"thread_safe": True}, id="only-in-plugin-json"),
        pytest.param(None, {}, id="nowhere"),
        pytest.param(False, {"thread_safe": True}, id="metadata-false"),
        pytest.param(True, {"thread_safe": False}, id="signed-false-overrides-metadata"),
    ],
)
@ISOLATIONS
def test_calls_are_serialised_unless_the_metadata_says_thread_safe(
    compat: Compat,
    key: SigningKey,
    trusted: Path,
    audit_log: RecordingAudit,
    metadata_flag: bool | None,
    manifest: dict[str, Any],
    isolation: str,
) -> None:
    # Each call stays inside execute() for its barrier's 100 ms bound: without the
    # lock the four would overlap, and the plugin's atomic counter would say so.
    fields = {} if metadata_flag is None else {"thread_safe": metadata_flag}
    plugin_dir = compat(metadata=_metadata() | fields, manifest=manifest, barrier_ms=100)
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(plugin_dir)
    try:
        outputs = _four_calls_at_once(plugin)
    finally:
        plugin.close()

    assert plugin.thread_safe is False
    assert [o["reached"] for o in outputs] == [False] * 4
    assert max(o["max_active"] for o in outputs) == 1


# --- metadata types, as VT Code's serde struct has them ---


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        pytest.param(_metadata(abi_version=None), "abi_version", id="abi-null"),
        pytest.param(
            {k: v for k, v in _metadata().items() if k != "abi_version"},
            "abi_version: Field required",
            id="abi-missing",
        ),
        pytest.param(_metadata(abi_version="1"), "abi_version: Input should be", id="abi-string"),
        pytest.param(_metadata(abi_version=1.0), "abi_version: Input should be", id="abi-float"),
        pytest.param(_metadata(abi_version=-1), "abi_version: Input should be", id="abi-negative"),
        pytest.param(_metadata(abi_version=2**32), "abi_version: Input should be", id="abi-u32"),
        pytest.param(_metadata(thread_safe="yes"), "thread_safe: Input should be", id="ts-str"),
    ],
)
@ISOLATIONS
def test_metadata_vt_code_cannot_parse_is_refused(
    compat: Compat,
    key: SigningKey,
    trusted: Path,
    audit_log: RecordingAudit,
    metadata: dict[str, Any],
    message: str,
    isolation: str,
) -> None:
    plugin_dir = compat(metadata=metadata)
    loader = key_loader(key, trusted, isolation, audit_log)

    with pytest.raises(AbiError, match=message) as refused:
        loader.load_plugin(plugin_dir)

    assert refused.value.code == "abi-mismatch"
    assert audit_log.events[-1].outcome == "refused"


@ISOLATIONS
def test_unknown_metadata_fields_are_ignored(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    plugin_dir = compat(metadata=_metadata(homepage="https://example.org", abi_version=1))
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(plugin_dir)
    plugin.close()
    assert plugin.metadata.abi_version == 1


# --- dlopen flags: RTLD_LAZY | RTLD_LOCAL, libloading's default ---


@ISOLATIONS
def test_an_unresolved_function_on_a_path_never_taken_loads(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(compat(unresolved=True))
    try:
        result = plugin.execute(PluginContext(input={"call_missing": False}))
    finally:
        plugin.close()
    assert result.success is True


def test_calling_an_unresolved_function_ends_the_isolated_worker(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit
) -> None:
    # In VT Code (and in-process here) the dynamic linker ends the host itself.
    plugin = key_loader(key, trusted, "process", audit_log).load_plugin(compat(unresolved=True))
    try:
        with pytest.raises(PluginCallError, match="plugin process exited"):
            plugin.execute(PluginContext(input={"call_missing": True}))
    finally:
        plugin.close()


# --- where the plugin lives ---


@ISOLATIONS
def test_the_context_names_the_verified_directory(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    plugin_dir = compat()
    (trusted / "alias").symlink_to(plugin_dir)  # inside the trusted directory: followed
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(trusted / "alias")
    try:
        output = plugin.execute(PluginContext(input={"x": 1}, workspace_root="/work")).output
    finally:
        plugin.close()

    assert output["context"] == {
        "input": {"x": 1},
        "workspace_root": "/work",
        "config": {},
        "plugin_dir": os.path.realpath(plugin_dir),
    }
    assert plugin.path == Path(os.path.realpath(plugin_dir))
    # dladdr names the sealed copy that was loaded, never the directory (the header says so).
    assert output["dladdr"].startswith("/proc/self/fd/")


@ISOLATIONS
def test_a_plugin_json_at_the_trusted_root_loads(
    compat: Compat, key: SigningKey, tmp_path: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    root = compat(parent=tmp_path / "elsewhere")
    plugin = key_loader(key, root, isolation, audit_log).load_plugin(root)
    try:
        output = plugin.execute().output
    finally:
        plugin.close()
    assert output["context"]["plugin_dir"] == os.path.realpath(root)


# --- versions and names VT Code accepts ---


@ISOLATIONS
def test_a_version_without_patch_signs_verifies_and_loads(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    plugin_dir = compat(version="1.0", metadata=_metadata(version="1.0"))
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(plugin_dir)
    plugin.close()
    assert (plugin.verified.version, plugin.metadata.version) == ("1.0", "1.0")  # as signed


@ISOLATIONS
def test_a_plugin_json_without_description_loads(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(
        compat(drop=("description",))
    )
    plugin.close()
    assert plugin.verified.manifest.description is None
    assert plugin.metadata.description == "compat"  # the library's metadata still needs one


@ISOLATIONS
def test_a_library_without_the_lib_prefix_signs_verifies_and_loads(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit, now: datetime,
    isolation: str,
) -> None:  # fmt: skip
    # VT Code tries lib<name>.so, then <name>.so.
    plugin_dir = compat("noprefix", metadata=_metadata("noprefix"))
    (plugin_dir / "libnoprefix.so").rename(plugin_dir / "noprefix.so")
    (plugin_dir / "plugin.sig").write_bytes(sign(capture(plugin_dir), key, at=now).envelope)
    with key_loader(key, trusted, isolation, audit_log).load_plugin(plugin_dir) as plugin:
        assert plugin.verified.library == "noprefix.so"
        assert plugin.execute().success


def test_with_both_names_the_prefixed_library_is_the_one_signed_and_loaded(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit, now: datetime
) -> None:
    plugin_dir = compat("bothnames", metadata=_metadata("bothnames"))
    (plugin_dir / "bothnames.so").write_bytes(b"not the library VT Code would load")
    (plugin_dir / "plugin.sig").write_bytes(sign(capture(plugin_dir), key, at=now).envelope)
    with key_loader(key, trusted, "none", audit_log).load_plugin(plugin_dir) as plugin:
        assert plugin.verified.library == "libbothnames.so"
        assert plugin.execute().success


def test_libraries_for_several_platforms_are_signed_and_this_hosts_is_loaded(
    compat: Compat, key: SigningKey, trusted: Path, audit_log: RecordingAudit, now: datetime
) -> None:
    # VT Code loads the file named for its platform; the others ship beside it.
    plugin_dir = compat("twoplatforms", metadata=_metadata("twoplatforms"))
    (plugin_dir / "libtwoplatforms.dylib").write_bytes(foreign_library("macos-arm64"))
    (plugin_dir / "plugin.sig").write_bytes(sign(capture(plugin_dir), key, at=now).envelope)
    with key_loader(key, trusted, "none", audit_log).load_plugin(plugin_dir) as plugin:
        assert plugin.verified.library == "libtwoplatforms.so"
        assert plugin.verified.platforms == ("linux-x86_64", "macos-arm64")
        assert plugin.execute().success


def test_a_dylib_that_is_no_macos_library_is_refused_at_signing_with_the_reason(
    compat: Compat, key: SigningKey, now: datetime
) -> None:
    plugin_dir = compat("badmac", metadata=_metadata("badmac"))
    (plugin_dir / "libbadmac.dylib").write_bytes(b"\xcf\xfa\xed\xfe" + bytes(60))
    with pytest.raises(FormatError, match="not a shared library for a known platform"):
        sign(capture(plugin_dir), key, at=now)


# --- results, parsed as serde_json parses them ---


@pytest.mark.parametrize(
    ("result", "message"),
    [
        pytest.param(
            '{"success":true,"success":false,"output":{},"error":null,"files":[]}',
            "duplicate key 'success'",
            id="duplicate-field",
        ),
        pytest.param(
            '{"success":true,"output":{"a":1,"a":2},"error":null,"files":[]}',
            "duplicate key 'a'",
            id="duplicate-key-in-output",
        ),
        pytest.param(
            '{"success":true,"output":{"x":NaN},"error":null,"files":[]}',
            "NaN is not valid JSON",
            id="nan",
        ),
        pytest.param(
            '{"success":true,"output":{"x":-Infinity},"error":null,"files":[]}',
            "-Infinity is not valid JSON",
            id="infinity",
        ),
        pytest.param(
            '{"success":true,"output":{"x":1e400},"error":null,"files":[]}',
            "out of range",
            id="overflow",
        ),
        pytest.param(
            '{"success":true,"output":{},"error":null}', "files: Field required", id="no-files"
        ),
    ],
)
@ISOLATIONS
def test_results_vt_code_refuses_are_errors(
    compat: Compat,
    key: SigningKey,
    trusted: Path,
    audit_log: RecordingAudit,
    result: str,
    message: str,
    isolation: str,
) -> None:
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(compat(result=result))
    try:
        with pytest.raises(PluginCallError, match=message):
            plugin.execute()
    finally:
        plugin.close()
