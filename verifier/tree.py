"""Capture a plugin directory: every file's digests, read once, in bounded memory.

The walk never follows a symlink and never opens anything that is not a
regular file: entries are examined with ``lstat`` through directory file
descriptors, opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked again with
``fstat``, so swapping a file for a symlink or a FIFO mid-walk is refused
rather than followed or blocked on.

A capture is normally *guided* by an authenticated statement (``expect``:
each signed file's length): a file the statement does not name is refused
before it is opened, one whose size differs from its signed length before a
byte of it is read, and no file is read past its signed length. What a
directory holds then costs nothing unless enough trusted keys signed for it.

Large files are hashed with a reader thread feeding the hashing thread a few
fixed 1 MiB buffers: memory stays bounded whatever the file size, and reading
overlaps hashing (both release the GIL). An optional *sink* receives exactly
the bytes that were hashed, from the same buffers, which is how the loader
gets the bytes it verified in the same pass.

This module imports only the standard library, so a caller may start a
capture in a thread while heavier modules are still importing.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Mapping

from ._base64 import decode_canonical
from .errors import ContentError, FormatError, NotFoundError, UnsafeFileError, VtregError
from .exclude import is_excluded
from .files import read_fd_bounded, read_regular_at
from .layout import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    SIGNATURE_FILE,
    TRUSTED_ALGORITHMS,
)

__all__ = [
    "DEFAULT_ALGORITHMS",
    "MAX_ENTRIES",
    "UNCHECKED_READ",
    "CapturedFile",
    "PendingCapture",
    "PluginTree",
    "Sink",
    "capture",
    "claimed_exclude",
    "claimed_lengths",
    "copy_signed",
    "file_set_error",
    "read_signature",
    "size_error",
]

MAX_ENTRIES = 10_000  # files and directories together
MAX_DEPTH = 32
DEFAULT_ALGORITHMS: tuple[str, ...] = ("sha256",)

_HEAD_BYTES = 4096  # enough for any ELF, Mach-O or PE header we read
_CHUNK = 1 << 20
_BUFFERS = 4
_PIPELINE_MIN_SIZE = 8 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up path)
if TYPE_CHECKING:
    from typing import Protocol

    class Sink(Protocol):
        """Receives the bytes of one file as they are hashed."""

        def write(self, data: memoryview) -> object:
            """Take ``data``, which is valid only during the call."""

    _Filled = tuple[bytearray, int]  # a buffer and how many of its bytes were read


# Plain immutable classes rather than dataclasses: this module sits on the
# start-up path of `vtreg verify` (see registry.cli), where importing
# dataclasses and typing would delay the start of hashing by ~20 ms.


class _Immutable:
    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class CapturedFile(_Immutable):
    """One regular file: path relative to the plugin root (``/``-separated), size, digests.

    ``head`` holds the first bytes of top-level files (enough to read a
    library's ELF, Mach-O or PE header); it is empty for nested files.
    """

    __slots__ = ("digests", "head", "path", "size")
    path: str
    size: int
    digests: Mapping[str, str]
    head: bytes

    def __init__(self, path: str, size: int, digests: Mapping[str, str], head: bytes = b"") -> None:
        for name, value in (("path", path), ("size", size), ("digests", digests), ("head", head)):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"CapturedFile(path={self.path!r}, size={self.size}, digests={dict(self.digests)!r})"


class PluginTree(_Immutable):
    """What a plugin directory held at capture time.

    ``files`` excludes the root ``plugin.sig``; ``manifest`` and ``signature``
    are the exact bytes of ``plugin.json`` and ``plugin.sig`` (None if absent).
    ``expected`` is what guided the capture (each file's signed length), or
    None for a capture of everything (signing). ``exclude`` are the patterns
    of paths the capture left out unread, and ``excluded`` those paths
    (a directory's without what is below it).
    """

    __slots__ = (
        "algorithms",
        "exclude",
        "excluded",
        "expected",
        "files",
        "manifest",
        "root",
        "signature",
    )
    root: str
    files: Mapping[str, CapturedFile]
    manifest: bytes | None
    signature: bytes | None
    algorithms: frozenset[str]
    expected: Mapping[str, int | None] | None
    exclude: tuple[str, ...]
    excluded: tuple[str, ...]

    def __init__(
        self,
        root: str,
        files: Mapping[str, CapturedFile],
        manifest: bytes | None,
        signature: bytes | None,
        algorithms: frozenset[str] = frozenset(),
        expected: Mapping[str, int | None] | None = None,
        exclude: tuple[str, ...] = (),
        excluded: tuple[str, ...] = (),
    ) -> None:
        for name, value in (
            ("root", root),
            ("files", files),
            ("manifest", manifest),
            ("signature", signature),
            ("algorithms", algorithms),
            ("expected", expected),
            ("exclude", exclude),
            ("excluded", excluded),
        ):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"PluginTree(root={self.root!r}, files={list(self.files)!r})"


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def _refuse_special(rel: str, mode: int) -> UnsafeFileError:
    # VT Code reads only the library (a symlink to it may point anywhere inside the
    # trusted directory); a signature covers regular files' bytes, so vtreg refuses.
    vtcode = "VT Code follows one that stays inside" if stat.S_ISLNK(mode) else "VT Code ignores it"
    return UnsafeFileError(
        f"{rel} is {_kind(mode)}; a plugin directory may hold only regular files and "
        f"directories ({vtcode}; vtreg refuses)"
    )


# hashlib.new looks the algorithm up in OpenSSL each time; a copy of an empty one does
# not. Made at first use, not at import (which `vtreg verify` waits for).
_EMPTY_HASHES: dict[str, hashlib._Hash] = {}


def _new_hash(name: str) -> hashlib._Hash:
    empty = _EMPTY_HASHES.get(name)
    if empty is None:
        if name not in TRUSTED_ALGORITHMS:
            return hashlib.new(name)
        empty = _EMPTY_HASHES.setdefault(name, hashlib.new(name))
    return empty.copy()


class _Hashing:
    """Digests for one file, fed chunk by chunk."""

    def __init__(self, algorithms: tuple[str, ...], sink: Sink | None, *, keep_head: bool) -> None:
        self._hashers = [_new_hash(a) for a in algorithms]
        self._algorithms = algorithms
        self._sink = sink
        self._keep_head = keep_head
        self.head = b""
        self.size = 0

    @property
    def sink(self) -> Sink | None:
        return self._sink

    def update(self, chunk: memoryview, *, to_sink: bool = True) -> None:
        for h in self._hashers:
            h.update(chunk)
        if to_sink and self._sink is not None:
            self._sink.write(chunk)
        if self._keep_head and self.size < _HEAD_BYTES:
            self.head += chunk[: _HEAD_BYTES - self.size].tobytes()
        self.size += len(chunk)

    def digests(self) -> dict[str, str]:
        return {a: h.hexdigest() for a, h in zip(self._algorithms, self._hashers, strict=True)}


# Every hashing function reads a file up to the size it had when it was opened,
# never further: a file that keeps growing cannot keep us reading (and filling a
# sealed copy) for ever. What lies beyond is then checked by _check_no_more.


def _hash_simple(fd: int, hashing: _Hashing, size: int) -> None:
    # A buffer sized to the file: most plugin files are small, and a zeroed
    # 1 MiB allocation per file would cost more than reading them.
    buf = bytearray(min(_CHUNK, max(size, 0) + 1))
    view = memoryview(buf)
    remaining = size
    while remaining > 0 and (n := os.readv(fd, [view[: min(len(buf), remaining)]])):
        hashing.update(view[:n])
        remaining -= n


class _Pipeline:
    """The buffers of one pipelined file and the queues that pass them between threads.

    A buffer goes from ``free`` to the reader, which fills it and hands it to
    ``to_hash`` (and ``to_write`` when there is a sink); it returns to ``free``
    once every consumer has released it. A zero-length item means "no more".
    """

    def __init__(self, fd: int, hashing: _Hashing, size: int) -> None:
        import queue  # only here: keeps the module light on the start-up path

        self.fd = fd
        self.hashing = hashing
        self.sink = hashing.sink
        self.remaining = size
        self.consumers = 1 if self.sink is None else 2
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self.to_hash: queue.SimpleQueue[_Filled | BaseException] = queue.SimpleQueue()
        self.to_write: queue.SimpleQueue[_Filled] = queue.SimpleQueue()
        for _ in range(_BUFFERS):
            self.free.put(bytearray(_CHUNK))
        self.users: dict[int, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.write_errors: list[BaseException] = []

    def release(self, buf: bytearray) -> None:
        with self.lock:
            self.users[id(buf)] -= 1
            if self.users[id(buf)] == 0:
                self.free.put(buf)

    def read(self) -> None:
        """The reader thread: fill free buffers until the file's opening size is read."""
        try:
            while not self.stop.is_set():
                buf = self.free.get()
                want = min(len(buf), self.remaining)
                n = os.readv(self.fd, [memoryview(buf)[:want]]) if want else 0
                self.remaining -= n
                with self.lock:
                    self.users[id(buf)] = self.consumers
                self.to_hash.put((buf, n))
                if self.sink is not None:
                    self.to_write.put((buf, n))
                if n == 0:
                    return
        except BaseException as e:  # handed to the hashing thread, which re-raises
            self.to_hash.put(e)
            self.to_write.put((bytearray(0), 0))

    def write(self) -> None:
        """The writer thread: feed the sink; after a failure, keep releasing buffers."""
        sink = self.sink
        assert sink is not None  # noqa: S101 - started only with a sink
        while True:
            buf, n = self.to_write.get()
            if n == 0:
                return
            if not self.write_errors:
                try:
                    sink.write(memoryview(buf)[:n])
                except BaseException as e:  # reported by the hashing thread; keep draining
                    self.write_errors.append(e)
            self.release(buf)

    def hash(self) -> None:
        """The calling thread: hash each buffer read, re-raising what the reader raised."""
        while True:
            item = self.to_hash.get()
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            if n == 0:
                return
            self.hashing.update(memoryview(buf)[:n], to_sink=False)
            self.release(buf)

    def unblock(self) -> None:
        """Wake a reader waiting for a buffer and a writer waiting for work, so both end."""
        self.stop.set()
        self.free.put(bytearray(0))
        self.to_write.put((bytearray(0), 0))


def _hash_pipelined(fd: int, hashing: _Hashing, size: int) -> None:
    """Read in one thread, hash in this one and feed the sink in a third, buffer by buffer.

    All three release the GIL for the real work (read, digest update, write),
    so they overlap; a buffer is reused only once every consumer is done with it.
    """
    pipeline = _Pipeline(fd, hashing, size)
    threads = [threading.Thread(target=pipeline.read, name="vtreg-capture-reader", daemon=True)]
    if pipeline.sink is not None:
        threads.append(
            threading.Thread(target=pipeline.write, name="vtreg-capture-writer", daemon=True)
        )
    for thread in threads:
        thread.start()
    try:
        pipeline.hash()
    finally:
        pipeline.unblock()
        for thread in threads:
            thread.join()
    if pipeline.write_errors:
        raise pipeline.write_errors[0]


def _check_no_more(fd: int, hashing: _Hashing, rel: str) -> None:
    """Refuse a file that has more bytes than it had when it was opened."""
    if os.pread(fd, 1, hashing.size):
        raise UnsafeFileError(f"{rel} grew while it was being read")


def file_set_error(signed: Iterable[str], found: Iterable[str]) -> ContentError | None:
    """The refusal for a directory whose files are not exactly the signed ones, or None."""
    signed, found = set(signed), set(found)
    missing = sorted(signed - found)
    if missing:
        return ContentError(
            f"{_few(missing)} {'is' if len(missing) == 1 else 'are'} signed but missing "
            "from the directory",
            code="file-missing",
        )
    extra = sorted(found - signed)
    return _not_signed(extra) if extra else None


def size_error(rel: str, size: int, signed: int) -> ContentError:
    """The refusal for a file whose size is not its signed length."""
    return ContentError(f"{rel} is {size:,} bytes; {signed:,} were signed")


def _not_signed(extra: list[str]) -> ContentError:
    return ContentError(
        f"{_few(extra)} not covered by the signature (added after signing?)", code="file-added"
    )


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class _Walker:
    def __init__(
        self,
        root: str,
        algorithms: tuple[str, ...],
        sink_for: Callable[[str], Sink | None] | None,
        expect: Mapping[str, int | None] | None,
        exclude: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.exclude = exclude
        self.excluded: list[str] = []
        self.algorithms = algorithms
        self.sink_for = sink_for
        self.expect = expect
        self.files: dict[str, CapturedFile] = {}
        self.manifest: bytes | None = None
        self.entries = 0
        self.signature: bytes | None = None

    def walk(self, dir_fd: int, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise FormatError(f"{prefix.rstrip('/')} is nested deeper than {MAX_DEPTH} levels")
        for entry in self._listing(dir_fd):
            name = entry.name
            rel = prefix + name
            _check_name(name, rel)
            if is_excluded(rel, self.exclude):
                self._leave_out(dir_fd, entry, rel, depth)
                continue
            # The type the listing gave (a stat only where it gave none); a file is
            # opened without following a symlink and checked again once open.
            if entry.is_dir(follow_symlinks=False):
                self._enter(dir_fd, name, rel, depth)
            elif not entry.is_file(follow_symlinks=False):
                raise _refuse_special(rel, entry.stat(follow_symlinks=False).st_mode)
            elif self._wanted(rel, top=not prefix):
                self._file(dir_fd, name, rel, top=not prefix)

    def _leave_out(self, dir_fd: int, entry: os.DirEntry[str], rel: str, depth: int) -> None:
        """Record an excluded path; no file of it is ever opened. Signing (no ``expect``)
        lists an excluded directory's names, so that it can refuse to leave a library out."""
        if self.expect is not None or not entry.is_dir(follow_symlinks=False):
            self.excluded.append(rel)
            return
        if depth >= MAX_DEPTH:
            raise FormatError(f"{rel} is nested deeper than {MAX_DEPTH} levels")
        try:
            fd = os.open(entry.name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
        except OSError as e:
            raise UnsafeFileError(f"{rel} changed while it was read ({e.strerror})") from e
        try:
            for inner in self._listing(fd):
                self._leave_out(fd, inner, f"{rel}/{inner.name}", depth + 1)
        finally:
            os.close(fd)

    def _listing(self, dir_fd: int) -> list[os.DirEntry[str]]:
        """A directory's entries, sorted; counted as they are read, so an endless
        listing stops at MAX_ENTRIES."""
        entries = []
        with os.scandir(dir_fd) as it:
            for entry in it:
                self.entries += 1
                if self.entries > MAX_ENTRIES:
                    raise FormatError(
                        f"the plugin directory holds more than {MAX_ENTRIES} files and directories"
                    )
                entries.append(entry)
        return sorted(entries, key=lambda e: e.name)

    def _wanted(self, rel: str, *, top: bool) -> bool:
        """Whether to read ``rel``; a guided capture refuses a file it was not told of."""
        if top and rel == SIGNATURE_FILE:
            return True  # checked against the copy read first, in _file
        if self.expect is not None and rel not in self.expect:
            raise _not_signed([rel])
        return True

    def _enter(self, dir_fd: int, name: str, rel: str, depth: int) -> None:
        try:
            fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
        except OSError as e:
            raise UnsafeFileError(f"{rel} changed while it was read ({e.strerror})") from e
        try:
            self.walk(fd, rel + "/", depth + 1)
        finally:
            os.close(fd)

    def _file(self, dir_fd: int, name: str, rel: str, *, top: bool) -> None:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            raise UnsafeFileError(f"{rel} changed while it was read ({e.strerror})") from e
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _refuse_special(rel, info.st_mode)
            if top and name == SIGNATURE_FILE:
                # capture() read it before anything else; one that was not there
                # then (or not a plain file) came while the directory was read.
                if self.signature is None:
                    raise UnsafeFileError(f"{SIGNATURE_FILE} appeared while {self.root} was read")
                return
            self.files[rel] = self._hash(fd, rel, self._size(rel, info.st_size), top=top)
        except OSError as e:
            raise NotFoundError(f"cannot read {rel} in {self.root}: {e.strerror}") from e
        finally:
            os.close(fd)

    def _size(self, rel: str, size: int) -> int:
        """How much of ``rel`` to read: all of it, which must be its signed length if any."""
        signed = self.expect.get(rel) if self.expect is not None else None
        if signed is not None and size != signed:
            raise size_error(rel, size, signed)
        return size

    def _hash(self, fd: int, rel: str, size: int, *, top: bool) -> CapturedFile:
        sink = self.sink_for(rel) if self.sink_for else None
        hashing = _Hashing(self.algorithms, sink, keep_head=top)
        if top and rel == MANIFEST_FILE:
            self.manifest = read_fd_bounded(fd, MAX_MANIFEST_BYTES, MANIFEST_FILE)
            hashing.update(memoryview(self.manifest))
        else:
            (_hash_pipelined if size >= _PIPELINE_MIN_SIZE else _hash_simple)(fd, hashing, size)
            _check_no_more(fd, hashing, rel)
        if hashing.size != size:
            raise UnsafeFileError(f"{rel} changed size while it was being read")
        return CapturedFile(rel, hashing.size, hashing.digests(), hashing.head)


def _check_name(name: str, rel: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UnsafeFileError(f"file name {rel!r} is not valid UTF-8") from e
    if not name.isprintable() or "\\" in name:
        raise UnsafeFileError(f"file name {rel!r} contains control or escape characters")


def _read_signature(root_fd: int) -> bytes | None:
    """plugin.sig's bytes, read before anything is hashed; None if it is not a plain file.

    Anything else there (a symlink, a FIFO) is left for the walk to refuse.
    """
    return read_regular_at(
        root_fd, SIGNATURE_FILE, lambda fd: read_fd_bounded(fd, MAX_SIGNATURE_BYTES, SIGNATURE_FILE)
    )


def _with_named(algorithms: tuple[str, ...], named: Iterable[str]) -> tuple[str, ...]:
    """``algorithms`` and every trusted one in ``named``, in a stable order."""
    return tuple(a for a in TRUSTED_ALGORITHMS if a in algorithms or a in named)


def claimed_lengths(
    signature: bytes | None,
) -> tuple[tuple[str, ...], dict[str, int | None] | None]:
    """What plugin.sig's statement *claims*: the algorithms its subjects name, and each
    signed file's length (None for each file of a statement that records no lengths;
    None in all if the statement cannot be read).

    Nothing here is authenticated, and nothing is decided on it: it lets a
    capture start before the envelope has been checked (while the modules that
    check it are still importing), and the caller must compare the capture's
    ``expected`` with the authenticated statement before using the result.
    Anything unreadable claims nothing.
    """
    named: set[str] = set()
    try:
        envelope = json.loads(signature or b"{}")
        statement = json.loads(decode_canonical(envelope["payload"]))
        names = [str(s["name"]) for s in statement["subject"]]
        for subject in statement["subject"]:
            named.update(a for a in subject["digest"] if a in TRUSTED_ALGORITHMS)
        claimed = statement["predicate"].get("lengths")
        lengths: dict[str, int | None] = dict.fromkeys(names)
        if claimed is not None:
            lengths.update((str(k), int(v)) for k, v in claimed.items())
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return _with_named(DEFAULT_ALGORITHMS, named), None  # the decision refuses it
    if len(lengths) != len(names) or any(v is not None and v < 0 for v in lengths.values()):
        return _with_named(DEFAULT_ALGORITHMS, named), None
    return _with_named(DEFAULT_ALGORITHMS, named), lengths


def claimed_exclude(signature: bytes | None) -> tuple[str, ...]:
    """The exclude patterns plugin.sig's statement *claims* (unauthenticated, as
    :func:`claimed_lengths`); none if it cannot be read. A tree captured with them
    is judged only if they are the authenticated statement's (``check_tree``)."""
    try:
        envelope = json.loads(signature or b"{}")
        predicate = json.loads(decode_canonical(envelope["payload"]))["predicate"]
        patterns = predicate.get("exclude") or []
        return tuple(p for p in patterns if isinstance(p, str))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return ()


def _open_root(root: str, dir_fd: int | None) -> int:
    try:
        return os.dup(dir_fd) if dir_fd is not None else os.open(root, _DIR_FLAGS)
    except FileNotFoundError as e:
        raise NotFoundError(f"plugin directory {root} does not exist") from e
    except NotADirectoryError as e:
        raise NotFoundError(f"{root} is not a directory") from e
    except OSError as e:
        raise NotFoundError(f"cannot open plugin directory {root}: {e.strerror}") from e


def read_signature(root: str | os.PathLike[str], *, dir_fd: int | None = None) -> bytes | None:
    """plugin.sig's bytes (bounded), or None if there is none: the first thing to check.

    Raises:
        NotFoundError: ``root`` is missing, not a directory or unreadable.
        FormatError: plugin.sig is oversize.
    """
    root_str = os.fspath(root)
    root_fd = _open_root(root_str, dir_fd)
    try:
        return _read_signature(root_fd)
    except OSError as e:
        raise NotFoundError(f"cannot read {SIGNATURE_FILE} in {root_str}: {e.strerror}") from e
    finally:
        os.close(root_fd)


def capture(
    root: str | os.PathLike[str],
    *,
    expect: Mapping[str, int | None] | None = None,
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
    sink_for: Callable[[str], Sink | None] | None = None,
    dir_fd: int | None = None,
    signature: bytes | None = None,
    exclude: tuple[str, ...] = (),
) -> PluginTree:
    """Walk and hash a plugin directory.

    Args:
        root: the plugin directory (itself may be reached through a symlink;
            nothing inside it may be one).
        expect: each signed file's length, from an authenticated statement:
            only these files are read, none past its length, and any other
            file, size or absence is refused first (a length of None: a v1
            statement, which records none). None reads every file (signing).
        algorithms: hashlib names to compute for every file.
        sink_for: called with each file's relative path; a returned sink gets
            that file's bytes exactly as hashed.
        dir_fd: an open descriptor of ``root`` to walk instead of opening
            ``root`` again (the loader opens and checks it first).
        signature: plugin.sig's bytes as the caller read (and authenticated)
            them, kept as the tree's instead of reading the file again; the
            walk still requires a plain plugin.sig in place.
        exclude: glob patterns of paths to leave out unopened
            (:mod:`verifier.exclude`): the signed statement's, or the signer's.

    Returns:
        The captured tree.

    Raises:
        ContentError: (with ``expect``) a file added, missing or of another size.
        NotFoundError: ``root`` is missing, not a directory or unreadable.
        UnsafeFileError: a symlink, device, FIFO or socket, or an odd file name.
        FormatError: an oversize plugin.json or plugin.sig, too many files or
            too deep a tree.
    """
    root_str = os.fspath(root)
    root_fd = _open_root(root_str, dir_fd)
    try:
        if signature is None:
            signature = _read_signature(root_fd)
        if expect is None:
            algorithms = _with_named(algorithms, claimed_lengths(signature)[0])
        walker = _Walker(root_str, algorithms, sink_for, expect, exclude)
        walker.signature = signature
        walker.walk(root_fd, "", 0)
    except VtregError:
        raise
    except OSError as e:
        raise NotFoundError(f"cannot read plugin directory {root_str}: {e.strerror}") from e
    finally:
        os.close(root_fd)
    if expect is not None and (missing := file_set_error(expect, walker.files)) is not None:
        raise missing
    return PluginTree(
        root=root_str,
        files=dict(sorted(walker.files.items())),
        manifest=walker.manifest,
        signature=walker.signature,
        algorithms=frozenset(algorithms),
        expected=dict(expect) if expect is not None else None,
        exclude=tuple(exclude),
        excluded=tuple(walker.excluded),
    )


def copy_signed(
    dir_fd: int, rel: str, *, length: int, digests: Mapping[str, str], sink: Sink
) -> None:
    """Copy the signed file ``rel`` (under the directory open at ``dir_fd``) into ``sink``,
    hashing exactly the bytes copied: afterwards the sink holds the signed bytes, or this
    raised. For a file the capture hashed but did not keep (a library's dependency, once
    the library says it needs it); each path component is opened without following
    symlinks, and no more than ``length`` bytes are read.

    Raises:
        ContentError: the file's length or bytes are no longer what was signed.
        UnsafeFileError: a component is not a plain directory or file (any more).
    """
    *parents, name = rel.split("/")
    opened: list[int] = []
    try:
        at = dir_fd
        for part in parents:
            at = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=at)
            opened.append(at)
        fd = os.open(name, _FILE_FLAGS, dir_fd=at)
        opened.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse_special(rel, info.st_mode)
        if info.st_size != length:
            raise size_error(rel, info.st_size, length)
        hashing = _Hashing(tuple(digests), sink, keep_head=False)
        _hash_simple(fd, hashing, length)
        _check_no_more(fd, hashing, rel)
    except OSError as e:
        raise UnsafeFileError(f"{rel} changed after it was verified ({e.strerror})") from e
    finally:
        for fd in reversed(opened):
            os.close(fd)
    if hashing.size != length or hashing.digests() != dict(digests):
        raise ContentError(f"{rel} changed after it was verified")


class PendingCapture:
    """A capture started before plugin.sig can be checked, to overlap the imports that check it.

    It is guided by what plugin.sig *claims* (:func:`claimed_lengths`): only the
    claimed files, none past its claimed length. An unchecked envelope can make it
    read at most :data:`UNCHECKED_READ` bytes: a claim of more waits, having read
    only plugin.sig, until plugin.sig is found signed by ``threshold`` of ``key_files``
    (:func:`~vtreg.verifier._presigned.signed_by`, checked in the capture
    itself) or until the caller, having authenticated it, calls :meth:`result`
    for exactly those bytes. :meth:`result` hands the tree over only for exactly
    the plugin.sig and lengths the caller has authenticated; anything else is the
    caller's to capture again, and :meth:`cancel` stops it.

    Where it is safe to fork (POSIX, and the caller has no other threads), the
    capture runs in a child process, which shares no GIL with the caller and
    is killed outright on :meth:`cancel`. The child sends the tree back over a
    pipe with :mod:`marshal` (plain data only; nothing is executed on
    loading). Elsewhere a thread runs the capture.
    """

    def __init__(
        self, root: str | os.PathLike[str], key_files: tuple[str, ...] = (), threshold: int = 1
    ) -> None:
        self.root = os.fspath(root)
        self.key_files = key_files
        self.threshold = threshold
        self._result: PluginTree | None = None
        self._error: BaseException | None = None
        self._claim: _Claim = (None, None)
        self._pid = 0
        self._pipe = -1
        self._go_pipe = -1  # the fork's: the authenticated plugin.sig's SHA-256 goes here
        self._go = threading.Event()  # the thread's: set with _go_digest (None: stop)
        self._go_digest: bytes | None = None
        if hasattr(os, "fork") and threading.active_count() == 1:
            self._fork()
        else:
            self._thread: threading.Thread | None = threading.Thread(
                target=self._run_thread, name="vtreg-capture", daemon=True
            )
            self._thread.start()

    def _run_thread(self) -> None:
        try:
            self._claim, outcome = _speculate(self.root, self._thread_gate)
            if isinstance(outcome, BaseException):
                self._error = outcome
            else:
                self._result = outcome
        except BaseException as e:  # re-raised in the caller's thread by result()
            self._error = e

    def _allowed(self, signature: bytes | None, expect: Mapping[str, int | None]) -> bool:
        """May the capture read what ``signature`` claims without waiting for the caller?"""
        claimed = sum(n for n in expect.values() if n is not None)
        if None not in expect.values() and claimed <= UNCHECKED_READ:
            return True
        from ._presigned import signed_by

        return signed_by(signature, self.key_files, self.threshold)

    def _thread_gate(self, signature: bytes | None, expect: Mapping[str, int | None]) -> bool:
        if self._allowed(signature, expect):
            return True
        self._go.wait()
        return self._go_digest == _digest(signature)

    def _fork_gate(self, signature: bytes | None, expect: Mapping[str, int | None]) -> bool:
        if self._allowed(signature, expect):
            return True
        got = b""
        while len(got) < 32 and (chunk := os.read(self._go_pipe, 32 - len(got))):
            got += chunk
        return got == _digest(signature)  # b"": the caller closed the pipe, refusing

    def _fork(self) -> None:
        read_end, write_end = os.pipe()
        go_read, go_write = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: capture, report, and leave without cleanup
            os.close(read_end)
            os.close(go_write)
            self._go_pipe = go_read
            code = 0
            try:
                _die_with(parent)
                message = _encode_outcome(self.root, self._fork_gate)
                view = memoryview(message)
                while view:
                    view = view[os.write(write_end, view) :]
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        os.close(go_read)
        self._pid, self._pipe, self._go_pipe = pid, read_end, go_write
        self._thread = None

    def _release(self, signature: bytes | None) -> None:
        """Let a capture waiting for plugin.sig to be authenticated read what it claims, if it
        read these bytes (``None``: it may not; it stops having read nothing more)."""
        if self._thread is not None:
            self._go_digest = _digest(signature) if signature is not None else None
            self._go.set()
            return
        if self._go_pipe < 0:
            return
        try:
            if signature is not None:
                os.write(self._go_pipe, _digest(signature))  # 32 bytes: within PIPE_BUF
        except OSError:
            pass  # the child has ended already (it did not wait): its report says how
        finally:
            os.close(self._go_pipe)
            self._go_pipe = -1

    def result(
        self, signature: bytes | None, expect: Mapping[str, int | None]
    ) -> PluginTree | None:
        """Wait for the capture; its tree, or what it raised, if it was guided by exactly
        ``signature`` and ``expect`` (authenticated by the caller since); else None.

        Call it only once ``signature`` is authenticated: a capture that waits for that
        then reads what it claims.

        Raises:
            VtregError: what the capture raised (a refusal, an unreadable file).
        """
        self._release(signature)
        if self._thread is not None:
            self._thread.join()
        elif self._pid:
            self._collect()
        if self._claim != (signature, dict(expect)):
            return None  # plugin.sig changed, or claimed something else: capture again
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        """Stop a capture whose result is no longer wanted (a thread is left to finish)."""
        self._release(None)
        if self._pid:
            # not contextlib.suppress: contextlib stays off the start-up path
            try:  # noqa: SIM105
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(self._pipe)
            os.waitpid(self._pid, 0)
            self._pid = 0

    def _collect(self) -> None:
        chunks = []
        try:
            while chunk := os.read(self._pipe, 1 << 20):
                chunks.append(chunk)
        except BaseException:
            # Interrupted (Ctrl-C): nobody will read what the child finds, and waiting
            # for it below would wait for the whole directory to be read.
            os.kill(self._pid, signal.SIGKILL)
            raise
        finally:
            os.close(self._pipe)
            _, status = os.waitpid(self._pid, 0)
            self._pid = 0
        data = b"".join(chunks)
        if not data or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            how = (
                f"signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"status {os.waitstatus_to_exitcode(status)}"
            )
            self._error = NotFoundError(
                f"reading {self.root} failed ({how}); did a file change while it was read?"
            )
            return
        self._claim, self._result, self._error = _decode_outcome(data)


def _die_with(parent: int) -> None:
    """Make this forked child end when ``parent`` does, however it ends (kill -9 included).

    On Linux the kernel delivers SIGKILL at the parent's death (PR_SET_PDEATHSIG);
    a parent already gone by then is caught by its pid no longer being ours.
    Elsewhere the child ends at its next write to the parent's closed pipe.
    """
    try:
        import ctypes  # only in the child: the caller's start-up path stays light

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl: not Linux
    if os.getppid() != parent:
        os._exit(1)


_PR_SET_PDEATHSIG = 1


# plugin.sig as read, and the lengths it claimed
_Claim = tuple[bytes | None, dict[str, int | None] | None]


def _digest(signature: bytes | None) -> bytes:
    return hashlib.sha256(signature or b"").digest()


# Bytes an early capture may read for an unauthenticated plugin.sig (besides plugin.sig).
UNCHECKED_READ = 4 << 20

# May the capture read what this plugin.sig claims? (it may wait for the caller to say)
_Gate = Callable[[bytes | None, Mapping[str, int | None]], bool]


def _speculate(root: str, gate: _Gate) -> tuple[_Claim, PluginTree | VtregError]:
    """Capture what plugin.sig claims, once ``gate`` allows; nothing at all when it claims
    nothing readable, or the gate refuses."""
    try:
        signature = read_signature(root)
    except VtregError as e:
        return (None, None), e
    algorithms, expect = claimed_lengths(signature)
    claim: _Claim = (signature, expect)
    if expect is None:  # an empty tree, which no authenticated statement will match
        return claim, PluginTree(root, {}, None, signature, frozenset(algorithms))
    if not gate(signature, expect):  # a claim no result() will match: captured again
        return (None, None), PluginTree(root, {}, None, signature, frozenset(algorithms))
    try:
        exclude = claimed_exclude(signature)
        return claim, capture(root, expect=expect, algorithms=algorithms, exclude=exclude)
    except VtregError as e:
        return claim, e


def _encode_outcome(root: str, gate: _Gate) -> bytes:
    claim, outcome = _speculate(root, gate)
    if isinstance(outcome, VtregError):
        error = (type(outcome).__name__, str(outcome), getattr(outcome, "code", None))
        return marshal.dumps(("error", claim, error))
    tree = outcome
    files = [(f.path, f.size, dict(f.digests), f.head) for f in tree.files.values()]
    body = (tree.root, files, tree.manifest, tree.signature, sorted(tree.algorithms))
    return marshal.dumps(("tree", claim, (*body, tree.exclude, tree.excluded)))


def _decode_outcome(data: bytes) -> tuple[_Claim, PluginTree | None, VtregError | None]:
    from . import errors

    kind_of, claim, body = marshal.loads(data)  # noqa: S302 - our own child's plain data
    if kind_of == "error":
        name, message, code = body
        kind = getattr(errors, name, VtregError)
        if isinstance(kind, type) and issubclass(kind, errors.VerificationError):
            return claim, None, kind(message, code=code)
        if not (isinstance(kind, type) and issubclass(kind, VtregError)):
            kind = VtregError
        return claim, None, kind(message)
    root, files, manifest, signature, algorithms, exclude, excluded = body
    expect = claim[1]
    tree = PluginTree(
        root=root,
        files={p: CapturedFile(p, size, digests, head) for p, size, digests, head in files},
        manifest=manifest,
        signature=signature,
        algorithms=frozenset(algorithms),
        expected=expect,
        exclude=tuple(exclude),
        excluded=tuple(excluded),
    )
    return claim, tree, None
