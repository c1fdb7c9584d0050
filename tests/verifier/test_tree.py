"""Directory capture: what is hashed, what is refused, and bounded memory."""

from __future__ import annotations

import faulthandler
import hashlib
import os
import signal
import stat
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import error_without_blocking
from vtreg.verifier.errors import ContentError, FormatError, NotFoundError, UnsafeFileError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signatures import verify_envelope
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import (
    MAX_DEPTH,
    UNCHECKED_READ,
    PendingCapture,
    capture,
    claimed_lengths,
)

PluginFactory = Callable[..., Path]


def test_every_file_but_the_top_level_signature_is_captured(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory(
        extra_files={
            "plugin.sig": b"sig",
            "README.md": b"readme",
            "scripts/plugin.sig": b"nested: covered like any file",
            "templates/a/b.txt": b"deep",
        }
    )

    tree = capture(plugin)

    assert list(tree.files) == [
        "README.md",
        "libbasic.so",
        "plugin.json",
        "scripts/plugin.sig",
        "templates/a/b.txt",
    ]
    assert tree.signature == b"sig"
    assert tree.manifest == (plugin / "plugin.json").read_bytes()
    for rel, captured in tree.files.items():
        data = (plugin / rel).read_bytes()
        assert captured.size == len(data)
        assert captured.digests == {"sha256": hashlib.sha256(data).hexdigest()}


def test_several_algorithms(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    tree = capture(plugin, algorithms=("sha256", "sha512", "blake2b"))
    data = (plugin / "libbasic.so").read_bytes()
    assert tree.files["libbasic.so"].digests == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha512": hashlib.sha512(data).hexdigest(),
        "blake2b": hashlib.blake2b(data).hexdigest(),
    }


@pytest.mark.parametrize(
    "make_link",
    [
        pytest.param(lambda p, out: (p / "README.md").symlink_to(out), id="file-symlink"),
        pytest.param(lambda p, out: (p / "scripts").symlink_to(out.parent), id="dir-symlink"),
        pytest.param(lambda p, out: (p / "dangling").symlink_to(p / "nowhere"), id="dangling"),
        pytest.param(lambda p, out: (p / "self").symlink_to("."), id="loop"),
    ],
)
def test_symlinks_are_refused(
    plugin_factory: PluginFactory, tmp_path: Path, make_link: Callable[[Path, Path], None]
) -> None:
    plugin = plugin_factory()
    outside = tmp_path / "outside" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text("secret")
    make_link(plugin, outside)

    # Stricter than VT Code, and the message says so.
    with pytest.raises(
        UnsafeFileError, match=r"is a symlink; .*follows one that stays inside; vtreg refuses\)$"
    ):
        capture(plugin)


def test_fifo_is_refused_without_blocking(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    os.mkfifo(plugin / "pipe")
    error = error_without_blocking(lambda: capture(plugin))
    assert isinstance(error, UnsafeFileError)
    assert "pipe is a FIFO" in str(error)
    assert str(error).endswith("(VT Code ignores it; vtreg refuses)")


def test_fifo_named_plugin_json_is_refused_without_blocking(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    (plugin / "plugin.json").unlink()
    os.mkfifo(plugin / "plugin.json")
    error = error_without_blocking(lambda: capture(plugin))
    assert isinstance(error, UnsafeFileError)


def test_device_file_is_refused(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    try:
        os.mknod(plugin / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD (run as root to cover this)")
    with pytest.raises(UnsafeFileError, match="null is a device file"):
        capture(plugin)


@pytest.mark.parametrize("name", ["bad\nname", "tab\there", "back\\slash"])
def test_odd_file_names_are_refused(plugin_factory: PluginFactory, name: str) -> None:
    plugin = plugin_factory()
    (plugin / name).write_text("x")
    with pytest.raises(UnsafeFileError, match="contains control or escape characters"):
        capture(plugin)


def test_non_utf8_file_name_is_refused(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    fd = os.open(bytes(plugin) + b"/\xff\xfe", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    with pytest.raises(UnsafeFileError, match="not valid UTF-8"):
        capture(plugin)


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        pytest.param("plugin.json", 256 * 1024 + 1, r"plugin\.json is larger than", id="manifest"),
        pytest.param("plugin.sig", 1024 * 1024 + 1, r"plugin\.sig is larger than", id="signature"),
    ],
)
def test_oversize_metadata_files_are_refused(
    plugin_factory: PluginFactory, name: str, size: int, message: str
) -> None:
    plugin = plugin_factory()
    (plugin / name).write_bytes(b" " * size)
    with pytest.raises(FormatError, match=message):
        capture(plugin)


def test_too_deep_a_tree_is_refused(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    deep = plugin.joinpath(*["d"] * (MAX_DEPTH + 2))
    deep.mkdir(parents=True)
    with pytest.raises(FormatError, match="nested deeper than"):
        capture(plugin)


def test_missing_or_wrong_root(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        capture(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotFoundError, match="is not a directory"):
        capture(tmp_path / "file")


def test_sink_receives_exactly_the_hashed_bytes(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory(extra_files={"big.bin": os.urandom(9 << 20)})  # pipelined path
    received: dict[str, bytearray] = {}

    class Collect:
        def __init__(self, rel: str) -> None:
            self.buf = received.setdefault(rel, bytearray())

        def write(self, data: memoryview) -> int:
            self.buf += data
            return len(data)

    tree = capture(plugin, sink_for=Collect)

    for rel, data in received.items():
        assert bytes(data) == (plugin / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == tree.files[rel].digests["sha256"]


def test_large_file_is_hashed_in_bounded_memory(tmp_path: Path) -> None:
    plugin = tmp_path / "p"
    plugin.mkdir()
    big = plugin / "libbig.so"
    with big.open("wb") as f:  # sparse: 512 MiB on disk costs nothing
        f.truncate(512 << 20)

    tracemalloc.start()
    try:
        tree = capture(plugin)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert tree.files["libbig.so"].size == 512 << 20
    assert tree.files["libbig.so"].digests["sha256"] == hashlib.sha256(bytes(512 << 20)).hexdigest()
    assert peak < 16 << 20, f"capture allocated {peak} bytes for a 512 MiB file"


def _signed(plugin: Path, key: SigningKey, at: datetime) -> tuple[bytes, dict[str, int | None]]:
    """Sign ``plugin``; plugin.sig and the lengths its statement records."""
    envelope = sign(capture(plugin), key, at=at).envelope
    (plugin / "plugin.sig").write_bytes(envelope)
    signed = verify_envelope(envelope, [key.public_key], at=at)
    return envelope, signed.expected


def test_a_pending_capture_of_a_missing_directory_hands_nothing_over(tmp_path: Path) -> None:
    # Nothing was claimed, so nothing the caller authenticates can match it: the
    # caller reads the directory itself and reports what it finds.
    assert PendingCapture(tmp_path / "missing").result(None, {}) is None


def test_pending_capture_in_a_child_matches_an_in_process_capture(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory(extra_files={"big.bin": os.urandom(9 << 20)})
    envelope, expected = _signed(plugin, key, now)

    pending = PendingCapture(plugin)
    assert pending._pid, "expected the capture to run in a forked child"
    forked = pending.result(envelope, expected)
    direct = capture(plugin, expect=expected)

    assert forked is not None
    assert forked.signature == direct.signature == envelope
    assert forked.manifest == direct.manifest
    assert forked.expected == direct.expected == expected
    assert {p: (f.size, dict(f.digests), f.head) for p, f in forked.files.items()} == {
        p: (f.size, dict(f.digests), f.head) for p, f in direct.files.items()
    }


def _ended(pid: int) -> bool:
    """Wait (up to 30 s) for our child ``pid`` to end, without reaping it."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.skipif(not hasattr(os, "waitid"), reason="needs waitid")
def test_a_capture_signed_by_a_named_key_reads_before_it_is_handed_over(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path
) -> None:
    # Claiming more than UNCHECKED_READ, plugin.sig signed by a key the caller named:
    # the child checks that itself and reads all, before the caller has authenticated.
    plugin = plugin_factory(extra_files={"big.bin": os.urandom(UNCHECKED_READ + 1)})
    envelope, expected = _signed(plugin, key, now)
    public = tmp_path / "key.pub"
    public.write_bytes(key.public_key.to_pem())

    pending = PendingCapture(plugin, (str(public),))
    assert pending._pid, "expected the capture to run in a forked child"
    assert _ended(pending._pid), "the capture waited for the caller"
    tree = pending.result(envelope, expected)
    assert tree is not None
    assert tree.files["big.bin"].size == UNCHECKED_READ + 1


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/PID/io")
@pytest.mark.parametrize(
    "named", [pytest.param(False, id="no-key-named"), pytest.param(True, id="another-key")]
)
def test_an_unchecked_claim_of_more_waits_having_read_little(
    plugin_factory: PluginFactory,
    key: SigningKey,
    other_key: SigningKey,
    now: datetime,
    tmp_path: Path,
    named: bool,
) -> None:
    import time

    plugin = plugin_factory(extra_files={"big.bin": os.urandom(3 * UNCHECKED_READ)})
    envelope, expected = _signed(plugin, key, now)
    public = tmp_path / "other.pub"
    public.write_bytes(other_key.public_key.to_pem())

    pending = PendingCapture(plugin, (str(public),) if named else ())
    pid = pending._pid
    assert pid, "expected the capture to run in a forked child"
    try:
        deadline = time.monotonic() + 30  # until it blocks reading the caller's go-ahead
        while "pipe" not in Path(f"/proc/{pid}/wchan").read_text():
            assert time.monotonic() < deadline, "the capture never waited"
            time.sleep(0.01)
        rchar = int(Path(f"/proc/{pid}/io").read_text().split("rchar: ")[1].split()[0])
        assert rchar < UNCHECKED_READ
        tree = pending.result(envelope, expected)  # authenticated now: it reads, then hands over
        assert tree is not None
        assert tree.files["big.bin"].size == 3 * UNCHECKED_READ
    finally:
        pending.cancel()


def test_a_capture_in_a_thread_waits_too_and_cancel_ends_it(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    import threading

    plugin = plugin_factory(extra_files={"big.bin": os.urandom(UNCHECKED_READ + 1)})
    envelope, expected = _signed(plugin, key, now)
    busy = threading.Event()
    other = threading.Thread(target=busy.wait)  # another thread: no fork
    other.start()
    try:
        waiting = PendingCapture(plugin)
        handed = PendingCapture(plugin)
    finally:
        busy.set()
        other.join()
    assert waiting._pid == handed._pid == 0, "expected the captures to run in threads"
    waiting.cancel()
    assert waiting._thread is not None
    waiting._thread.join(timeout=30)
    assert not waiting._thread.is_alive()
    assert waiting._result is not None
    assert waiting._result.files == {}  # it read nothing
    tree = handed.result(envelope, expected)
    assert tree is not None
    assert tree.files["big.bin"].size == UNCHECKED_READ + 1


def test_pending_capture_keeps_the_error_type(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    envelope, expected = _signed(plugin, key, now)
    (plugin / "link").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeFileError, match="link is a symlink"):
        PendingCapture(plugin).result(envelope, expected)


def test_a_pending_capture_of_other_claims_is_not_handed_over(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    envelope, expected = _signed(plugin, key, now)
    pending = PendingCapture(plugin)
    # The caller authenticated other lengths (or another plugin.sig): not this capture.
    assert pending.result(envelope, {**expected, "plugin.json": 1}) is None
    assert PendingCapture(plugin).result(envelope + b" ", expected) is None


def test_a_child_killed_while_reading_hands_nothing_over(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vtreg.verifier.tree as capture_module

    def die(root: str, gate: object) -> bytes:
        faulthandler.disable()  # pytest's handler would print the child's stack
        os.kill(os.getpid(), signal.SIGBUS)
        return b""

    plugin = plugin_factory()
    envelope, expected = _signed(plugin, key, now)
    monkeypatch.setattr(capture_module, "_encode_outcome", die)  # the forked child runs this
    assert PendingCapture(plugin).result(envelope, expected) is None


def test_cancel_stops_the_child(
    plugin_factory: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import vtreg.verifier.tree as capture_module

    def hang(root: str, gate: object) -> bytes:
        time.sleep(60)  # a capture still running when its result stops being wanted
        return b""

    monkeypatch.setattr(capture_module, "_encode_outcome", hang)  # the forked child runs this
    pending = PendingCapture(plugin_factory())
    pid = pending._pid
    assert pid, "expected the capture to run in a forked child"
    try:
        started = time.monotonic()
        pending.cancel()
        elapsed = time.monotonic() - started
        with pytest.raises(ChildProcessError):  # killed and reaped: no child of ours by that pid
            os.waitpid(pid, os.WNOHANG)
        assert elapsed < 10, "cancel() waited for the capture to finish"
        pending.cancel()  # twice is harmless
    finally:  # should cancel() have left the child behind, end it here
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):  # still our child, so still that pid
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def test_a_file_that_grows_while_read_is_refused(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    library = plugin / "libbasic.so"

    class GrowOnFirstWrite:
        def __init__(self) -> None:
            self.grown = False

        def write(self, data: memoryview) -> int:
            if not self.grown:
                with library.open("ab") as f:  # someone appends while we hash
                    f.write(b"more")
                self.grown = True
            return len(data)

    with pytest.raises(UnsafeFileError, match=r"libbasic\.so grew while it was being read"):
        capture(plugin, sink_for=lambda rel: GrowOnFirstWrite() if rel == "libbasic.so" else None)


def test_too_many_entries_are_refused_even_if_empty(tmp_path: Path) -> None:
    from vtreg.verifier.tree import MAX_ENTRIES

    for i in range(MAX_ENTRIES + 1):
        (tmp_path / f"d{i}").mkdir()
    with pytest.raises(FormatError, match="more than 10000 files and directories"):
        capture(tmp_path)


def test_a_plugin_sig_that_appears_during_the_walk_is_refused(
    plugin_factory: PluginFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The capture reads plugin.sig first and picks its digests from it; one that
    # turns up later was not what the digests were picked from.
    import vtreg.verifier.tree as tree_module

    plugin = plugin_factory()

    def written_just_after_the_look(root_fd: int) -> bytes | None:
        (plugin / "plugin.sig").write_bytes(b"{}")
        return None

    monkeypatch.setattr(tree_module, "_read_signature", written_just_after_the_look)
    with pytest.raises(UnsafeFileError, match=r"plugin\.sig appeared while") as refused:
        capture(plugin)
    assert refused.value.code == "unsafe-path"


# --- a capture guided by an authenticated statement ---


def test_a_guided_capture_refuses_an_unsigned_file(
    plugin_factory: PluginFactory,
) -> None:
    plugin = plugin_factory()
    expected = {p: f.size for p, f in capture(plugin).files.items()}
    (plugin / "zzz.bin").write_bytes(b"x")

    with pytest.raises(ContentError, match=r"zzz\.bin not covered") as refused:
        capture(plugin, expect=expected)
    assert refused.value.code == "file-added"


def test_a_guided_capture_refuses_another_size_before_reading(
    plugin_factory: PluginFactory,
) -> None:
    plugin = plugin_factory()
    expected = {p: f.size for p, f in capture(plugin).files.items()}
    library = plugin / "libbasic.so"
    with library.open("r+b") as f:
        f.truncate(1 << 40)  # a sparse TiB: reading it would take hours

    with pytest.raises(ContentError, match=r"libbasic\.so is 1,099,511,627,776 bytes; [\d,]+ were"):
        capture(plugin, expect=expected, sink_for=lambda rel: pytest.fail("copied " + rel))


def test_a_guided_capture_refuses_a_missing_signed_file(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    expected = {**{p: f.size for p, f in capture(plugin).files.items()}, "gone.txt": 3}
    with pytest.raises(ContentError, match=r"gone\.txt is signed but missing") as refused:
        capture(plugin, expect=expected)
    assert refused.value.code == "file-missing"


def test_a_guided_capture_hashes_large_files_exactly(tmp_path: Path) -> None:
    data = os.urandom((17 << 20) + 12345)  # several pipeline buffers and a partial one
    (tmp_path / "f.bin").write_bytes(data)
    tree = capture(tmp_path, expect={"f.bin": len(data)})
    assert tree.files["f.bin"].digests["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="none"),
        pytest.param(b"garbage", id="not-json"),
        pytest.param(b'{"payload": "%%%"}', id="bad-base64"),
        pytest.param(b'{"payload": "e30="}', id="no-statement"),
    ],
)
def test_an_unreadable_envelope_claims_nothing(signature: bytes | None) -> None:
    algorithms, lengths = claimed_lengths(signature)
    assert algorithms == ("sha256",)
    assert lengths is None
