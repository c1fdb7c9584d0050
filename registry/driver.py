"""A SQLite registry through the driver alone: its connection settings, how a transaction
begins, and what a driver error says.

Stdlib only. The engine of :mod:`vtreg.registry.db` sets up each of its connections
with :func:`configure_sqlite` and begins each transaction with :func:`begin_sqlite`;
:class:`~vtreg.registry.service.Registry` opens a registry at head with
:func:`open_sqlite` instead, so that ``vtreg verify``, ``run`` and a load decide and
append to the audit log without importing SQLAlchemy (~200 ms); it makes its engine
only for what needs the ORM.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vtreg.verifier.errors import RegistryError

from .config import ENV_LOCK_TIMEOUT, lock_timeout
from .revisions import SCHEMA_HEAD
from .sqlite_file import check_sqlite_file

__all__ = [
    "CONNINFO_SECRET",
    "HIDDEN",
    "SqliteFile",
    "begin_sqlite",
    "configure_sqlite",
    "describe",
    "driver_errors",
    "hide_secrets",
    "open_sqlite",
    "sqlite_path",
]

_SQLITE_BUSY = 5

# libpq's secret parameters inside a connection string ("host=h password=x") or a URI
# ("//u:x@h"), as drivers may repeat them in messages.
CONNINFO_SECRET = re.compile(
    r"\b((?:ssl)?password|passfile)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']*)", re.IGNORECASE
)
_URI_SECRET = re.compile(r"(//[^/:@\s]*:)[^@/\s]*(@)")
HIDDEN = "***"


def hide_secrets(text: str) -> str:
    """``text`` with every password a connection string or URI in it might carry hidden."""
    text = CONNINFO_SECRET.sub(lambda m: m[1] + m[2] + HIDDEN, text)
    return _URI_SECRET.sub(lambda m: m[1] + HIDDEN + m[2], text)


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe(error: BaseException, scrub: Callable[[str], str] = hide_secrets) -> str:
    """One line for a database error (``scrub`` takes secrets out); a lock wait that ran
    out says so."""
    driver_error = getattr(error, "orig", error)
    # PostgreSQL's lock_not_available, SQLite's SQLITE_BUSY once the busy timeout ran out.
    if (
        getattr(driver_error, "sqlstate", None) == "55P03"
        or getattr(driver_error, "sqlite_errorcode", None) == _SQLITE_BUSY
    ):
        return (
            f"gave up waiting for a lock after {lock_timeout():g} s ({ENV_LOCK_TIMEOUT}): "
            "another session holds it"
        )
    return scrub(_first_line(error))


@contextlib.contextmanager
def driver_errors(url: str) -> Iterator[None]:
    """SQLite's errors as one-line :class:`RegistryError` s naming the registry at ``url``
    (a plain ``sqlite:///`` URL: no secrets in it), as the engine's are."""
    try:
        yield
    except sqlite3.Error as e:
        raise RegistryError(f"registry {url}: {describe(e)}") from e


def configure_sqlite(connection: Any, *, busy_timeout_ms: int, read_only: bool) -> None:
    """vtreg's settings on a new SQLite connection: transactions begun by
    :func:`begin_sqlite`, not the driver; a bounded busy wait; foreign keys; WAL."""
    connection.isolation_level = None
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # The journal mode is stored in the file; the first connection sets it.
        if not read_only and cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def begin_sqlite(
    execute: Callable[[str], object],
    info: dict[Any, Any],
    *,
    write: bool,
    decision_record: bool = False,
) -> None:
    """Begin a SQLite transaction: the one place the registry's SQLite rules are kept.

    A transaction that may write takes the write lock at once (``BEGIN
    IMMEDIATE``), so two writers never both read the chain head and then race
    to extend it; readers take none. A decision record (verify/load) may skip
    the fsync (``synchronous=NORMAL``); a change never does (``FULL``).
    ``info`` is the DBAPI connection's info dict, which remembers the setting.
    """
    if not write:  # a reader commits nothing, so how a commit waits is no matter of its
        execute("BEGIN")
        return
    synchronous = "NORMAL" if decision_record else "FULL"
    if info.get("vtreg_synchronous") != synchronous:
        execute(f"PRAGMA synchronous = {synchronous}")
        info["vtreg_synchronous"] = synchronous
    execute("BEGIN IMMEDIATE")


def sqlite_path(url: str) -> Path | None:
    """The file of a plain ``sqlite:///PATH`` URL, or None for any other URL (a ``file:``
    URI, query options, in memory, another engine)."""
    if not url.startswith("sqlite:///"):
        return None
    database = url[len("sqlite:///") :]
    if database in ("", ":memory:") or database.startswith("file:") or "?" in database:
        return None
    return Path(database)


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    # Another thread may close it (Registry.close): SQLAlchemy's engine allows that too.
    connection = sqlite3.connect(path, timeout=timeout, check_same_thread=False)
    try:
        configure_sqlite(connection, busy_timeout_ms=round(timeout * 1000), read_only=False)
    except BaseException:
        connection.close()
        raise
    return connection


class SqliteFile:
    """A SQLite registry found writable and at this vtreg's schema revision: its path and
    how to connect to it (the connection that found it is handed out first)."""

    def __init__(self, url: str, path: Path, timeout: float, first: sqlite3.Connection) -> None:
        self.url = url
        self.path = path
        self._timeout = timeout
        self._first: sqlite3.Connection | None = first
        self._lock = threading.Lock()

    def connect(self) -> sqlite3.Connection:
        """A connection with vtreg's settings (:func:`configure_sqlite`)."""
        with self._lock:
            first, self._first = self._first, None
        return first or _connect(self.path, self._timeout)

    def close(self) -> None:
        """Close the first connection if nobody took it."""
        with self._lock:
            first, self._first = self._first, None
        if first is not None:
            first.close()


def open_sqlite(url: str) -> SqliteFile | None:
    """The SQLite registry ``url`` names, in the common case: a plain ``sqlite:///`` URL of
    a file this process may write, at this vtreg's schema revision. None for anything
    else (no file there, read-only, an older or newer schema, not a registry, a URL with
    options): the registry's engine then handles it, and says what is wrong in the words
    it always has.

    Raises:
        RegistryError: a registry file someone else could swap, one that is not a
            database (the engine's refusals), or a lock held past the lock timeout.
    """
    path = sqlite_path(url)
    if path is None or not path.exists() or check_sqlite_file(path):
        return None
    timeout = lock_timeout()
    try:
        connection = _connect(path, timeout)
    except sqlite3.Error as e:
        _unless_busy(url, e)
        return None
    try:
        rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error as e:
        connection.close()
        _unless_busy(url, e)
        return None
    if rows != [(SCHEMA_HEAD,)]:
        connection.close()
        return None
    return SqliteFile(url, path, timeout, connection)


def _unless_busy(url: str, error: sqlite3.Error) -> None:
    """Raise a lock held past the timeout (the engine, which diagnoses every other error,
    would only wait as long again to say the same)."""
    if getattr(error, "sqlite_errorcode", None) == _SQLITE_BUSY:
        raise RegistryError(f"registry {url}: {describe(error)}") from error
