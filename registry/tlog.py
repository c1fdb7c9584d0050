"""The audit log's Merkle tree as the registry stores it: tiles, written with the events.

Leaf ``seq - 1`` of the RFC 6962 tree is the event's canonical bytes (the
same bytes its chain hash covers; see verifier.audit_event). The tree is
kept in the C2SP tlog-tiles layout: level 0 holds leaf hashes, 256 to a
tile; a full tile's root is appended to the tile above. Each event row
carries its own leaf hash (``audit_events.leaf``), written by the append
itself, and the rightmost, partial level-0 tile is read from those; the
event that fills a level-0 tile (every 256th) writes it to ``audit_tiles``
and extends the tiles above it (:func:`fill_tile`, called by
registry.audit.append in the appending transaction). So an append writes no
tile row at all, except every 256th: rewriting a growing 8 KiB tile at
every append cost a statement and, on SQLite, two or three WAL pages.

Reads (:class:`TreeReader`) answer any root, inclusion or consistency proof
in O(log n) tile reads, and stream the events for the checks that must not
trust the tiles (:func:`event_leaves`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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

__all__ = ["TreeReader", "event_bytes", "event_leaves", "fill_tile", "prove_event"]

_OUT_OF_STEP = "the audit log's Merkle tiles are out of step with its events (edited?)"


def fill_tile(cursor: Cursor, index: int) -> None:
    """Write the level-0 tile that leaf ``index`` (already in its event's row) fills, and the
    tiles above it, in the caller's transaction.

    Raises:
        RegistryError: the events' leaf hashes or the stored tiles do not end where
            leaf ``index`` belongs.
    """
    sql, tile = cursor.sql, index // TILE_WIDTH
    first = tile * TILE_WIDTH
    rows = cursor.rows(sql.leaves, (first, first + TILE_WIDTH))
    if index % TILE_WIDTH != TILE_WIDTH - 1 or len(rows) != TILE_WIDTH:
        raise RegistryError(_OUT_OF_STEP)
    try:
        hashes = b"".join(bytes(leaf) for (leaf,) in rows)
    except TypeError:  # a NULL leaf
        raise RegistryError(_OUT_OF_STEP) from None
    if len(hashes) != TILE_WIDTH * HASH_SIZE:
        raise RegistryError(_OUT_OF_STEP)
    cursor.rows(sql.new_tile, (0, tile, hashes))
    _add_hash(cursor, 1, tile, tile_root(hashes))


def _add_hash(cursor: Cursor, level: int, index: int, value: bytes) -> None:
    """Add hash ``index`` of ``level`` (the root of a full tile below) to its tile, and so on up."""
    sql = cursor.sql
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
        self._sql = Statements.of(connection.engine)  # a proof reads a few tiles: raw SQL
        self._size: int | None = None
        self.read = tile_hash_reader(self._tile)

    def _rows(self, statement: str, params: tuple[int, int] | tuple[()] = ()) -> list[Any]:
        # The driver's own cursor, in the connection's transaction: SQLAlchemy's result
        # machinery would cost more than reading the 255 leaves of a partial tile.
        cursor = self._connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def _tile(self, level: int, index: int) -> bytes:
        if level == 0 and (index + 1) * TILE_WIDTH > self.size():  # the partial tile
            first = index * TILE_WIDTH
            try:
                rows = self._rows(self._sql.leaves, (first, first + TILE_WIDTH))
                return b"".join(bytes(leaf) for (leaf,) in rows)
            except TypeError:  # a NULL leaf
                raise LogError(f"the audit log's Merkle tile 0/{index} is missing") from None
        rows = self._rows(self._sql.tile, (level, index))
        if not rows:
            raise LogError(f"the audit log's Merkle tile {level}/{index} is missing")
        return bytes(rows[0][0])

    def size(self) -> int:
        """The number of events (the chain head's seq), as first read by this reader."""
        if self._size is None:
            rows = self._rows(self._sql.head_seq)
            if not rows or rows[0][0] is None:
                raise RegistryError(
                    "the audit chain head is missing: the registry has been tampered with"
                )
            self._size = int(rows[0][0])
        return self._size

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
