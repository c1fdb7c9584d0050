"""Alembic environment for the vtreg registry.

vtreg runs migrations programmatically (registry.db.ensure_schema) and hands
over its own connection, already inside a transaction that holds the schema
lock. Run by hand (``alembic -c alembic.ini ...``) it connects to
``$VTREG_DATABASE_URL`` or the default registry.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from vtreg.registry.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from vtreg.registry.db import connect, default_url

    engine = connect(context.config.get_main_option("sqlalchemy.url") or default_url())
    with engine.connect() as own_connection:
        _run(own_connection)


if context.is_offline_mode():
    raise SystemExit("vtreg migrations run online only")
run_migrations_online()
