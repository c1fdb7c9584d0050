"""Where the registry lives and how to reach it: URLs, engines, schema revision.

* Default: SQLite at ``$VTREG_HOME/registry.db`` (``VTREG_HOME`` defaults to the
  user data directory), WAL journal, a long busy timeout, foreign keys on, and
  ``BEGIN IMMEDIATE`` for every transaction that may write, so concurrent
  writers queue instead of failing with "database is locked".
* ``VTREG_DATABASE_URL`` / ``--db URL`` selects another engine; PostgreSQL
  (psycopg 3) is the one supported for a registry shared by many hosts.
* The schema is owned by Alembic (``migrations/``): a fresh database is created
  at head; an older one is refused until ``vtreg db upgrade``.
* A SQLite registry is the trust store: its directory, file and ``-wal``/``-shm``
  must belong to this user (or root) and be writable by nobody else; a new one is
  built aside (0600) and linked into place complete, so a file that exists but is
  not a registry (empty, truncated, garbage) is refused, never re-created. Where
  the file or its directory is not writable, it is opened read-only.
* Lock waits are bounded on both engines: ``$VTREG_LOCK_TIMEOUT`` seconds (60).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from vtreg.verifier.errors import RegistryError, UsageError
from vtreg.verifier.text import printable

from .config import (
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_LOCK_TIMEOUT,
    SUPPORTED_BACKENDS,
    default_url,
    lock_timeout,
    normalize_url,
    vtreg_home,
)
from .driver import CONNINFO_SECRET, HIDDEN, begin_sqlite, configure_sqlite, describe, hide_secrets
from .revisions import REVISIONS, SCHEMA_HEAD
from .sqlite_file import check_sqlite_file
from .sqlite_file import writable as _writable

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "ENV_DATABASE_URL",
    "ENV_HOME",
    "ENV_LOCK_TIMEOUT",
    "REVISIONS",
    "SCHEMA_HEAD",
    "alembic_config",
    "begin_sqlite",
    "connect",
    "database_errors",
    "default_url",
    "ensure_schema",
    "head_revision",
    "lock_timeout",
    "normalize_url",
    "safe_url",
    "vtreg_home",
]


_PG_CONNECT_TIMEOUT_S = 10
# Any constant shared by every vtreg process: the key of PostgreSQL's advisory
# lock that serialises schema creation and upgrades.
_PG_SCHEMA_LOCK = 0x76747265675F6462  # "vtreg_db"


# libpq parameters that are secrets (or say where one is kept), in a URL's query string.
_SECRET_PARAMS = frozenset({"password", "sslpassword", "passfile"})


def _secrets_in(url: str) -> list[str]:
    """Every secret value ``url`` carries, longest first (to scrub them from driver messages)."""
    try:
        parsed = sa.make_url(url)
    except (exc.ArgumentError, ValueError):
        return []
    found = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        for item in (value,) if isinstance(value, str) else value:
            if key.lower() in _SECRET_PARAMS:
                found.append(item)
            found += [m[3].strip("'") for m in CONNINFO_SECRET.finditer(item)]
    for text in (parsed.database or "", parsed.host or ""):
        found += [m[3].strip("'") for m in CONNINFO_SECRET.finditer(text)]
    return sorted({str(f) for f in found if f}, key=len, reverse=True)


def safe_url(url: str) -> str:
    """The URL for messages: never a password, in the URL or its query string.

    libpq also takes ``password``/``sslpassword`` (and ``passfile``) as query
    parameters, and a whole connection string as ``dbname``: those are hidden too.
    """
    try:
        parsed = sa.make_url(url)
        query = {
            key: HIDDEN
            if key.lower() in _SECRET_PARAMS
            else (
                hide_secrets(value) if isinstance(value, str) else tuple(map(hide_secrets, value))
            )
            for key, value in parsed.query.items()
        }
        database = hide_secrets(parsed.database) if parsed.database else parsed.database
        rendered = parsed.set(query=query, database=database).render_as_string(hide_password=True)
    except (exc.ArgumentError, ValueError):
        return "<invalid database URL>"
    return rendered.replace("%2A%2A%2A", HIDDEN)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) without any secret ``url`` carries."""
    for secret in _secrets_in(url):
        text = text.replace(secret, HIDDEN)
    return hide_secrets(text)


def _describe(error: BaseException, url: str) -> str:
    """One line for a database error; a lock wait that ran out says so."""
    return describe(error, lambda text: scrub(text, url))


