"""Small, careful file IO: bounded reads and all-or-nothing writes.

Writes go to an anonymous ``O_TMPFILE`` inode on the target's filesystem and
are linked into place only once complete and fsync'ed, so an interrupted
process (even ``kill -9``) leaves either the old file or the new one, never
half of one. A replacement is given a temporary name in the directory *above*
the target while it waits for the rename, so no stray file can appear inside a
plugin directory (where it would change the signed content).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Sequence

from .errors import FormatError, NotFoundError, VtregError, WriteError

__all__ = [
    "atomic_write",
    "create_files_exclusive",
    "read_bounded",
    "read_fd_bounded",
    "read_regular_at",
    "refuse_existing",
]

_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_bounded(
    path: str | os.PathLike[str],
    limit: int,
    what: str,
    *,
    too_large: type[VtregError] = FormatError,
) -> bytes:
    """Read a whole regular file of at most ``limit`` bytes.

    The file is opened non-blocking, so a FIFO in its place cannot hang us,
    and it is never read past ``limit + 1`` bytes, so an endless or growing
    file cannot exhaust memory.

    Raises:
        NotFoundError: missing, unreadable, or not a regular file.
        too_large: larger than ``limit``.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError as e:
        raise NotFoundError(f"{what} does not exist") from e
    except OSError as e:
        raise NotFoundError(f"cannot open {what}: {e.strerror}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotFoundError(f"{what} is not a regular file")
        return read_fd_bounded(fd, limit, what, too_large=too_large)
    finally:
        os.close(fd)


def read_fd_bounded(
    fd: int, limit: int, what: str, *, too_large: type[VtregError] = FormatError
) -> bytes:
    """Read an open file to its end, refusing more than ``limit`` bytes.

    Args:
        fd: an open descriptor, read from its current offset.
        limit: the most bytes accepted.
        what: names the file in error messages.
        too_large: the error raised past ``limit``.

    Raises:
        FormatError: (or ``too_large``) more than ``limit`` bytes.
        NotFoundError: reading failed.
    """
    chunks: list[bytes] = []
    total = 0
    try:
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large(f"{what} is larger than the {limit}-byte limit")
    except OSError as e:
        raise NotFoundError(f"cannot read {what}: {e.strerror}") from e
    return b"".join(chunks)


def read_regular_at(dir_fd: int, name: str, read: Callable[[int], bytes]) -> bytes | None:
    """``read(fd)`` of the regular file ``name`` in ``dir_fd``, or None if there is none.

    Opened without following a symlink or blocking on a FIFO; anything that is
    not a plain, readable file gives None, and the walk that follows refuses it
    properly.
    """
    try:
        fd = os.open(name, _READ_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return read(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    finally:
        os.close(fd)


def _open_anonymous(dir_fd: int, mode: int) -> int | None:
    """An unnamed file in the directory, or None where O_TMPFILE is unsupported."""
    flags = getattr(os, "O_TMPFILE", 0)
    if not flags:
        return None
    try:
        return os.open(".", flags | os.O_WRONLY | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None
        raise


def _write_all(fd: int, data: bytes, mode: int) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fchmod(fd, mode)  # the umask must not loosen or tighten what we asked for
    os.fsync(fd)


def _temp_name(name: str) -> str:
    return f".{name}.{os.urandom(6).hex()}.tmp"


def _stage_dir(parent: str, dir_fd: int) -> int:
    """Where a replacement waits for its rename: one level up when possible.

    A temporary name must never appear, even for a moment a ``kill -9`` could
    freeze, in the target directory: a plugin directory is signed whole, so a
    stray file there would itself change the content.
    """
    try:
        return os.open(os.path.dirname(parent) or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return dir_fd


def _place(path: str, data: bytes, mode: int, *, replace: bool) -> None:
    """Write ``data`` to ``path`` all-or-nothing; with ``replace=False`` never clobber."""
    parent, name = os.path.split(os.path.abspath(path))
    dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stage_fd = _stage_dir(parent, dir_fd) if replace else dir_fd
    temp_name: str | None = None
    try:
        fd = _open_anonymous(dir_fd, mode)  # an unnamed inode on the target's filesystem
        if fd is None:
            temp_name = _temp_name(name)
            fd = os.open(
                temp_name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                mode,
                dir_fd=dir_fd,
            )
            stage_fd = dir_fd  # a named file stays where it was made
        try:
            _write_all(fd, data, mode)
            if not replace:
                # linkat() fails with EEXIST rather than clobber.
                if temp_name is None:
                    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)
                else:
                    os.link(temp_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                if temp_name is None:
                    temp_name = _temp_name(name)
                    try:
                        os.link(f"/proc/self/fd/{fd}", temp_name, dst_dir_fd=stage_fd)
                    except OSError:
                        if stage_fd == dir_fd:  # pragma: no cover - nowhere else to try
                            raise
                        os.close(stage_fd)  # another filesystem, or not writable: stay here
                        stage_fd = dir_fd
                        os.link(f"/proc/self/fd/{fd}", temp_name, dst_dir_fd=stage_fd)
                os.replace(temp_name, name, src_dir_fd=stage_fd, dst_dir_fd=dir_fd)
        finally:
            os.close(fd)
            if temp_name is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp_name, dir_fd=stage_fd)
        os.fsync(dir_fd)
    finally:
        if stage_fd != dir_fd:
            os.close(stage_fd)
        os.close(dir_fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    Raises:
        WriteError: the directory is missing or not writable, or the disk is full.
    """
    target = os.fspath(path)
    try:
        _place(target, data, mode, replace=True)
    except OSError as e:
        raise WriteError(f"cannot write {target}: {e.strerror}") from e


def refuse_existing(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Raise :class:`WriteError` naming every path that already exists."""
    existing = [os.fspath(p) for p in paths if os.path.lexists(p)]
    if existing:
        raise WriteError(f"refusing to overwrite {', '.join(existing)}")


def create_files_exclusive(files: Sequence[tuple[str | os.PathLike[str], bytes, int]]) -> None:
    """Create every file or none; refuse if any of them already exists.

    Args:
        files: ``(path, data, mode)`` triples.

    Raises:
        WriteError: a file exists already, or one could not be written (any
            file this call created is removed again).
    """
    paths = [os.fspath(p) for p, _, _ in files]
    refuse_existing(paths)
    created: list[str] = []
    try:
        for path, (_, data, mode) in zip(paths, files, strict=True):
            try:
                _place(path, data, mode, replace=False)
            except FileExistsError as e:
                raise WriteError(f"refusing to overwrite {path}") from e
            except OSError as e:
                raise WriteError(f"cannot write {path}: {e.strerror}") from e
            created.append(path)
    except BaseException:
        for path in created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
