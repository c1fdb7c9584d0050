"""A SQLite registry file is the trust store: the checks made before SQLite opens one.

Its directory, the file and its ``-wal``/``-shm`` must belong to this user (or
root) and be writable by nobody else (:func:`check_private`, which the fleet host
state, the other trust store, applies too), and an existing file must look like a
SQLite database (SQLite would take an empty or truncated one for a new,
empty database). Stdlib only: the read paths make the same checks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vtreg.verifier.errors import RegistryError, VtregError

__all__ = ["check_private", "check_sqlite_file", "writable"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


def writable(path: Path) -> bool:
    """Whether this process may write ``path`` (a file, or a directory to create files in).

    False on a read-only mount or for an immutable file, for root too.
    """
    return os.access(path, os.W_OK)


def check_private(
    path: Path, what: str, error: type[VtregError] = RegistryError
) -> os.stat_result | None:
    """Refuse a trust store's ``path`` (``what``: "registry file", "fleet state directory")
    that someone else could swap: owned by another user (root excepted), or group- or
    world-writable. Returns its status (None if it does not exist).

    Raises:
        VtregError: ``error``, saying which of the two it is.
    """
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise error(f"cannot inspect the {what} {path}: {e.strerror}") from e
    if os.name != "posix":
        return status
    uid = os.geteuid()
    if status.st_uid not in (uid, 0):
        raise error(
            f"the {what} {path} belongs to uid {status.st_uid}, not to this user "
            f"({uid}) or root: anyone who owns it can swap the trust store"
        )
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise error(
            f"the {what} {path} is group- or world-writable "
            f"({stat.S_IMODE(status.st_mode):04o}): anyone who can write it can swap the "
            "trust store"
        )
    return status


def check_sqlite_file(path: Path) -> bool:
    """Check a SQLite registry before SQLite touches it; say whether to open it read-only.

    An existing file must at least look like a SQLite database: SQLite would
    take an empty or truncated one for a new, empty database.
    """
    check_private(path.parent, "registry directory")
    status = check_private(path, "registry file")
    for suffix in ("-wal", "-shm"):
        check_private(path.with_name(path.name + suffix), "registry file")
    if status is None:
        if not path.parent.is_dir():
            raise RegistryError(f"no directory {path.parent} for the registry {path}")
        return False
    if not stat.S_ISREG(status.st_mode):
        raise RegistryError(f"the registry {path} is not a regular file")
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise RegistryError(f"cannot read the registry {path}: {e.strerror}") from e
    if header != _SQLITE_MAGIC:
        raise RegistryError(
            f"the registry {path} is not a vtreg registry: file is not a database "
            f"({status.st_size} bytes, no SQLite header); refusing to open or re-create it"
        )
    return not (writable(path) and writable(path.parent))