@contextlib.contextmanager
def database_errors(url: str, driver_error: type[Exception] | None = None) -> Iterator[None]:
    """Turn SQLAlchemy errors (and ``driver_error``, the DBAPI's own ``Error``, raised by
    statements run on the raw cursor) into one-line :class:`RegistryError` s."""
    try:
        yield
    except (exc.ArgumentError, exc.NoSuchModuleError) as e:
        raise UsageError(f"invalid database URL {safe_url(url)}: {_describe(e, url)}") from e
    except exc.SQLAlchemyError as e:
        raise RegistryError(f"registry {safe_url(url)}: {_describe(e, url)}") from e
    except Exception as e:
        if driver_error is not None and isinstance(e, driver_error):
            raise RegistryError(f"registry {safe_url(url)}: {_describe(e, url)}") from e
        raise


def _sqlite_setup(engine: Engine, *, busy_timeout_ms: int, read_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: object, _record: object) -> None:
        configure_sqlite(dbapi_connection, busy_timeout_ms=busy_timeout_ms, read_only=read_only)

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        begin_sqlite(
            connection.exec_driver_sql,
            connection.connection.info,
            write=not options.get("vtreg_read_only", False),
            decision_record=options.get("vtreg_decision_record", False),
        )


def _sqlite_file(url: sa.URL) -> Path | None:
    """The file a SQLite URL names (plain path or ``file:`` URI), or None (in memory)."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        parts = urlsplit(database)
        if parts.path in ("", ":memory:") or "mode=memory" in parts.query:
            return None
        return Path(unquote(parts.path))
    return Path(database)


def _read_only_url(path: Path) -> sa.URL:
    """A URL opening ``path`` read-only; ``immutable`` where SQLite could not make a -shm.

    WAL readers need the -shm file. If the directory is not writable and there
    is none, no connection has the database open (a writer keeps the -wal and
    -shm while it is connected) and none can start, so the file is read as is.
    """
    shm = path.with_name(path.name + "-shm")
    query = {"mode": "ro", "uri": "true"}
    if not _writable(path.parent) and not shm.exists():
        query["immutable"] = "1"
    return sa.URL.create("sqlite", database="file:" + quote(str(path)), query=query)


def connect(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url`` with vtreg's settings (see the module docstring).

    Raises:
        UsageError: not a database URL, an engine vtreg does not support, or
            its driver is not installed.
        RegistryError: a SQLite registry that is unsafe or is not a database,
            or none at all where ``create`` is False.
    """
    url = normalize_url(url)
    timeout = lock_timeout()
    with database_errors(url):
        try:
            parsed = sa.make_url(url)
            backend = parsed.get_backend_name()
        except ValueError as e:  # a port that is not a number
            raise UsageError(f"invalid database URL {safe_url(url)}: {scrub(str(e), url)}") from e
        if backend not in SUPPORTED_BACKENDS:
            raise UsageError(
                f"unsupported database {printable(backend)!r} in {safe_url(url)}: vtreg keeps "
                "its registry in SQLite or PostgreSQL"
            )
        path = _sqlite_file(parsed)
        if not create and path is not None and not path.exists():
            raise RegistryError(
                f"no registry at {path} (a command that trusts something creates it; "
                "check --db or $VTREG_DATABASE_URL)"
            )
        try:
            if backend == "sqlite":
                return _sqlite_engine(parsed, timeout)
            return _postgresql_engine(parsed, timeout)
        except ImportError as e:
            hint = " (pip install 'vtreg[postgres]')" if backend == "postgresql" else ""
            raise UsageError(
                f"invalid database URL {safe_url(url)}: its driver is not installed "
                f"(no module {e.name or e}){hint}"
            ) from e


def _sqlite_engine(parsed: sa.URL, timeout: float, *, check: bool = True) -> Engine:
    path = _sqlite_file(parsed) if check else None
    read_only = path is not None and check_sqlite_file(path)
    if path is not None and read_only and not (parsed.database or "").startswith("file:"):
        parsed = _read_only_url(path)
    engine = sa.create_engine(parsed, connect_args={"timeout": timeout})
    _sqlite_setup(engine, busy_timeout_ms=round(timeout * 1000), read_only=read_only)
    return engine


