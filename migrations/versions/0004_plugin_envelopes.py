"""The history of the envelopes accepted for each trusted content.

``plugin_envelopes`` holds one row per envelope ``vtreg trust`` accepted for a
content digest, with the keys whose signatures counted: a publisher who
rotates keys and re-signs the same content replaces the current envelope
(``plugins.envelope`` and ``plugin_signers``), and this table keeps what
signed it before. Existing rows get their current envelope as their history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plugin_envelopes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plugin_id", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("signers", sa.Text(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["plugin_id"], ["plugins.id"], name=op.f("fk_plugin_envelopes_plugin_id_plugins")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugin_envelopes")),
    )
    op.create_index(
        op.f("ix_plugin_envelopes_plugin_id"), "plugin_envelopes", ["plugin_id"], unique=False
    )
    bind = op.get_bind()
    signers = {plugin_id: sorted(keyids) for plugin_id, keyids in _signers_by_plugin(bind).items()}
    rows = bind.execute(
        sa.text("SELECT id, envelope, trusted_at, trusted_by FROM plugins ORDER BY id")
    ).all()
    if rows:
        history = sa.table(
            "plugin_envelopes",
            sa.column("plugin_id"),
            sa.column("envelope"),
            sa.column("signers"),
            sa.column("accepted_at"),
            sa.column("accepted_by"),
        )
        bind.execute(
            history.insert(),
            [
                {
                    "plugin_id": plugin_id,
                    "envelope": envelope,
                    "signers": " ".join(signers.get(plugin_id, [])),
                    "accepted_at": trusted_at,
                    "accepted_by": trusted_by,
                }
                for plugin_id, envelope, trusted_at, trusted_by in rows
            ],
        )


def _signers_by_plugin(bind: sa.Connection) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for plugin_id, keyid in bind.execute(sa.text("SELECT plugin_id, keyid FROM plugin_signers")):
        found.setdefault(plugin_id, []).append(keyid)
    return found


def downgrade() -> None:
    op.drop_index(op.f("ix_plugin_envelopes_plugin_id"), table_name="plugin_envelopes")
    op.drop_table("plugin_envelopes")
