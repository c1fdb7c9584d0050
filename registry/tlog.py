"""The audit log's Merkle tree as the registry stores it: tiles, written with each event.

Leaf ``seq - 1`` of the RFC 6962 tree is the event's canonical bytes (the
same bytes its chain hash covers; see verifier.audit_event). The tree is
kept in ``audit_tiles`` in the C2SP tlog-tiles layout: level 0 holds leaf
hashes, 256 to a tile; a full tile's root is appended to the tile above. An
append costs one statement (the leaf hash appended to its tile), plus one
more for each tile it fills (every 256th event), in the appending
transaction (:func:`add_leaf`, called by registry.audit.append).

Reads (:class:`TreeReader`) answer any root, inclusion or consistency proof
in O(log n) tile reads, and stream the events for the checks that must not
trust the tiles (:func:`event_leaves`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from vtreg.verifier.audit_event import HASHED_FIELDS, canonical
from vtreg.verifier.errors import LogError, RegistryError, UsageError
from vtreg.verifier.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    TILE_WIDTH,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    subtree_hash,
    tile_hash_reader,
    tile_root,
    verify_inclusion,
)

from .statements import Cursor, Statements

# Adding a leaf (every append) needs neither SQLAlchemy nor the models; reading does.
if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from vtreg.verifier.tlog_proof import TlogProof

__all__ = ["TreeReader", "add_leaf", "event_bytes", "event_leaves", "prove_event"]

_OUT_OF_STEP = "the audit log's Merkle tiles are out of step with its events (edited?)"


def add_leaf(cursor: Cursor, index: int, event: bytes) -> None:
    """Add leaf ``index`` (an event's canonical bytes) to the tiles, in the caller's transaction.

    Raises:
        RegistryError: the stored tiles do not end where leaf ``index`` belongs.
    """
    sql, level, value = cursor.sql, 0, leaf_hash(event)
    while True:
        tile, position = divmod(index, TILE_WIDTH)
        if position == 0:
            cursor.rows(sql.new_tile, (level, tile, value))
            return
        if position < TILE_WIDTH - 1:
            found = cursor.rows(sql.extend_tile, (value, level, tile))
            if not found or found[0][0] != (position + 1) * HASH_SIZE:
                raise RegistryError(_OUT_OF_STEP)
            return
        full = cursor.rows(sql.fill_tile, (value, level, tile))
        if not full or len(full[0][0]) != TILE_WIDTH * HASH_SIZE:
            raise RegistryError(_OUT_OF_STEP)
        level, index, value = level + 1, tile, tile_root(bytes(full[0][0]))


class TreeReader:
    """The stored tree, read in the caller's transaction (one snapshot for a consistent view)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._statement = Statements.of(connection.engine).tile  # a proof reads a few tiles
        self.read = tile_hash_reader(self._tile)

    def _tile(self, level: int, index: int) -> bytes:
        data = self._connection.exec_driver_sql(self._statement, (level, index)).scalar()
        if data is None:
            raise LogError(f"the audit log's Merkle tile {level}/{index} is missing")
        return bytes(data)

    def size(self) -> int:
        """The number of events (the chain head's seq)."""
        import sqlalchemy as sa

        from .models import ChainHead

        head = self._connection.execute(sa.select(ChainHead.seq)).scalar()
        if head is None:
            raise RegistryError(
                "the audit chain head is missing: the registry has been tampered with"
            )
        return int(head)

    def tile(self, level: int, index: int) -> bytes:
        """The stored bytes of one tile (full, or the partial rightmost one)."""
        return self._tile(level, index)

    def root(self, size: int) -> bytes:
        """The root hash of the tree of the first ``size`` events."""
        return subtree_hash(self.read, 0, size) if size else EMPTY_ROOT

    def edge(self, size: int) -> CompactRange:
        """The right edge of the tree of ``size`` events, to extend leaf by leaf."""
        return CompactRange.of(self.read, size)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """The inclusion proof of leaf ``index`` (event ``index + 1``) in the tree of ``size``."""
        return inclusion_proof(self.read, index, size)

    def consistency(self, old: int, new: int) -> list[bytes]:
        """The consistency proof from the tree of ``old`` events to that of ``new``."""
        return consistency_proof(self.read, old, new)


def event_leaves(connection: Connection, start: int, end: int) -> Iterator[bytes]:
    """The leaf hash of events ``start + 1 .. end``, from the events themselves, in order.

    Raises:
        LogError: see :func:`event_bytes`.
    """
    return map(leaf_hash, event_bytes(connection, start, end))


def event_bytes(
    connection: Connection, start: int, end: int, *, batch: int = 10_000
) -> Iterator[bytes]:
    """The canonical bytes of events ``start + 1 .. end`` (leaves ``start .. end - 1``).

    Raises:
        LogError: an event is missing or holds a value vtreg never writes.
    """
    import sqlalchemy as sa

    from .models import AuditEvent as AuditRow

    # `at` as the driver returns it (SQLite's text, or a datetime): canonical() takes either.
    columns = [
        sa.type_coerce(AuditRow.at, sa.String) if name == "at" else getattr(AuditRow, name)
        for name in HASHED_FIELDS
    ]
    query = (
        sa.select(*columns)
        .where(AuditRow.seq > start, AuditRow.seq <= end)
        .order_by(AuditRow.seq)
        .execution_options(yield_per=batch)
    )
    expected = start + 1
    with connection.execute(query) as rows:
        for row in rows:
            if row[0] != expected:
                raise LogError(f"event {expected} is missing from the audit log (deleted?)")
            try:
                yield canonical(*row)
            except (TypeError, ValueError, AttributeError) as e:
                raise LogError(
                    f"event {expected} holds a value vtreg never writes (edited?)"
                ) from e
            expected += 1
    if expected != end + 1:
        raise LogError(f"the audit log ends at event {expected - 1}, not {end} (truncated?)")


def prove_event(connection: Connection, seq: int, note: bytes) -> TlogProof:
    """A tlog-proof of event ``seq`` under the checkpoint ``note``, its bytes as ``extra``.

    The proof is checked against the checkpoint's root before it is returned.

    Raises:
        UsageError: the checkpoint does not cover event ``seq``.
        FormatError: ``note`` is not a checkpoint.
        LogError: the log does not hold what the checkpoint signed.
    """
    from vtreg.verifier.note import Checkpoint, parse_note
    from vtreg.verifier.tlog_proof import TlogProof

    checkpoint = Checkpoint.parse(parse_note(note).text)
    if not 1 <= seq <= checkpoint.size:
        raise UsageError(f"event {seq} is not in the checkpoint of {checkpoint.size} events")
    (event,) = event_bytes(connection, seq - 1, seq)
    hashes = TreeReader(connection).inclusion(seq - 1, checkpoint.size)
    verify_inclusion(seq - 1, checkpoint.size, leaf_hash(event), hashes, checkpoint.root)
    return TlogProof(seq - 1, tuple(hashes), note, extra=event)
