"""Small, careful file IO: bounded reads and all-or-nothing writes.

A replacement goes to an anonymous ``O_TMPFILE`` inode on the target's
filesystem and is renamed into place only once complete and fsync'ed, so an
interrupted process (even ``kill -9``) leaves either the old file or the new
one, never half of one. It is given a temporary name in the directory *above*
the target while it waits for the rename, so no stray file can appear inside a
plugin directory (where it would change the signed content); a temporary a
killed writer left is removed by the next write. A set of new files (a key
pair) is staged in a private directory and linked into place, and what a
writer killed between two links made is removed again by the next call.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
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
    "remove_half_made",
    "remove_stale_temporaries",
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
        # Ask for what the file holds (and one byte more, to see the end), not a fixed
        # MiB: a large request is allocated with mmap and, shrunk to a small result,
        # stays a mapping of its own for as long as the bytes live.
        want = max(os.fstat(fd).st_size, 4096) + 1
        while chunk := os.read(fd, min(want, limit + 1 - total)):
            want = 64 << 10
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


# Names only vtreg gives: a replacement waiting for its rename, and the private
# directory a set of new files is staged in. Only these are ever cleaned up.
_HEX = "[0-9a-f]{12}"


def _temp_name(name: str) -> str:
    return f".{name}.vtreg-{os.urandom(6).hex()}.tmp"


def _stage_name(name: str) -> str:
    return f".{name}.vtreg-{os.urandom(6).hex()}.staging"


def _matching(dir_fd: int, pattern: re.Pattern[str]) -> list[str]:
    with os.scandir(dir_fd) as entries:
        return [e.name for e in entries if pattern.fullmatch(e.name)]


def _claim_abandoned(dir_fd: int, name: str, flags: int) -> int | None:
    """``name`` opened and locked if it is ours and its writer is gone, else None.

    A writer holds an exclusive ``flock`` on what it stages for as long as it
    lives, and the kernel drops the lock when it dies, however it dies; so a
    lock we can take means nothing will use the file again. An age could not
    tell a paused writer from a dead one.
    """
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid():
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                return fd
    except OSError:
        pass
    os.close(fd)
    return None


def remove_stale_temporaries(path: str | os.PathLike[str]) -> None:
    """Remove the temporaries killed writers of ``path`` left, beside it or one level up.

    Only regular files named ``.NAME.vtreg-<hex>.tmp``, owned by this user,
    that no live writer holds (see :func:`_claim_abandoned`) are removed;
    anything else is left alone, and a failure to remove is not an error.
    """
    parent, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = re.compile(rf"\.{re.escape(name)}\.vtreg-{_HEX}\.tmp")
    for directory in {parent, os.path.dirname(parent)}:
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            for temp in _matching(dir_fd, pattern):
                fd = _claim_abandoned(dir_fd, temp, os.O_RDONLY)
                if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode):
                    with contextlib.suppress(OSError):
                        os.unlink(temp, dir_fd=dir_fd)
                if fd is not None:
                    os.close(fd)
        finally:
            os.close(dir_fd)


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


def _replace(path: str, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` all-or-nothing, replacing what is there."""
    parent, name = os.path.split(os.path.abspath(path))
    dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stage_fd = _stage_dir(parent, dir_fd)
    temp_name = _temp_name(name)
    try:
        fd = _open_anonymous(dir_fd, mode)  # an unnamed inode on the target's filesystem
        anonymous = fd is not None
        if fd is None:
            if stage_fd != dir_fd:
                os.close(stage_fd)
            stage_fd = dir_fd  # a named file stays where it was made
            # Locked just after it is created: in between, a cleaner could take
            # it, and this write would then fail, never land half.
            fd = os.open(
                temp_name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                mode,
                dir_fd=dir_fd,
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held while we live: our temporary is not stale
            _write_all(fd, data, mode)
            if anonymous:
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
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name, dir_fd=stage_fd)  # before the close drops our lock
            os.close(fd)
        os.fsync(dir_fd)
    finally:
        if stage_fd != dir_fd:
            os.close(stage_fd)
        os.close(dir_fd)


