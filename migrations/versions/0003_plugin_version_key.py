"""A sortable version key on trusted plugins, and the index that finds rollback floors.

``plugins.version_key`` holds :meth:`vtreg.verifier.manifest.SemVer.sort_key`
of the row's version, so the newest unrevoked version of a name and platform
(the rollback floor) is the last entry of a partial index's range instead of
the maximum of every row of that name parsed in Python. Existing rows are
filled from their version with the same function.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

from vtreg.verifier.manifest import SemVer

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_UNREVOKED = sa.text("revoked_at IS NULL")
_CHUNK = 10_000


def upgrade() -> None:
    with op.batch_alter_table("plugins") as batch:
        batch.add_column(sa.Column("version_key", sa.LargeBinary(), nullable=True))
    _fill_version_keys(op.get_bind())
    with _signers_set_aside(), op.batch_alter_table("plugins") as batch:
        batch.alter_column("version_key", existing_type=sa.LargeBinary(), nullable=False)
        batch.create_index(
            "ix_plugins_floor",
            ["name", "platform", "version_key"],
            sqlite_where=_UNREVOKED,
            postgresql_where=_UNREVOKED,
        )


def _fill_version_keys(bind: sa.Connection) -> None:
    """Set every row's key from its version (validated when it was trusted)."""
    plugins = sa.table(
        "plugins", sa.column("id", sa.Integer()), sa.column("version"), sa.column("version_key")
    )
    update = (
        sa.update(plugins)
        .where(plugins.c.id == sa.bindparam("row_id"))
        .values(version_key=sa.bindparam("key"))
    )
    rows = bind.execute(sa.select(plugins.c.id, plugins.c.version).order_by(plugins.c.id)).all()
    for low in range(0, len(rows), _CHUNK):
        batch = [
            {"row_id": row_id, "key": SemVer.parse(version).sort_key()}
            for row_id, version in rows[low : low + _CHUNK]
        ]
        bind.execute(update, batch)


@contextlib.contextmanager
def _signers_set_aside() -> Iterator[None]:
    """On SQLite, move plugin_signers' rows out while plugins is rebuilt.

    SQLite makes NOT NULL stick by copying the table and dropping the old one,
    and with foreign keys on (vtreg's connections turn them on; the pragma
    cannot change inside the migration's transaction) dropping a table that
    rows still refer to fails, deferred or not. PostgreSQL alters in place.
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    bind.exec_driver_sql(
        "CREATE TEMPORARY TABLE vtreg_0003_signers AS SELECT * FROM plugin_signers"
    )
    bind.exec_driver_sql("DELETE FROM plugin_signers")
    yield
    bind.exec_driver_sql(
        "INSERT INTO plugin_signers (plugin_id, keyid)"
        " SELECT plugin_id, keyid FROM vtreg_0003_signers"
    )
    bind.exec_driver_sql("DROP TABLE vtreg_0003_signers")


def downgrade() -> None:
    with _signers_set_aside(), op.batch_alter_table("plugins") as batch:
        batch.drop_index("ix_plugins_floor")
        batch.drop_column("version_key")
