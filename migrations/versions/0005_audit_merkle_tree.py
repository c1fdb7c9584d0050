"""The audit log as a Merkle tree: its tiles, its name and key, its signed checkpoints.

``audit_tiles`` holds the RFC 6962 tree over the canonical bytes of every
event in C2SP tlog-tiles layout (256 hashes a tile), written from now on in
the same transaction as each event; here it is built from the existing log.
``audit_log`` names the log (origin, vkey) once ``vtreg audit init`` has run;
``audit_checkpoints`` keeps the checkpoints its key signed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

from vtreg.verifier.audit_event import HASHED_FIELDS, canonical
from vtreg.verifier.merkle import leaf_hash, tiles_of

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_BATCH = 10_000


def upgrade() -> None:
    tiles = op.create_table(
        "audit_tiles",
        sa.Column("level", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("idx", _BIGINT, nullable=False, autoincrement=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_tiles")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("vkey", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", _BIGINT, nullable=False, autoincrement=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoints")),
    )
    built = tiles_of(_leaves(op.get_bind()))
    rows = [{"level": level, "idx": n, "hashes": data} for (level, n), data in built.items()]
    for low in range(0, len(rows), _BATCH):
        op.bulk_insert(tiles, rows[low : low + _BATCH])


def _leaves(bind: sa.Connection) -> Iterator[bytes]:
    """The leaf hash of every event, in seq order, over its bytes as the chain hashes them."""
    # `at` as stored (SQLite's text, PostgreSQL's datetime): canonical() takes either.
    columns = ", ".join(HASHED_FIELDS)
    query = sa.text(f"SELECT {columns} FROM audit_events ORDER BY seq")  # noqa: S608 - fixed names
    result = bind.execute(query.execution_options(yield_per=_BATCH))
    with result:
        for row in result:
            yield leaf_hash(canonical(*row))


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_log")
    op.drop_table("audit_tiles")
