"""Verify-then-load of real compiled plugins: paths, refusals, ABI, results, threads, races."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.loader.conftest import Build, RecordingAudit
from vtreg.loader import (
    PLUGIN_ABI_VERSION,
    AbiError,
    AuditEvent,
    Isolation,
    KeyPolicy,
    PluginCallError,
    PluginContext,
    PluginLoader,
)
from vtreg.verifier.errors import (
    ContentError,
    PolicyError,
    RegistryError,
    SignatureError,
    UnsafeFileError,
    VerificationError,
)
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture
from vtreg.verifier.trust import TrustState


def test_a_good_plugin_loads_and_runs(
    build: Build, plugin_loader: PluginLoader, audit_log: RecordingAudit, key: SigningKey
) -> None:
    plugin = plugin_loader.load_plugin(build("hello", "1.2.3"))

    result = plugin.execute(PluginContext(input={"name": "Ada"}))

    assert PLUGIN_ABI_VERSION == 1
    assert plugin.metadata.name == "hello"
    assert plugin.metadata.version == "1.2.3"
    assert result.success is True
    assert result.output["mode"] == "echo"
    assert plugin_loader.library_filename("hello") == "libhello.so"
    [event] = audit_log.events
    assert (event.action, event.outcome, event.plugin, event.keyids) == (
        "plugin.load", "allowed", "hello", (key.keyid,)
    )  # fmt: skip


def test_the_example_plugin_greets(
    trusted: Path, key: SigningKey, now: datetime, plugin_loader: PluginLoader
) -> None:
    import subprocess

    from tests.helpers import EXAMPLE_HELLO

    examples = trusted.parent / "examples"
    shutil.copytree(
        EXAMPLE_HELLO.parent, examples, ignore=shutil.ignore_patterns("*.so", "plugin.sig")
    )
    subprocess.run(["make", "-s", "-C", str(examples / "hello")], check=True, capture_output=True)
    plugin_dir = trusted / "hello"
    plugin_dir.mkdir(mode=0o755)
    for name in ("plugin.json", "libhello.so"):
        shutil.copy(examples / "hello" / name, plugin_dir / name)
    (plugin_dir / "plugin.sig").write_bytes(sign(capture(plugin_dir), key, at=now).envelope)

    result = plugin_loader.load_plugin(plugin_dir).execute(PluginContext(input={"name": "Ada"}))

    assert result.output == {"greeting": "Hello, Ada!"}


# --- refused: the library is never opened, its constructor never runs ---


def _attack_unsigned(plugin: Path) -> None:
    (plugin / "plugin.sig").unlink()


def _attack_flip(plugin: Path) -> None:
    library = next(plugin.glob("lib*.so"))
    data = bytearray(library.read_bytes())
    data[len(data) // 3] ^= 0x01
    library.write_bytes(bytes(data))


def _attack_manifest(plugin: Path) -> None:
    manifest = json.loads((plugin / "plugin.json").read_text())
    manifest["thread_safe"] = True
    (plugin / "plugin.json").write_text(json.dumps(manifest))


REFUSALS = [
    pytest.param(_attack_unsigned, SignatureError, "unsigned", "unsigned", id="unsigned"),
    pytest.param(
        _attack_flip, ContentError, r"digest of libvx\.so", "digest-mismatch", id="flipped-byte"
    ),
    pytest.param(
        _attack_manifest,
        ContentError,
        r"plugin\.json is [\d,]+ bytes; [\d,]+ were signed",
        "digest-mismatch",
        id="edited-plugin-json",
    ),
    pytest.param(
        lambda p: (p / "evil.sh").write_text("x"),
        ContentError,
        "not covered",
        "file-added",
        id="file-added",
    ),
]


@pytest.mark.parametrize(("attack", "error", "message", "code"), REFUSALS)
@pytest.mark.parametrize("isolation", ["none", "process"])
def test_refused_code_never_runs(
    build: Build,
    trusted: Path,
    key: SigningKey,
    audit_log: RecordingAudit,
    tmp_path: Path,
    attack: Callable[[Path], None],
    error: type[VerificationError],
    message: str,
    code: str,
    isolation: Isolation,
) -> None:
    marker = tmp_path / "constructor-ran"
    plugin = build(marker=marker)
    attack(plugin)
    loader = PluginLoader(KeyPolicy([key.public_key]), audit_log, [trusted], isolation=isolation)

    with pytest.raises(error, match=message) as refused:
        loader.load_plugin(plugin)

    assert not marker.exists(), "a refused library's constructor ran"
    [event] = audit_log.events
    assert (event.action, event.outcome) == ("plugin.load", "refused")
    assert refused.value.code == event.details["code"] == code
    assert event.reason is not None


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_the_marker_plugin_does_run_once_verified(
    build: Build, trusted: Path, key: SigningKey, tmp_path: Path, isolation: Isolation
) -> None:
    # The positive control for the test above: the constructor does write its marker.
    marker = tmp_path / "constructor-ran"
    loader = PluginLoader(KeyPolicy([key.public_key]), None, [trusted], isolation=isolation)
    plugin = loader.load_plugin(build(marker=marker))
    assert marker.read_text() == "constructor ran\n"
    plugin.close()


def test_signature_by_an_untrusted_key_never_runs(
    build: Build, plugin_loader: PluginLoader, other_key: SigningKey, tmp_path: Path
) -> None:
    marker = tmp_path / "constructor-ran"
    with pytest.raises(SignatureError, match="signed by 0/1"):
        plugin_loader.load_plugin(build(signed_by=other_key, marker=marker))
    assert not marker.exists()


# --- paths and permissions ---


def test_dotdot_escape_is_refused(
    build: Build, plugin_loader: PluginLoader, trusted: Path, tmp_path: Path
) -> None:
    outside = build(parent=tmp_path / "outside")
    with pytest.raises(UnsafeFileError, match="not inside a trusted directory"):
        plugin_loader.load_plugin(trusted / ".." / "outside" / outside.name)


def test_symlinked_plugin_dir_that_escapes_is_refused(
    build: Build, plugin_loader: PluginLoader, trusted: Path, tmp_path: Path
) -> None:
    outside = build(parent=tmp_path / "outside")
    (trusted / "linked").symlink_to(outside)
    with pytest.raises(UnsafeFileError, match="not inside a trusted directory"):
        plugin_loader.load_plugin(trusted / "linked")


def test_symlink_inside_the_trusted_dir_is_followed(
    build: Build, plugin_loader: PluginLoader, trusted: Path
) -> None:
    real = build("real")
    (trusted / "alias").symlink_to(real)
    assert plugin_loader.load_plugin(trusted / "alias").path == real


def test_symlinked_library_is_refused(
    build: Build, plugin_loader: PluginLoader, tmp_path: Path, key: SigningKey
) -> None:
    plugin = build()
    elsewhere = tmp_path / "libvx.so"
    shutil.move(plugin / "libvx.so", elsewhere)
    (plugin / "libvx.so").symlink_to(elsewhere)
    with pytest.raises(UnsafeFileError, match=r"libvx\.so is a symlink"):
        plugin_loader.load_plugin(plugin)


def test_prefix_escape_is_refused(build: Build, plugin_loader: PluginLoader, trusted: Path) -> None:
    evil = trusted.parent / (trusted.name + "-evil")  # /…/trusted-evil, not inside /…/trusted
    evil.mkdir(mode=0o755)
    plugin = build(parent=evil)
    with pytest.raises(UnsafeFileError, match="not inside a trusted directory"):
        plugin_loader.load_plugin(plugin)


def test_the_trusted_dir_itself_is_refused_when_it_is_no_signed_plugin(
    plugin_loader: PluginLoader, trusted: Path
) -> None:
    # It is inside (VT Code lets a plugin.json sit at the root), but holds no plugin.sig.
    with pytest.raises(SignatureError, match="unsigned"):
        plugin_loader.load_plugin(trusted)


@pytest.mark.parametrize(
    ("which", "mode", "message"),
    [
        pytest.param(
            "trusted",
            0o777,
            "trusted directory .* is writable by group or others",
            id="world-writable-trusted-dir",
        ),
        pytest.param(
            "trusted",
            0o775,
            "trusted directory .* is writable by group or others",
            id="group-writable-trusted-dir",
        ),
        pytest.param(
            "plugin",
            0o757,
            "plugin directory .* is writable by group or others",
            id="world-writable-plugin-dir",
        ),
    ],
)
def test_writable_directories_are_refused(
    build: Build,
    plugin_loader: PluginLoader,
    trusted: Path,
    which: str,
    mode: int,
    message: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "constructor-ran"
    plugin = build(marker=marker)
    (trusted if which == "trusted" else plugin).chmod(mode)
    with pytest.raises(UnsafeFileError, match=message):
        plugin_loader.load_plugin(plugin)
    assert not marker.exists()


def test_a_library_for_another_platform_is_refused(
    plugin_loader: PluginLoader, trusted: Path, key: SigningKey, now: datetime
) -> None:
    plugin = trusted / "arm"
    plugin.mkdir(mode=0o755)
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack("<HH", 3, 183)  # aarch64
    (plugin / "libarm.so").write_bytes(header + bytes(64))
    (plugin / "plugin.json").write_text('{"name":"arm","description":"d","version":"1.0.0"}')
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)

    with pytest.raises(
        PolicyError,
        match=r"no library for this host \(linux-x86_64\); its signed libraries are for linux-aarch64$",
    ):
        plugin_loader.load_plugin(plugin)


# --- ABI v1 ---


@pytest.mark.parametrize(
    ("defines", "message"),
    [
        pytest.param({"ABI_VERSION": "2"}, "implements ABI version 2, expected 1", id="wrong-abi"),
        pytest.param(
            {"NO_EXECUTE": "1"}, "does not export vtcode_plugin_execute", id="missing-symbol"
        ),
        pytest.param(
            {"META_NAME": '"impostor"'},
            r"calls itself impostor 1.0.0, but vx 1.0.0 was signed \(VT Code does not compare them; vtreg refuses\)",
            id="metadata-name",
        ),
        pytest.param(
            {"META_VERSION": '"9.9.9"'},
            r"calls itself vx 9.9.9, but vx 1.0.0 was signed \(VT Code does not compare them; vtreg refuses\)",
            id="metadata-version",
        ),
    ],
)
@pytest.mark.parametrize("isolation", ["none", "process"])
def test_abi_problems_are_refusals(
    build: Build,
    trusted: Path,
    key: SigningKey,
    audit_log: RecordingAudit,
    defines: dict[str, str],
    message: str,
    isolation: Isolation,
) -> None:
    loader = PluginLoader(KeyPolicy([key.public_key]), audit_log, [trusted], isolation=isolation)
    with pytest.raises(AbiError, match=message):
        loader.load_plugin(build(defines=defines))
    # The decision went on record before dlopen ran any of the plugin's code; the
    # ABI refusal that dlopen revealed follows it.
    decided, refused = audit_log.events
    assert (decided.outcome, refused.outcome) == ("allowed", "refused")
    assert decided.digest == refused.digest is not None  # after verification: exactly what


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        pytest.param("null", "vtcode_plugin_execute returned NULL", id="null"),
        pytest.param("bad-utf8", "result is not valid UTF-8", id="invalid-utf8"),
        pytest.param("not-json", "result is not valid JSON", id="not-json"),
        pytest.param("bad-shape", "result is not a plugin result", id="wrong-shape"),
    ],
)
@pytest.mark.parametrize("isolation", ["none", "process"])
def test_bad_results_are_errors_not_crashes(
    build: Build, trusted: Path, key: SigningKey, mode: str, message: str, isolation: Isolation
) -> None:
    loader = PluginLoader(KeyPolicy([key.public_key]), None, [trusted], isolation=isolation)
    plugin = loader.load_plugin(build(mode=mode))
    with pytest.raises(PluginCallError, match=message):
        plugin.execute()
    with pytest.raises(PluginCallError, match=message):
        plugin.execute()  # and the host (or worker) is still fine
    plugin.close()


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_each_returned_string_is_freed_once(
    build: Build, trusted: Path, key: SigningKey, isolation: Isolation
) -> None:
    loader = PluginLoader(KeyPolicy([key.public_key]), None, [trusted], isolation=isolation)
    # A name no other test loads: content loaded (and not closed) elsewhere in this
    # process would be shared, counters and all, as dlopen shares it for VT Code.
    plugin = loader.load_plugin(build("frees"))
    counts = [plugin.execute().output["frees"] for _ in range(4)]
    # Before the first call only the metadata string was freed; then each result once.
    assert counts == [1, 2, 3, 4]
    plugin.close()


def test_without_free_string_nothing_is_freed(build: Build, plugin_loader: PluginLoader) -> None:
    plugin = plugin_loader.load_plugin(build(defines={"NO_FREE": "1"}))
    assert plugin.execute().output["frees"] == 0


# --- threads ---


def _max_concurrency(plugin_loader: PluginLoader, plugin_dir: Path) -> int:
    plugin = plugin_loader.load_plugin(plugin_dir)
    results: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(4):
                results.append(int(plugin.execute().output["max_active"]))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    return max(results)


def test_thread_unsafe_plugin_never_runs_two_calls_at_once(
    build: Build, plugin_loader: PluginLoader
) -> None:
    plugin_dir = build("serial", mode="concurrency")
    assert _max_concurrency(plugin_loader, plugin_dir) == 1  # measured inside the plugin


def test_thread_safe_only_in_plugin_json_is_serialised(
    build: Build, plugin_loader: PluginLoader
) -> None:
    # VT Code reads thread_safe from the library's metadata, which says nothing here.
    # (tests/loader/test_vtcode_compat.py has the library-side flag.)
    plugin_dir = build("parallel", mode="concurrency", manifest={"thread_safe": True})
    assert _max_concurrency(plugin_loader, plugin_dir) == 1


# --- time of check, time of use ---


class SwapAfterVerification:
    """An AuditSink that lets an attacker act once the load is decided, before dlopen."""

    def __init__(self, attack: Callable[[], None]) -> None:
        self.attack = attack

    def record(self, event: AuditEvent) -> None:
        if event.outcome == "allowed":
            self.attack()


@pytest.mark.parametrize("how", ["rename-over", "overwrite-in-place"])
@pytest.mark.parametrize("isolation", ["none", "process"])
def test_library_swapped_after_verification_starts_is_not_what_runs(
    build: Build, trusted: Path, key: SigningKey, tmp_path: Path, how: str, isolation: Isolation
) -> None:
    good = build("race", "1.0.0")
    marker = tmp_path / "evil-ran"
    evil = build("race", "1.0.0", parent=tmp_path / "evil", marker=marker, mode="null")

    def attack() -> None:
        target = good / "librace.so"
        if how == "rename-over":
            shutil.copy(evil / "librace.so", good / ".swap")
            (good / ".swap").replace(target)
        else:
            target.write_bytes((evil / "librace.so").read_bytes())

    loader = PluginLoader(
        KeyPolicy([key.public_key]), SwapAfterVerification(attack), [trusted], isolation=isolation
    )

    plugin = loader.load_plugin(good)
    result = plugin.execute()

    assert result.output["mode"] == "echo"  # the verified code, not the evil build's NULL
    assert not marker.exists()
    plugin.close()
    # And the directory as it is now is refused.
    with pytest.raises(VerificationError):
        PluginLoader(KeyPolicy([key.public_key]), None, [trusted]).load_plugin(good)


# --- discovery ---


def test_discover_plugins_loads_good_ones_and_skips_refused_ones(
    build: Build,
    plugin_loader: PluginLoader,
    audit_log: RecordingAudit,
    other_key: SigningKey,
    trusted: Path,
) -> None:
    build("alpha")
    build("beta")
    build("gamma", signed_by=other_key)
    (trusted / "not-a-plugin").mkdir()

    found = plugin_loader.discover_plugins()

    assert sorted(p.metadata.name for p in found.plugins) == ["alpha", "beta"]
    [skipped] = found.skipped
    assert (skipped.path, skipped.code, skipped.refused) == (trusted / "gamma", "unknown-key", True)
    assert "not signed by a trusted key" in skipped.message
    assert sorted((e.outcome, e.plugin) for e in audit_log.events) == [
        ("allowed", "alpha"), ("allowed", "beta"), ("refused", "gamma")
    ]  # fmt: skip
    [refused] = [e for e in audit_log.events if e.outcome == "refused"]
    assert refused.details["unverified_name"] is True  # labelled by plugin.json, not trusted
    assert refused.details["code"] == "unknown-key"


def test_add_trusted_dir_canonicalises(tmp_path: Path, key: SigningKey) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    loader = PluginLoader(KeyPolicy([key.public_key]), None)
    loader.add_trusted_dir(tmp_path / "link").add_trusted_dir(real)
    assert loader.trusted_dirs == (real,)


def test_timeouts_need_isolation(build: Build, plugin_loader: PluginLoader) -> None:
    from vtreg.verifier.errors import UsageError

    plugin = plugin_loader.load_plugin(build())
    with pytest.raises(UsageError, match="needs isolation"):
        plugin.execute(timeout=1)


def test_unknown_isolation_mode(key: SigningKey) -> None:
    from vtreg.verifier.errors import UsageError

    with pytest.raises(UsageError):
        PluginLoader(KeyPolicy([key.public_key]), None, isolation="thread")  # type: ignore[arg-type]


def test_loads_leak_no_descriptors(
    build: Build, plugin_loader: PluginLoader, other_key: SigningKey
) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    for i in range(3):
        with pytest.raises(SignatureError):
            plugin_loader.load_plugin(build(f"bad{i}", signed_by=other_key))
        plugin_loader.load_plugin(build(f"good{i}"))
    assert open_fds() == before  # a loaded library keeps its mapping, not the sealed file


def test_each_plugin_runs_its_own_code(build: Build, plugin_loader: PluginLoader) -> None:
    # Regression: a new sealed copy that got the descriptor number of an earlier,
    # closed one had the same /proc/self/fd path, and dlopen returned the earlier
    # library. Each load must run its own code.
    for i in range(6):
        plugin = plugin_loader.load_plugin(build(f"own{i}", f"1.0.{i}"))
        assert (plugin.metadata.name, plugin.metadata.version) == (f"own{i}", f"1.0.{i}")


def test_unsigned_is_refused_before_anything_is_read(
    build: Build, plugin_loader: PluginLoader, audit_log: RecordingAudit
) -> None:
    plugin = build(signed_by=None)
    (plugin / "libvx.so").unlink()
    os.mkfifo(plugin / "libvx.so")  # reading it would block; it is never opened

    with pytest.raises(
        SignatureError,
        match=r"unsigned: there is no plugin\.sig \(VT Code loads unsigned plugins; vtreg refuses\)$",
    ):
        plugin_loader.load_plugin(plugin)
    [event] = audit_log.events
    assert (event.outcome, event.plugin) == ("refused", "vx")


def test_only_the_named_library_is_copied_aside(
    build: Build,
    plugin_loader: PluginLoader,
    key: SigningKey,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import vtreg.loader.loader as loader_module
    from vtreg.loader.capture import SealedFile

    made: list[str] = []
    real = SealedFile

    def counting(name: str) -> object:
        made.append(name)
        return real(name)

    monkeypatch.setattr(loader_module, "SealedFile", counting)
    plugin = build()
    for i in range(50):  # an attacker's extra "libraries": not signed, never copied
        (plugin / f"libjunk{i}.so").write_bytes(b"\x7fELF" + bytes(4096))

    with pytest.raises(ContentError, match="not covered"):
        plugin_loader.load_plugin(plugin)
    assert made == []  # refused as the walk met the first one, before the library was read

    # Signed along with the plugin, they are read and hashed, and still not copied.
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
    plugin_loader.load_plugin(plugin).close()
    assert made == ["libvx.so"]


def test_a_writable_directory_between_trusted_dir_and_plugin_is_refused(
    build: Build, plugin_loader: PluginLoader, trusted: Path
) -> None:
    middle = trusted / "team"
    middle.mkdir()
    plugin = build(parent=middle)
    middle.chmod(0o777)
    with pytest.raises(UnsafeFileError, match=r"directory .*team is writable by group or others"):
        plugin_loader.load_plugin(plugin)


class UnreachablePolicy:
    def state_for(self, envelope: bytes | None) -> TrustState:
        from vtreg.verifier.errors import RegistryError

        raise RegistryError("registry postgresql://db/vtreg: connection refused")


def test_a_load_that_cannot_be_decided_is_audited_as_an_error(
    build: Build, trusted: Path, audit_log: RecordingAudit
) -> None:
    from vtreg.verifier.errors import RegistryError

    loader = PluginLoader(UnreachablePolicy(), audit_log, [trusted])
    with pytest.raises(RegistryError):
        loader.load_plugin(build("hello"))
    [event] = audit_log.events
    assert (event.action, event.outcome, event.plugin) == ("plugin.load", "error", "hello")
    assert event.reason is not None
    assert "connection refused" in event.reason


# Erases the line, returns to its start, paints "verified" green, reverses what follows.
_PAINTING = "\x1b[2K\r\x1b[32mverified\u202e"


def test_a_plugin_directory_name_cannot_paint_a_log_line(
    build: Build, trusted: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = build("hello").rename(trusted / f"d{_PAINTING}")

    class Unreachable:
        def record(self, event: AuditEvent) -> None:
            raise RegistryError("registry sqlite:///gone.db: disk I/O error")

    # Undecidable and unrecordable: the failed audit write is logged, then the skip.
    loader = PluginLoader(UnreachablePolicy(), Unreachable(), [trusted])
    with caplog.at_level(logging.WARNING, logger="vtreg.loader"):
        found = loader.discover_plugins()

    assert [s.path for s in found.skipped] == [plugin]
    messages = [record.getMessage() for record in caplog.records]
    inert = f"{trusted}/d\\x1b[2K\\x0d\\x1b[32mverified\\u202e"  # what was there, inert
    assert len(messages) == 2, messages
    assert messages[0].startswith(f"could not audit a failed load of {inert}: "), messages[0]
    assert messages[1].startswith(f"skipped plugin {inert}: "), messages[1]
    for message in messages:
        assert not {"\x1b", "\r", "\u202e"} & set(message), repr(message)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_the_decision_is_on_record_before_any_plugin_code_runs(
    build: Build, trusted: Path, key: SigningKey, tmp_path: Path, isolation: Isolation
) -> None:
    marker = tmp_path / "constructor-ran"
    seen: list[tuple[str, bool]] = []

    class Witness:
        def record(self, event: AuditEvent) -> None:
            seen.append((event.outcome, marker.exists()))

    loader = PluginLoader(KeyPolicy([key.public_key]), Witness(), [trusted], isolation=isolation)
    plugin = loader.load_plugin(build(marker=marker))

    assert seen == [("allowed", False)]  # recorded while the constructor had not yet run
    assert marker.exists()
    plugin.close()


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_decision_that_cannot_be_recorded_is_not_loaded(
    build: Build, trusted: Path, key: SigningKey, tmp_path: Path, isolation: Isolation
) -> None:
    # Fail closed: a load whose decision cannot reach the audit log never runs.
    marker = tmp_path / "constructor-ran"

    class Unreachable:
        def record(self, event: AuditEvent) -> None:
            raise RegistryError("registry sqlite:///gone.db: disk I/O error")

    loader = PluginLoader(
        KeyPolicy([key.public_key]), Unreachable(), [trusted], isolation=isolation
    )
    with pytest.raises(RegistryError, match="disk I/O error"):
        loader.load_plugin(build(marker=marker))

    assert not marker.exists(), "a load that was not recorded ran the plugin's constructor"
