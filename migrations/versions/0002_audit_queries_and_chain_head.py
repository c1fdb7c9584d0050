"""Indexes for audit queries at millions of events, and the audit chain head.

The head row names the last event; writers lock it to append in order, and
``vtreg audit verify`` compares it with the log to notice events deleted from
the end. It is filled from the existing log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_GENESIS = "0" * 64


def upgrade() -> None:
    op.create_index("ix_audit_events_plugin_seq", "audit_events", ["plugin", "seq"])
    op.create_index("ix_audit_events_action_seq", "audit_events", ["action", "seq"])
    op.create_index("ix_audit_events_outcome_seq", "audit_events", ["outcome", "seq"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])

    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", _BIGINT, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    last = (
        op.get_bind()
        .execute(sa.text("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"))
        .first()
    )
    op.bulk_insert(
        head, [{"id": 1, "seq": last[0] if last else 0, "hash": last[1] if last else _GENESIS}]
    )


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_index("ix_audit_events_outcome_seq", table_name="audit_events")
    op.drop_index("ix_audit_events_action_seq", table_name="audit_events")
    op.drop_index("ix_audit_events_plugin_seq", table_name="audit_events")
