"""The read paths' way into the registry: the driver's own connection, one snapshot.

``vtreg list``, ``show``, ``key list``, ``db info`` and ``audit`` only read. Through
:class:`~vtreg.registry.service.Registry` each would first import SQLAlchemy's
ORM and the pydantic models (~400 ms, 40 times the work of a small registry);
here they open the SQLite file with :mod:`sqlite3`, or PostgreSQL with
psycopg, and run a few SELECTs whose text is built from fixed parts only
(tests/registry/test_listing.py checks their answers against the registry's
own, and tests/cli/test_read_paths.py that no such command imports SQLAlchemy
or pydantic).

:func:`open_reader` takes the common case: a registry at this vtreg's schema
revision, named by a plain URL. Anything else (no registry there, an older or
newer schema, a read-only SQLite file, a ``file:`` URI, URL query options, a
server that does not answer) it declines, and the command opens the registry
through :class:`~vtreg.registry.service.Registry` instead, which handles each
of them and says what is wrong in the words it always has.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vtreg.verifier.errors import RegistryError

from .config import checked_actor, default_actor, default_url, lock_timeout, normalize_url
from .revisions import SCHEMA_HEAD
from .sqlite_file import check_sqlite_file

__all__ = ["Reader", "open_reader", "read_registry", "time_in"]

_BATCH = 2000  # rows fetched at once by a stream
_PG_CONNECT_TIMEOUT_S = 10  # as registry.db's engines
_PG_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# The PostgreSQL URLs taken here: user, password, host, port, database, nothing else.
_PG_URL = re.compile(
    r"postgresql\+psycopg://(?P<user>[A-Za-z0-9._~-]+)(?::(?P<password>[^@/?#\s]*))?"
    r"@(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?/(?P<database>[A-Za-z0-9._-]+)"
)


def time_in(value: datetime | str | None) -> datetime | None:
    """A time as read back (SQLite's naive UTC text, or a datetime), as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return value.astimezone(UTC)


class Reader:
    """A read-only transaction on a DB-API connection, and the SQL of its dialect."""

    def __init__(
        self,
        connection: Any,
        url: str,
        *,
        sqlite: bool,
        driver_error: type[Exception],
        actor: str = "",
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._connection = connection
        self.driver_error = driver_error  # the DB-API module's Error
        self.url = url  # as messages show it: never a password
        self.sqlite = sqlite
        self.engine = "sqlite" if sqlite else "postgresql"
        self.mark = "?" if sqlite else "%s"
        self.actor = actor
        self._on_close = on_close
        self._streams = 0
        self._open: list[Generator[Any]] = []

    def agg(self, column: str) -> str:
        """SQL joining ``column``'s values of a group with spaces (any order)."""
        return f"group_concat({column}, ' ')" if self.sqlite else f"string_agg({column}, ' ')"

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of ``statement``."""
        cursor = self._connection.cursor()
        try:
            cursor.execute(statement, tuple(params))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def stream(self, statement: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of ``statement``, fetched a batch at a time (a server-side cursor on
        PostgreSQL), so that memory stays bounded however many there are. A stream left
        unfinished (a page) is closed with the reader."""
        rows = self._stream(statement, params)
        self._open.append(rows)
        return rows

    def _stream(self, statement: str, params: Sequence[Any]) -> Generator[Any]:
        if self.sqlite:
            cursor = self._connection.cursor()
        else:
            self._streams += 1
            cursor = self._connection.cursor(name=f"vtreg_stream_{self._streams}")
            cursor.itersize = _BATCH
        try:
            cursor.execute(statement, tuple(params))
            while batch := cursor.fetchmany(_BATCH):
                yield from batch
        finally:
            cursor.close()

    def close(self) -> None:
        """End the transaction (it wrote nothing) and close the connection."""
        try:
            for rows in self._open:
                rows.close()  # its cursor, before the connection
            self._connection.rollback()
        finally:
            self._connection.close()
            if self._on_close is not None:
                self._on_close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def read_registry(url: str | None) -> Iterator[Reader]:
    """A snapshot of the registry at ``url`` (default: the environment's): through the
    driver alone where :func:`open_reader` takes it, else through the registry's engine.

    A driver error while reading becomes one line naming the registry.

    Raises:
        RegistryError: no registry there, an older schema (run ``vtreg db upgrade``),
            unreachable, unsafe, or a database error while reading.
        UsageError: not a database URL, or ``$VTREG_ACTOR`` cannot be recorded.
    """
    reader = open_reader(url) or _through_engine(url)
    with reader:
        try:
            yield reader
        except reader.driver_error as e:
            line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RegistryError(f"registry {reader.url}: {line}") from e


def _through_engine(url: str | None) -> Reader:
    """A reader on a connection of :class:`~vtreg.registry.service.Registry`'s engine, for
    the registries :func:`open_reader` declines (it says what is wrong with them)."""
    from .db import safe_url
    from .service import Registry

    registry = Registry.open(url, create=False)
    try:
        connection = registry.engine.raw_connection()  # back to the pool when closed
        sqlite = registry.engine.dialect.name == "sqlite"
        cursor = connection.cursor()
        cursor.execute("BEGIN" if sqlite else _PG_SNAPSHOT)
        cursor.close()
    except BaseException:
        registry.close()
        raise
    return Reader(
        connection,
        safe_url(registry.url),
        sqlite=sqlite,
        driver_error=getattr(registry.engine.dialect.dbapi, "Error", Exception),
        actor=registry.actor,
        on_close=registry.close,
    )


def open_reader(url: str | None) -> Reader | None:
    """A snapshot of the registry at ``url`` (default: the environment's), or None where
    the read path declines it (see the module docstring).

    Raises:
        RegistryError: a SQLite registry file someone else could swap, or one that is
            not a database (the same refusal the registry's engine makes).
        UsageError: ``$VTREG_LOCK_TIMEOUT`` is not a number of seconds.
    """
    actor = checked_actor(default_actor())
    url = normalize_url(url or default_url(create=False))
    if url.startswith("sqlite:///"):
        reader = _open_sqlite(url[len("sqlite:///") :])
    else:
        match = _PG_URL.fullmatch(url)
        reader = _open_postgresql(url, match) if match else None
    if reader is not None:
        reader.actor = actor
    return reader


def _open_sqlite(database: str) -> Reader | None:
    if database in ("", ":memory:") or database.startswith("file:") or "?" in database:
        return None
    path = Path(database)
    if not path.exists() or check_sqlite_file(path):  # missing, or read-only: declined
        return None
    import sqlite3

    connection = sqlite3.connect(path, timeout=lock_timeout(), isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("BEGIN")  # SQLite's transactions see one snapshot throughout
        reader = Reader(connection, f"sqlite:///{path}", sqlite=True, driver_error=sqlite3.Error)
        if _at_head(reader):
            return reader
    except sqlite3.Error:
        pass  # declined: the registry's engine says what is wrong
    connection.close()
    return None


def _open_postgresql(url: str, match: re.Match[str]) -> Reader | None:
    try:
        import psycopg
    except ImportError:
        return None  # the registry's engine says which package to install
    options = f"-c lock_timeout={round(lock_timeout() * 1000)}"
    conninfo = "postgresql://" + url[len("postgresql+psycopg://") :]
    try:
        connection = psycopg.connect(
            conninfo, connect_timeout=_PG_CONNECT_TIMEOUT_S, options=options
        )
    except psycopg.Error:
        return None
    shown = url if match["password"] is None else url.replace(f":{match['password']}@", ":***@", 1)
    try:
        connection.execute(_PG_SNAPSHOT)
        reader = Reader(connection, shown, sqlite=False, driver_error=psycopg.Error)
        if _at_head(reader):
            return reader
    except psycopg.Error:
        pass
    connection.close()
    return None


def _at_head(reader: Reader) -> bool:
    """Whether the registry is at this vtreg's schema revision (alembic_version's one row)."""
    return reader.rows("SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