def _postgresql_engine(parsed: sa.URL, timeout: float) -> Engine:
    from .models import postgresql_options

    postgresql_options()
    # A session holding the chain head (or the schema lock) must not make every
    # other writer wait forever: lock_timeout ends the wait with SQLSTATE 55P03.
    # Options in the URL itself come after, so they win.
    given = parsed.query.get("options", ())
    options = [f"-c lock_timeout={round(timeout * 1000)}"]
    options += [given] if isinstance(given, str) else list(given)
    return sa.create_engine(
        parsed,
        connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S, "options": " ".join(options)},
        pool_pre_ping=True,
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration for the migrations shipped in this package's wheel."""
    from alembic.config import Config

    from vtreg import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this vtreg ships."""
    return SCHEMA_HEAD


def _current_revision(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _lock_schema(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
    # SQLite: the BEGIN IMMEDIATE of this transaction already excludes other writers.


def ensure_schema(
    engine: Engine, *, upgrade: bool = False, create: bool = True
) -> tuple[str | None, str]:
    """Create a fresh registry at head (unless ``create`` is False), or check (or
    ``upgrade``) an existing one.

    The common case, a registry already at head, is checked in a read-only
    transaction, so a read-only database can still be queried.

    Returns:
        The revision found and the revision the database is at now.

    Raises:
        RegistryError: an older schema (without ``upgrade``), a newer one,
            a database that holds tables but is not a vtreg registry, or an empty
            one where ``create`` is False.
    """
    head = head_revision()
    url = engine.url.render_as_string(hide_password=False)
    path = _sqlite_file(engine.url)
    if path is not None and not path.exists():
        if not create:
            raise RegistryError(f"no registry at {path}")
        if engine.url.query.get("mode") != "ro":
            _create_sqlite(path)
    with database_errors(url):
        with engine.connect() as connection:
            reader = connection.execution_options(vtreg_read_only=True)
            with reader.begin():
                found = _check_revision(reader, head, upgrade)
        if found == head:
            return found, head
        if found is None and not create:
            raise RegistryError(
                f"no registry at {safe_url(url)}: the database holds no vtreg tables "
                "(a command that trusts something, or `vtreg db upgrade`, creates them)"
            )
        # Create or upgrade under the schema lock; another process may have done it meanwhile.
        with engine.begin() as connection:
            _lock_schema(connection)
            found = _check_revision(connection, head, upgrade)
            if found != head:
                from alembic import command

                command.upgrade(alembic_config(connection), "head")
    return found, head


def _create_sqlite(path: Path) -> None:
    """Create a SQLite registry at ``path`` unless one appears there meanwhile.

    It is built at head in a private file (0600) beside ``path`` and hard-linked
    into place only when complete, so a file at ``path`` is always a whole
    registry or not vtreg's. Of processes creating it at once, one link wins.
    """
    from alembic import command

    scratch = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
    try:
        os.close(os.open(scratch, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:
        raise RegistryError(f"cannot create the registry {path}: {e.strerror}") from e
    try:
        engine = _sqlite_engine(sa.make_url(f"sqlite:///{scratch}"), lock_timeout(), check=False)
        try:
            with database_errors(str(engine.url)), engine.begin() as connection:
                command.upgrade(alembic_config(connection), "head")
        finally:
            engine.dispose()  # the last connection closing checkpoints and removes the -wal
        if scratch.with_name(scratch.name + "-wal").exists():
            raise RegistryError(f"cannot create the registry {path}: its journal was not merged")
        with contextlib.suppress(FileExistsError):
            os.link(scratch, path)
    except OSError as e:
        raise RegistryError(f"cannot create the registry {path}: {e.strerror}") from e
    finally:
        for leftover in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                scratch.with_name(scratch.name + leftover).unlink()


def _check_revision(connection: Connection, head: str, upgrade: bool) -> str | None:
    found = _current_revision(connection)
    if found == head:
        return found
    if found is None:
        tables = set(sa.inspect(connection).get_table_names()) - {"alembic_version"}
        if tables:
            raise RegistryError(
                f"{safe_url(str(connection.engine.url))} holds tables but is not a vtreg "
                f"registry ({', '.join(sorted(tables)[:3])}…)"
            )
        path = _sqlite_file(connection.engine.url)
        if path is not None:  # a new SQLite registry is never empty: see _create_sqlite
            raise RegistryError(
                f"the registry {path} is not a vtreg registry: an empty SQLite database; "
                "refusing to create one in a file that already exists (remove it to start afresh)"
            )
    elif found not in REVISIONS:
        raise RegistryError(
            f"registry schema revision {found} is newer than this vtreg knows ({head}); "
            "upgrade vtreg"
        )
    elif not upgrade:
        raise RegistryError(
            f"registry schema is at revision {found}, this vtreg needs {head}: "
            "run `vtreg db upgrade`"
        )
    return found