def atomic_write(
    path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *, clean: bool = True
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    ``clean=False`` skips looking for temporaries killed writers of ``path``
    left (a scan of the directory): for a new, never-rewritten file among
    many, such as a fleet repository's versioned metadata, where a scan per
    file would make writing n files cost n².

    Raises:
        WriteError: the directory is missing or not writable, or the disk is full.
    """
    target = os.fspath(path)
    if clean:
        remove_stale_temporaries(target)
    try:
        _replace(target, data, mode)
    except OSError as e:
        raise WriteError(f"cannot write {target}: {e.strerror}") from e


def refuse_existing(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Raise :class:`WriteError` naming every path that already exists."""
    existing = [os.fspath(p) for p in paths if os.path.lexists(p)]
    if existing:
        raise WriteError(f"refusing to overwrite {', '.join(existing)}")


def _one_parent(paths: Sequence[str]) -> str:
    parents = {os.path.dirname(os.path.abspath(p)) for p in paths}
    if len(parents) != 1:
        raise ValueError("the files must all be in one directory")
    return parents.pop()


def create_files_exclusive(files: Sequence[tuple[str | os.PathLike[str], bytes, int]]) -> None:
    """Create every file or none, as the next call sees it; refuse if any of them exists.

    The files are written into a private staging directory beside them and
    then hard-linked into place in the order given (``linkat`` refuses to
    clobber). A process killed between two links leaves the staging directory
    behind, proof of which files in place it made, and the next call (or
    :func:`remove_half_made`) removes those again.

    Args:
        files: ``(path, data, mode)`` triples, all in one directory.

    Raises:
        WriteError: a file exists already, or one could not be written (any
            file this call linked into place is removed again).
    """
    paths = [os.fspath(p) for p, _, _ in files]
    parent = _one_parent(paths)
    remove_half_made(paths)
    refuse_existing(paths)
    entries = [
        (os.path.basename(p), data, mode) for p, (_, data, mode) in zip(paths, files, strict=True)
    ]
    try:
        dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _create_staged(dir_fd, entries)
        finally:
            os.close(dir_fd)
    except FileExistsError as e:
        taken = e.filename2 if e.filename2 is not None else e.filename
        raise WriteError(f"refusing to overwrite {os.path.join(parent, taken)}") from e
    except OSError as e:
        raise WriteError(f"cannot create {' and '.join(paths)}: {e.strerror}") from e


def _create_staged(dir_fd: int, entries: Sequence[tuple[str, bytes, int]]) -> None:
    stage = _stage_name(entries[0][0])
    os.mkdir(stage, 0o700, dir_fd=dir_fd)
    stage_fd = os.open(
        stage, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
    )
    try:
        fcntl.flock(stage_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while we live
        for name, data, mode in entries:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, mode, dir_fd=stage_fd)
            try:
                _write_all(fd, data, mode)
            finally:
                os.close(fd)
        os.fsync(dir_fd)  # the staging directory is on disk before anything it vouches for
        linked: list[str] = []
        try:
            for name, _, _ in entries:
                os.link(name, name, src_dir_fd=stage_fd, dst_dir_fd=dir_fd)
                linked.append(name)
        except BaseException:
            for name in linked:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        _remove_stage(dir_fd, stage, stage_fd)


def _remove_stage(dir_fd: int, stage: str, stage_fd: int) -> None:
    """Empty and remove a staging directory, then drop its lock."""
    try:
        for name in os.listdir(stage_fd):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=stage_fd)
        with contextlib.suppress(OSError):
            os.rmdir(stage, dir_fd=dir_fd)
    finally:
        os.close(stage_fd)


def _inode(dir_fd: int, name: str) -> tuple[int, int] | None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def remove_half_made(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Undo what an interrupted :func:`create_files_exclusive` of ``paths`` left.

    Its staging directory (``.FIRST.vtreg-<hex>.staging`` beside the files,
    owned by this user, no live writer holding it) shows which files in place
    it made: they are the very inodes it staged. If any of ``paths`` is
    missing, the set was never complete and those files are removed; if all
    are there, they are left as they are. The staging directory goes either
    way. A file that is not one of its inodes is never touched.
    """
    names = [os.path.basename(os.fspath(p)) for p in paths]
    pattern = re.compile(rf"\.{re.escape(names[0])}\.vtreg-{_HEX}\.staging")
    try:
        dir_fd = os.open(
            _one_parent([os.fspath(p) for p in paths]), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        )
    except OSError:
        return
    try:
        for stage in _matching(dir_fd, pattern):
            stage_fd = _claim_abandoned(dir_fd, stage, os.O_RDONLY | os.O_DIRECTORY)
            if stage_fd is None:
                continue
            try:
                placed = [_inode(dir_fd, n) for n in names]
                staged = [_inode(stage_fd, n) for n in names]
            except OSError:  # cannot tell what is ours: keep the proof, touch nothing
                os.close(stage_fd)
                continue
            try:
                if None in placed:
                    for name, here, there in zip(names, placed, staged, strict=True):
                        if here is not None and here == there:
                            with contextlib.suppress(OSError):
                                os.unlink(name, dir_fd=dir_fd)
            finally:
                _remove_stage(dir_fd, stage, stage_fd)
    finally:
        os.close(dir_fd)
