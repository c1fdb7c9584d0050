"""Keys, trusted plugins and their signers, and the hash-chained audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _create_keys()
    _create_plugins()
    _create_plugin_signers()
    _create_audit_events()
    _create_audit_event_keys()


def _revocation_columns() -> list[sa.Column[object]]:
    """When, by whom and why a key or a plugin was revoked (all null until it is)."""
    return [
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(255), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
    ]


def _create_keys() -> None:
    op.create_table(
        "keys",
        sa.Column("keyid", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(255), nullable=False),
        *_revocation_columns(),
        sa.PrimaryKeyConstraint("keyid", name=op.f("pk_keys")),
    )
    op.create_index(op.f("ix_keys_name"), "keys", ["name"])


def _create_plugins() -> None:
    op.create_table(
        "plugins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("content_digest", sa.String(71), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("library", sa.String(255), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("trusted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trusted_by", sa.String(255), nullable=False),
        *_revocation_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plugins")),
        sa.UniqueConstraint("content_digest", name=op.f("uq_plugins_content_digest")),
    )
    op.create_index("ix_plugins_name_version", "plugins", ["name", "version"])


def _create_plugin_signers() -> None:
    op.create_table(
        "plugin_signers",
        sa.Column("plugin_id", sa.Integer(), nullable=False),
        sa.Column("keyid", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["plugin_id"], ["plugins.id"], name=op.f("fk_plugin_signers_plugin_id_plugins")
        ),
        sa.PrimaryKeyConstraint("plugin_id", "keyid", name=op.f("pk_plugin_signers")),
    )
    op.create_index(op.f("ix_plugin_signers_keyid"), "plugin_signers", ["keyid"])


def _create_audit_events() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", _BIGINT, autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("plugin", sa.String(64), nullable=True),
        sa.Column("version", sa.String(128), nullable=True),
        sa.Column("digest", sa.String(71), nullable=True),
        sa.Column("keyids", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
    )


def _create_audit_event_keys() -> None:
    op.create_table(
        "audit_event_keys",
        sa.Column("keyid", sa.String(64), nullable=False),
        sa.Column("seq", _BIGINT, nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["audit_events.seq"], name=op.f("fk_audit_event_keys_seq_audit_events")
        ),
        sa.PrimaryKeyConstraint("keyid", "seq", name=op.f("pk_audit_event_keys")),
    )


def downgrade() -> None:
    op.drop_table("audit_event_keys")
    op.drop_table("audit_events")
    op.drop_index(op.f("ix_plugin_signers_keyid"), table_name="plugin_signers")
    op.drop_table("plugin_signers")
    op.drop_index("ix_plugins_name_version", table_name="plugins")
    op.drop_table("plugins")
    op.drop_index(op.f("ix_keys_name"), table_name="keys")
    op.drop_table("keys")
