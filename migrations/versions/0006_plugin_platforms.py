"""Which platforms each trusted content carries a library for: ``plugin_platforms``.

A plugin directory may carry one library per platform (``libhello.so`` and
``libhello.dylib``), so a content covers a set of platforms instead of one.
``plugin_platforms`` holds (plugin id, platform) pairs, filled here from the
``plugins.platform`` column, which goes. The rollback floor of (name,
platform) is then the newest unrevoked version of the name whose content
covers the platform: ``ix_plugins_floor`` becomes (name, version_key) over
unrevoked rows, walked newest first and joined on the pair's primary key.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_UNREVOKED = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "plugin_platforms",
        sa.Column("plugin_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["plugin_id"], ["plugins.id"], name="fk_plugin_platforms_plugin_id_plugins"
        ),
        sa.PrimaryKeyConstraint("plugin_id", "platform", name="pk_plugin_platforms"),
    )
    op.execute(
        "INSERT INTO plugin_platforms (plugin_id, platform) SELECT id, platform FROM plugins"
    )
    op.drop_index("ix_plugins_floor", table_name="plugins")
    # Dropped in place on both engines (SQLite >= 3.35 has DROP COLUMN): a batch
    # rebuild of plugins would have to set aside every row that refers to it.
    op.execute("ALTER TABLE plugins DROP COLUMN platform")
    op.create_index(
        "ix_plugins_floor",
        "plugins",
        ["name", "version_key"],
        sqlite_where=_UNREVOKED,
        postgresql_where=_UNREVOKED,
    )


def downgrade() -> None:
    # A content of several platforms keeps one of them (the first in sorted order).
    op.drop_index("ix_plugins_floor", table_name="plugins")
    op.add_column(
        "plugins", sa.Column("platform", sa.String(length=64), nullable=False, server_default="")
    )
    op.execute(
        "UPDATE plugins SET platform = (SELECT min(platform) FROM plugin_platforms"
        " WHERE plugin_platforms.plugin_id = plugins.id)"
    )
    op.drop_table("plugin_platforms")
    op.create_index(
        "ix_plugins_floor",
        "plugins",
        ["name", "platform", "version_key"],
        sqlite_where=_UNREVOKED,
        postgresql_where=_UNREVOKED,
    )
