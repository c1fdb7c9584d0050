"""Database fixtures shared by every test that needs a registry: SQLite and a real PostgreSQL.

PostgreSQL comes from ``VTREG_TEST_DATABASE_URL`` (a server URL; each test
creates and drops its own database). Where it is unset those tests skip,
saying so; with ``VTREG_REQUIRE_POSTGRES=1`` (CI) a missing or unreachable
PostgreSQL is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from vtreg.registry.service import Registry

PG_ENV = "VTREG_TEST_DATABASE_URL"
REQUIRE_ENV = "VTREG_REQUIRE_POSTGRES"


def _admin_engine(url: str) -> sa.Engine:
    from vtreg.registry.db import normalize_url

    return sa.create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {PG_ENV} is not set")
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL variant not run")
    engine = _admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as e:
        pytest.fail(f"{PG_ENV} points at an unreachable PostgreSQL: {e.orig}")
    finally:
        engine.dispose()
    return url


def _fresh_postgres_database(server: str) -> Iterator[str]:
    name = f"vtreg_test_{secrets.token_hex(6)}"
    admin = _admin_engine(server)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    yield from _fresh_postgres_database(server)


@pytest.fixture
def registry(database_url: str) -> Iterator[Registry]:
    with Registry.open(database_url) as opened:
        yield opened


@contextlib.contextmanager
def chain_head_held(url: str) -> Iterator[None]:
    """Another session holding the chain head's lock, as a stuck or hostile client would."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with contextlib.closing(sqlite3.connect(parsed.database or "", isolation_level=None)) as c:
            c.execute("BEGIN IMMEDIATE")
            c.execute("SELECT seq FROM audit_chain_head").fetchall()
            yield
        return
    with psycopg.connect(parsed.set(drivername="postgresql").render_as_string(False)) as holder:
        holder.execute("SELECT seq FROM audit_chain_head FOR UPDATE").fetchall()
        yield
        holder.rollback()
