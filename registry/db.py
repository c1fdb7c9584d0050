"""Where the registry lives and how to reach it: URLs, engines, schema revision.

* Default: SQLite at ``$VTREG_HOME/registry.db`` (``VTREG_HOME`` defaults to the
  user data directory), WAL journal, a long busy timeout, foreign keys on, and
  ``BEGIN IMMEDIATE`` for every transaction that may write, so concurrent
  writers queue instead of failing with "database is locked".
* ``VTREG_DATABASE_URL`` / ``--db URL`` selects another engine; PostgreSQL
  (psycopg 3) is the one supported for a registry shared by many hosts.
* The schema is owned by Alembic (``migrations/``): a fresh database is created
  at head; an older one is refused until ``vtreg db upgrade``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from vtreg.verifier.errors import RegistryError, UsageError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "ENV_DATABASE_URL",
    "ENV_HOME",
    "alembic_config",
    "begin_sqlite",
    "connect",
    "database_errors",
    "default_url",
    "ensure_schema",
    "head_revision",
    "normalize_url",
    "safe_url",
    "vtreg_home",
]

# The migrations this vtreg ships, oldest first. Knowing them here lets an
# up-to-date registry be opened without importing Alembic (~100 ms);
# tests/registry/test_schema.py checks this list against migrations/.
REVISIONS = ("0001", "0002")
SCHEMA_HEAD = REVISIONS[-1]

ENV_DATABASE_URL = "VTREG_DATABASE_URL"
ENV_HOME = "VTREG_HOME"
_SQLITE_BUSY_TIMEOUT_MS = 60_000
_PG_CONNECT_TIMEOUT_S = 10
# Any constant shared by every vtreg process: the key of PostgreSQL's advisory
# lock that serialises schema creation and upgrades.
_PG_SCHEMA_LOCK = 0x76747265675F6462  # "vtreg_db"


def vtreg_home() -> Path:
    """``$VTREG_HOME``, else the per-user data directory for vtreg."""
    configured = os.environ.get(ENV_HOME)
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "vtreg"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "vtreg"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vtreg"


def default_url() -> str:
    """``$VTREG_DATABASE_URL``, else SQLite in :func:`vtreg_home` (created 0700 if missing)."""
    configured = os.environ.get(ENV_DATABASE_URL)
    if configured:
        return configured
    home = vtreg_home()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise RegistryError(f"cannot create {home}: {e.strerror}") from e
    return f"sqlite:///{home / 'registry.db'}"


def normalize_url(url: str) -> str:
    """Pick drivers we ship: ``postgresql://`` means psycopg 3, not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def safe_url(url: str) -> str:
    """The URL for messages: never the password."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<invalid database URL>"


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def database_errors(url: str, driver_error: type[Exception] | None = None) -> Iterator[None]:
    """Turn SQLAlchemy errors (and ``driver_error``, the DBAPI's own ``Error``, raised by
    statements run on the raw cursor) into one-line :class:`RegistryError` s."""
    try:
        yield
    except (exc.ArgumentError, exc.NoSuchModuleError) as e:
        raise UsageError(f"invalid database URL {safe_url(url)}: {_first_line(e)}") from e
    except exc.SQLAlchemyError as e:
        raise RegistryError(f"registry {safe_url(url)}: {_first_line(e)}") from e
    except Exception as e:
        if driver_error is not None and isinstance(e, driver_error):
            raise RegistryError(f"registry {safe_url(url)}: {_first_line(e)}") from e
        raise


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: object, _record: object) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, not the driver.
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # The journal mode is stored in the file; the first connection sets it.
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        begin_sqlite(
            connection.exec_driver_sql,
            connection.connection.info,
            write=not options.get("vtreg_read_only", False),
            decision_record=options.get("vtreg_decision_record", False),
        )


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
    synchronous = "NORMAL" if decision_record else "FULL"
    if info.get("vtreg_synchronous") != synchronous:
        execute(f"PRAGMA synchronous = {synchronous}")
        info["vtreg_synchronous"] = synchronous
    execute("BEGIN IMMEDIATE" if write else "BEGIN")


def connect(url: str) -> Engine:
    """An engine for ``url`` with vtreg's settings (see the module docstring)."""
    url = normalize_url(url)
    with database_errors(url):
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(
                parsed, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
            _sqlite_setup(engine)
        elif parsed.get_backend_name() == "postgresql":
            engine = sa.create_engine(
                parsed,
                connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S},
                pool_pre_ping=True,
            )
        else:
            engine = sa.create_engine(parsed)
    return engine


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


def ensure_schema(engine: Engine, *, upgrade: bool = False) -> tuple[str | None, str]:
    """Create a fresh registry at head, or check (or ``upgrade``) an existing one.

    The common case, a registry already at head, is checked in a read-only
    transaction, so a read-only database can still be queried.

    Returns:
        The revision found and the revision the database is at now.

    Raises:
        RegistryError: an older schema (without ``upgrade``), a newer one, or
            a database that holds tables but is not a vtreg registry.
    """
    head = head_revision()
    url = engine.url.render_as_string(hide_password=False)
    with database_errors(url):
        with engine.connect() as connection:
            reader = connection.execution_options(vtreg_read_only=True)
            with reader.begin():
                found = _check_revision(reader, head, upgrade)
        if found == head:
            return found, head
        # Create or upgrade under the schema lock; another process may have done it meanwhile.
        with engine.begin() as connection:
            _lock_schema(connection)
            found = _check_revision(connection, head, upgrade)
            if found != head:
                from alembic import command

                command.upgrade(alembic_config(connection), "head")
    return found, head


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
