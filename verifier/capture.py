"""Capture a plugin directory: every file's digests, read once, in bounded memory.

The walk never follows a symlink and never opens anything that is not a
regular file: entries are examined with ``lstat`` through directory file
descriptors, opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked again with
``fstat``, so swapping a file for a symlink or a FIFO mid-walk is refused
rather than followed or blocked on.

Large files are hashed with a reader thread feeding the hashing thread a few
fixed 1 MiB buffers: memory stays bounded whatever the file size, and reading
overlaps hashing (both release the GIL). An optional *sink* receives exactly
the bytes that were hashed, which is how the loader gets the bytes it verified.

This module imports only the standard library, so a caller may start a
capture in a thread while heavier modules are still importing.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .errors import FormatError, NotFoundError, UnsafeFileError, VtregError
from .files import read_fd_bounded
from .layout import MANIFEST_FILE, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE_FILE

__all__ = [
    "DEFAULT_ALGORITHMS",
    "MAX_FILES",
    "CapturedFile",
    "PendingCapture",
    "PluginTree",
    "Sink",
    "capture",
]

MAX_FILES = 10_000
MAX_DEPTH = 32
DEFAULT_ALGORITHMS: tuple[str, ...] = ("sha256",)

_HEAD_BYTES = 4096  # enough for any ELF, Mach-O or PE header we read
_CHUNK = 1 << 20
_BUFFERS = 4
_PIPELINE_MIN_SIZE = 8 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Sink(Protocol):
    """Receives the bytes of one file as they are hashed."""

    def write(self, data: memoryview) -> object: ...


@dataclass(frozen=True)
class CapturedFile:
    """One regular file: path relative to the plugin root (``/``-separated), size, digests."""

    path: str
    size: int
    digests: Mapping[str, str]
    head: bytes = field(default=b"", repr=False)  # first bytes of top-level files


@dataclass(frozen=True)
class PluginTree:
    """What a plugin directory held at capture time.

    ``files`` excludes the root ``plugin.sig``; ``manifest`` and ``signature``
    are the exact bytes of ``plugin.json`` and ``plugin.sig`` (None if absent).
    """

    root: str
    files: Mapping[str, CapturedFile]
    manifest: bytes | None
    signature: bytes | None
    algorithms: frozenset[str] = field(default_factory=frozenset)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files.values())


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
    return UnsafeFileError(
        f"{rel} is {_kind(mode)}; a plugin directory may hold only regular files and directories"
    )


class _Hashing:
    """Digests for one file, fed chunk by chunk."""

    def __init__(self, algorithms: tuple[str, ...], sink: Sink | None, *, keep_head: bool) -> None:
        self._hashers = [hashlib.new(a) for a in algorithms]
        self._algorithms = algorithms
        self._sink = sink
        self._keep_head = keep_head
        self.head = b""
        self.size = 0

    def update(self, chunk: memoryview) -> None:
        for h in self._hashers:
            h.update(chunk)
        if self._sink is not None:
            self._sink.write(chunk)
        if self._keep_head and self.size < _HEAD_BYTES:
            self.head += chunk[: _HEAD_BYTES - self.size].tobytes()
        self.size += len(chunk)

    def digests(self) -> dict[str, str]:
        return {a: h.hexdigest() for a, h in zip(self._algorithms, self._hashers, strict=True)}


def _hash_simple(fd: int, hashing: _Hashing) -> None:
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while n := os.readv(fd, [buf]):
        hashing.update(view[:n])


def _hash_pipelined(fd: int, hashing: _Hashing) -> None:
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
    for _ in range(_BUFFERS):
        free.put(bytearray(_CHUNK))
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                buf = free.get()
                n = os.readv(fd, [buf])
                full.put((buf, n))
                if n == 0:
                    return
        except BaseException as e:  # handed to the hashing thread, which re-raises
            full.put(e)

    thread = threading.Thread(target=reader, name="vtreg-capture-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = full.get()
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            if n == 0:
                break
            hashing.update(memoryview(buf)[:n])
            free.put(buf)
    finally:
        stop.set()
        free.put(bytearray(0))  # unblock a reader waiting for a buffer
        thread.join()


class _Walker:
    def __init__(
        self,
        root: str,
        algorithms: tuple[str, ...],
        sink_for: Callable[[str], Sink | None] | None,
    ) -> None:
        self.root = root
        self.algorithms = algorithms
        self.sink_for = sink_for
        self.files: dict[str, CapturedFile] = {}
        self.manifest: bytes | None = None
        self.signature: bytes | None = None

    def walk(self, dir_fd: int, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise FormatError(f"{prefix.rstrip('/')} is nested deeper than {MAX_DEPTH} levels")
        with os.scandir(dir_fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            rel = prefix + name
            if not name.isprintable() or "\\" in name:
                raise UnsafeFileError(f"file name {rel!r} contains control or escape characters")
            try:
                name.encode("utf-8")
            except UnicodeEncodeError as e:
                raise UnsafeFileError(f"file name {rel!r} is not valid UTF-8") from e
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                self._enter(dir_fd, name, rel, depth)
            elif stat.S_ISREG(mode):
                self._file(dir_fd, name, rel, top=not prefix)
            else:
                raise _refuse_special(rel, mode)

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
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise _refuse_special(rel, mode)
            if top and name == SIGNATURE_FILE:
                self.signature = read_fd_bounded(fd, MAX_SIGNATURE_BYTES, SIGNATURE_FILE)
                return
            if len(self.files) >= MAX_FILES:
                raise FormatError(f"the plugin directory holds more than {MAX_FILES} files")
            sink = self.sink_for(rel) if self.sink_for else None
            hashing = _Hashing(self.algorithms, sink, keep_head=top)
            if top and name == MANIFEST_FILE:
                self.manifest = read_fd_bounded(fd, MAX_MANIFEST_BYTES, MANIFEST_FILE)
                hashing.update(memoryview(self.manifest))
            elif os.fstat(fd).st_size >= _PIPELINE_MIN_SIZE:
                _hash_pipelined(fd, hashing)
            else:
                _hash_simple(fd, hashing)
            self.files[rel] = CapturedFile(rel, hashing.size, hashing.digests(), hashing.head)
        except OSError as e:
            raise NotFoundError(f"cannot read {rel} in {self.root}: {e.strerror}") from e
        finally:
            os.close(fd)


def capture(
    root: str | os.PathLike[str],
    *,
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
    sink_for: Callable[[str], Sink | None] | None = None,
) -> PluginTree:
    """Walk and hash a plugin directory.

    Args:
        root: the plugin directory (itself may be reached through a symlink;
            nothing inside it may be one).
        algorithms: hashlib names to compute for every file.
        sink_for: called with each file's relative path; a returned sink gets
            that file's bytes exactly as hashed.

    Returns:
        The captured tree.

    Raises:
        NotFoundError: ``root`` is missing, not a directory or unreadable.
        UnsafeFileError: a symlink, device, FIFO or socket, or an odd file name.
        FormatError: an oversize plugin.json or plugin.sig, too many files or
            too deep a tree.
    """
    root_str = os.fspath(root)
    try:
        root_fd = os.open(root_str, _DIR_FLAGS)
    except FileNotFoundError as e:
        raise NotFoundError(f"plugin directory {root_str} does not exist") from e
    except NotADirectoryError as e:
        raise NotFoundError(f"{root_str} is not a directory") from e
    except OSError as e:
        raise NotFoundError(f"cannot open plugin directory {root_str}: {e.strerror}") from e
    walker = _Walker(root_str, algorithms, sink_for)
    try:
        walker.walk(root_fd, "", 0)
    except VtregError:
        raise
    except OSError as e:
        raise NotFoundError(f"cannot read plugin directory {root_str}: {e.strerror}") from e
    finally:
        os.close(root_fd)
    return PluginTree(
        root=root_str,
        files=dict(sorted(walker.files.items())),
        manifest=walker.manifest,
        signature=walker.signature,
        algorithms=frozenset(algorithms),
    )


class PendingCapture:
    """A capture running in a background thread.

    Hashing releases the GIL, so a caller can capture a large plugin while it
    imports modules or opens a database, then collect the result.
    """

    def __init__(
        self, root: str | os.PathLike[str], algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    ) -> None:
        self._result: PluginTree | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(root, algorithms), name="vtreg-capture", daemon=True
        )
        self._thread.start()

    def _run(self, root: str | os.PathLike[str], algorithms: tuple[str, ...]) -> None:
        try:
            self._result = capture(root, algorithms=algorithms)
        except BaseException as e:  # re-raised in the caller's thread by result()
            self._error = e

    def result(self) -> PluginTree:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None  # noqa: S101 - set whenever _error is not
        return self._result
