"""A cheaper audit append: each event carries its leaf hash, the key index without a rowid.

``audit_events.leaf`` is the event's Merkle leaf hash (``SHA-256(0x00 ||
canonical(event))``), written with the event. The rightmost, partial level-0
tile of the tree is read from these (registry.tlog) instead of being a row
of ``audit_tiles`` rewritten, its up to 8 KiB, by every append; a level-0
tile is written to ``audit_tiles`` once, when its 256th event is appended.
Here every existing event gets its leaf hash from its level-0 tile, and the
partial level-0 tile row is removed.

On SQLite ``audit_event_keys`` becomes a WITHOUT ROWID table: it is only
ever looked up by its primary key, which then is the table itself (one
B-tree written per key row instead of the table and its key index).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TILE_WIDTH = 256

# Event seq's leaf hash stands in level-0 tile (seq - 1) / 256, at (seq - 1) % 256.
_FILL_SQLITE = (
    "UPDATE audit_events SET leaf = (SELECT substr(hashes, (audit_events.seq - 1) % 256 * 32 + 1,"
    " 32) FROM audit_tiles WHERE level = 0 AND idx = (audit_events.seq - 1) / 256)"
)
_FILL_POSTGRESQL = (
    "UPDATE audit_events e SET leaf = substring(t.hashes FROM CAST((e.seq - 1) % 256 * 32 + 1"
    " AS integer) FOR 32) FROM audit_tiles t WHERE t.level = 0 AND t.idx = (e.seq - 1) / 256"
)

_DROP_PARTIAL = "DELETE FROM audit_tiles WHERE level = 0 AND length(hashes) < 8192"  # 256 * 32


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    op.add_column("audit_events", sa.Column("leaf", sa.LargeBinary(), nullable=True))
    op.execute(_FILL_SQLITE if sqlite else _FILL_POSTGRESQL)
    op.execute(_DROP_PARTIAL)
    if sqlite:
        _rebuild_event_keys(with_rowid=False)


def _rebuild_event_keys(*, with_rowid: bool) -> None:
    """audit_event_keys copied into a table of the same columns and constraints, with or
    without a rowid (a SQLite table cannot be altered into the other kind)."""
    op.create_table(
        "audit_event_keys_new",
        sa.Column("keyid", sa.String(64), nullable=False),
        sa.Column("seq", _BIGINT, nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["audit_events.seq"], name=op.f("fk_audit_event_keys_seq_audit_events")
        ),
        sa.PrimaryKeyConstraint("keyid", "seq", name=op.f("pk_audit_event_keys")),
        sqlite_with_rowid=with_rowid,
    )
    op.execute(
        "INSERT INTO audit_event_keys_new (keyid, seq) SELECT keyid, seq FROM audit_event_keys"
    )
    op.drop_table("audit_event_keys")
    op.rename_table("audit_event_keys_new", "audit_event_keys")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _rebuild_event_keys(with_rowid=True)
    # The partial level-0 tile becomes a row again, from its events' leaf hashes.
    size = bind.execute(sa.text("SELECT seq FROM audit_chain_head WHERE id = 1")).scalar() or 0
    start = size - size % _TILE_WIDTH
    if start != size:
        leaves = bind.execute(
            sa.text("SELECT leaf FROM audit_events WHERE seq > :start ORDER BY seq"),
            {"start": start},
        ).scalars()
        tiles = sa.table("audit_tiles", sa.column("level"), sa.column("idx"), sa.column("hashes"))
        bind.execute(
            tiles.insert().values(
                level=0, idx=start // _TILE_WIDTH, hashes=b"".join(bytes(leaf) for leaf in leaves)
            )
        )
    # In place on both engines (SQLite 3.35 and later), as 0007's downgrade does.
    op.execute("ALTER TABLE audit_events DROP COLUMN leaf")
