"""The audit log as the registry keeps it: appending, querying, verifying the hash chain.

The event itself (its fields, canonical encoding and chain hash) is defined in
verifier.audit_event; this module stores it in ``audit_events``, one column a
field, in :data:`COLUMNS` order. Sequence numbers are contiguous from 1, and
the chain head row names the last event, so an edited, deleted (anywhere,
including the end), inserted or reordered event is found by
:func:`verify_chain`.

Appending happens inside the caller's transaction, after it has locked the
chain head (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite's ``BEGIN
IMMEDIATE`` is already exclusive), so concurrent writers queue and the chain
never forks.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from vtreg.verifier.audit_event import (
    COLUMNS,
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditEvent,
    AuditRecord,
    at_text,
    canonical,
    chain_hash,
)
from vtreg.verifier.merkle import TILE_WIDTH, leaf_hash

from . import tlog
from .statements import Cursor, Statements

# Appending (every load, every verification) needs neither SQLAlchemy nor the models:
# querying and verifying the chain import them.
if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "ChainHeadState",
    "ChainReport",
    "QueryFilters",
    "append",
    "at_text",
    "canonical",
    "chain_hash",
    "count",
    "lock_head",
    "query",
    "stream",
    "verify_chain",
]


@dataclass
class ChainHeadState:
    """The locked chain head inside a writing transaction: the last event's number, hash, time."""

    seq: int
    hash: str
    at: datetime | None = None  # None before the first event


def lock_head(cursor: Cursor) -> ChainHeadState:
    """Lock and read the chain head; call first in every writing transaction."""
    rows = cursor.rows(cursor.sql.lock_head)
    if not rows:
        from vtreg.verifier.errors import RegistryError

        raise RegistryError("the audit chain head is missing: the registry has been tampered with")
    seq, digest, at = rows[0]  # at: None before the first event
    return ChainHeadState(int(seq), str(digest), cursor.sql.time_in(at))


def append(
    cursor: Cursor, head: ChainHeadState, event: AuditEvent, *, actor: str, at: datetime
) -> int:
    """Add ``event`` to the chain within the caller's transaction (head locked); return its seq.

    Runs for every load and every verification, so it is a few short
    statements on the transaction's own cursor (see registry.statements): on
    SQLite the event with its leaf hash, its key rows and the head, three;
    on PostgreSQL the same in one statement, one round trip. The event that
    fills a Merkle tile writes it (see registry.tlog). An event's time never
    goes back along the chain: a writer whose clock is behind the previous
    event's records that event's time instead, so a ``--since`` window never
    misses it.
    """
    sql = cursor.sql
    seq = head.seq + 1
    if head.at is not None and at < head.at:
        at = head.at
    hashed = (seq, at, actor, *event.stored())  # in HASHED_FIELDS order
    event_bytes = canonical(*hashed)
    digest = chain_hash(head.hash, event_bytes)
    row = (seq, sql.time_out(at), *hashed[2:], head.hash, digest, leaf_hash(event_bytes))
    keyids = hashed[_KEYIDS].split()
    if sql.append is not None:
        cursor.rows(sql.append, (*row, keyids, seq, seq, digest))
    else:
        cursor.rows(sql.insert_event, row)
        if keyids:
            cursor.many(sql.insert_key, [(k, seq) for k in keyids])
        cursor.rows(sql.move_head, (seq, digest))
    if seq % TILE_WIDTH == 0:
        tlog.fill_tile(cursor, seq - 1)
    head.seq, head.hash, head.at = seq, digest, at
    return seq


class QueryFilters(TypedDict, total=False):
    """What :func:`query` takes: each filter optional, an event must match every one given."""

    plugin: str | None  # a name, or a glob of * and ?
    keyid: str | None
    action: str | None
    outcome: str | None
    actor: str | None
    digest: str | None  # a content digest, or a prefix of 8+ hex digits
    since: datetime | None
    until: datetime | None
    after: int | None  # only events older than event number ``after`` (a cursor)
    limit: int | None  # at most this many events (None: every one)


_GLOB = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_", "*": "%", "?": "_"})


def _plugin_condition(pattern: str) -> sa.ColumnElement[bool]:
    """A plugin name, or a glob of ``*`` and ``?`` (``hello-*``) over names."""
    from .models import AuditEvent as AuditRow

    if "[" in pattern:
        from vtreg.verifier.errors import UsageError

        raise UsageError(f"--plugin {pattern!r}: a name glob may use * and ? only")
    if "*" not in pattern and "?" not in pattern:
        return AuditRow.plugin == pattern
    return AuditRow.plugin.like(pattern.translate(_GLOB), escape="\\")


def _filtered(stmt: sa.Select[Any], filters: QueryFilters) -> tuple[sa.Select[Any], Any]:
    """``stmt`` restricted to the events matching ``filters``; and the newest-first order."""
    from .models import AuditEvent as AuditRow
    from .models import AuditEventKey
    from .records import digest_condition

    order = AuditRow.seq
    keyid = filters.get("keyid")
    if keyid is not None:
        stmt = stmt.join(AuditEventKey, AuditEventKey.seq == AuditRow.seq).where(
            AuditEventKey.keyid == keyid
        )
        # Walk the (keyid, seq) primary key newest-first instead of scanning every event.
        order = AuditEventKey.seq
    plugin, digest = filters.get("plugin"), filters.get("digest")
    if plugin is not None:
        stmt = stmt.where(_plugin_condition(plugin))
    if digest is not None:
        stmt = stmt.where(digest_condition(AuditRow.digest, digest))
    for column, value in (
        (AuditRow.action, filters.get("action")),
        (AuditRow.outcome, filters.get("outcome")),
        (AuditRow.actor, filters.get("actor")),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    since, until, after = filters.get("since"), filters.get("until"), filters.get("after")
    if since is not None:
        stmt = stmt.where(AuditRow.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRow.at < until)
    if after is not None:
        stmt = stmt.where(order < after)
    return stmt, order


def stream(session: Session, **filters: Unpack[QueryFilters]) -> Generator[AuditRecord]:
    """Events matching every given filter, newest first, at most ``limit`` (None: all),
    fetched in batches so that memory stays bounded however many match."""
    import sqlalchemy as sa

    from .models import AuditEvent as AuditRow

    stmt, order = _filtered(sa.select(*(getattr(AuditRow, n) for n in COLUMNS)), filters)
    stmt = stmt.order_by(order.desc())
    limit = filters.get("limit")
    if limit is not None:
        stmt = stmt.limit(limit)
    # A server-side cursor on PostgreSQL: closed when the stream is, read to its end or not.
    with session.execute(stmt, execution_options={"yield_per": _BATCH}) as rows:
        for row in rows:
            yield AuditRecord.from_stored(row)


def query(session: Session, **filters: Unpack[QueryFilters]) -> list[AuditRecord]:
    """:func:`stream` as a list; at most 100 events unless ``limit`` says otherwise."""
    limited: QueryFilters = {"limit": 100, **filters}
    return list(stream(session, **limited))


def count(session: Session, **filters: Unpack[QueryFilters]) -> int:
    """How many events match every given filter (``limit`` is ignored)."""
    import sqlalchemy as sa

    from .models import AuditEvent as AuditRow

    stmt, _ = _filtered(sa.select(sa.func.count()).select_from(AuditRow), filters)
    return int(session.execute(stmt).scalar_one())


_BATCH = 1000


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found."""

    events: int
    head: str
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the whole chain verified."""
        return self.problem is None


# The chain walk reads raw rows in COLUMNS order: where each field stands in them.
_SEQ, _KEYIDS, _PREV_HASH, _HASH = map(COLUMNS.index, ("seq", "keyids", "prev_hash", "hash"))
_HASHED = len(HASHED_FIELDS)  # the hashed fields come first


def verify_chain(
    connection: Connection,
    *,
    batch: int = 10_000,
    anchor: tuple[int, str] | None = None,
    leaves: Callable[[bytes], object] | None = None,
) -> ChainReport:
    """Walk the whole log in order and report the first event that breaks the chain.

    Besides each event's hash and link, the key index (audit_event_keys) must
    name exactly each event's key ids, and the head row must name the last
    event. ``anchor`` is a ``(seq, hash)`` recorded earlier, outside the
    database: the chain must still contain it, which a wholesale rewrite of
    the log (hashes recomputed, head moved) cannot fake. ``leaves``, if given,
    is called with the canonical bytes of each event that verified, in order
    (the leaves of the Merkle tree: ``audit verify --checkpoint`` recomputes
    the tree in the same pass, the bytes built once).

    Run it in one snapshot (SQLite: any transaction; PostgreSQL: REPEATABLE
    READ), or concurrent appends look like a head that ran ahead of the log.
    """
    import sqlalchemy as sa

    from .models import ChainHead

    sql = Statements.of(connection.engine)
    # The driver's own rows: SQLAlchemy's result machinery costs a fifth of the walk.
    # `at` comes as the driver returns it (see at_text): converting costs seconds a million.
    with (
        _driver_rows(connection, sql.walk_events, batch) as events,
        _driver_rows(connection, sql.walk_keys, batch) as index,
    ):
        walk = _ChainWalk(index, anchor)
        broken = walk.events(events, leaves)
    if broken is not None:
        return broken
    return walk.end(connection.execute(sa.select(ChainHead.seq, ChainHead.hash)).first())


@contextlib.contextmanager
def _driver_rows(connection: Connection, statement: str, batch: int) -> Iterator[Iterator[Any]]:
    """The rows of ``statement`` on ``connection``'s DBAPI connection (in its transaction),
    ``batch`` at a time; on PostgreSQL from a server-side cursor, closed however the walk ends."""
    raw: Any = connection.connection.dbapi_connection
    if connection.dialect.name == "postgresql":
        cursor = raw.cursor(name=f"vtreg_walk_{next(_CURSOR_NAMES)}")
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(statement)
        yield _batched(cursor, batch)
    finally:
        cursor.close()


_CURSOR_NAMES = itertools.count()


def _batched(cursor: Any, batch: int) -> Iterator[Any]:
    while rows := cursor.fetchmany(batch):
        yield from rows


class _Broken(Exception):
    """The walk found an event that breaks the chain (``problem`` says how)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _ChainWalk:
    """One pass over the log in seq order, the key index (in the same order) beside it."""

    def __init__(self, index: Iterable[Sequence[Any]], anchor: tuple[int, str] | None) -> None:
        self.count = 0  # events verified so far
        self.prev = GENESIS_HASH  # the hash of the last of them
        self._index: Iterator[Sequence[Any]] = iter(index)
        self._pending = next(self._index, None)  # the first index row not yet matched
        self._anchor = anchor
        self._anchored = anchor is None

    def _broken(self, problem: str, at: int | None = None) -> ChainReport:
        return ChainReport(self.count, self.prev, self.count + 1 if at is None else at, problem)

    def events(
        self, rows: Iterable[Sequence[Any]], leaves: Callable[[bytes], object] | None = None
    ) -> ChainReport | None:
        """Check every event (each one's bytes then given to ``leaves``); the first broken."""
        event_bytes, check_keys, anchor = self._event, self._keys, self._anchor
        try:
            for row in rows:
                seq = row[_SEQ]
                event = event_bytes(row)
                problem = check_keys(seq, row[_KEYIDS])
                if problem is not None:
                    return self._broken(problem)
                if anchor is not None and seq == anchor[0]:
                    if row[_HASH] != anchor[1]:
                        return self._broken(
                            f"event {seq} is not the event anchored earlier (its hash differs): "
                            "the log was rewritten"
                        )
                    self._anchored = True
                if leaves is not None:
                    leaves(event)
                self.count, self.prev = seq, row[_HASH]
        except _Broken as e:
            return self._broken(e.problem)
        return None

    def _event(self, row: Sequence[Any]) -> bytes:
        """The event's canonical bytes, once its number, link and hash are checked.

        Raises:
            _Broken: what is wrong with them.
        """
        seq, expected = row[_SEQ], self.count + 1
        if seq != expected:
            raise _Broken(
                f"event {expected} is missing (the log jumps from {expected - 1} to {seq}): "
                "deleted?"
            )
        if row[_PREV_HASH] != self.prev:
            raise _Broken(
                f"event {seq} does not follow event {seq - 1} (prev_hash differs): "
                "inserted, deleted or reordered?"
            )
        try:
            event = canonical(*row[:_HASHED])
        except (TypeError, ValueError, AttributeError):
            raise _Broken(
                f"event {seq} holds a value vtreg never writes (a wrong type, or a time "
                "not in vtreg's form): edited?"
            ) from None
        if chain_hash(self.prev, event) != row[_HASH]:
            raise _Broken(f"event {seq} does not match its hash: edited or moved?")
        return event

    def _keys(self, seq: int, keyids: str) -> str | None:
        """What is wrong with the event's rows in the key index (its key ids, in order)."""
        pending, indexed = self._pending, True
        for keyid in keyids.split():
            if pending is None or pending[0] != seq or pending[1] != keyid:
                indexed = False
                break
            pending = next(self._index, None)
        self._pending = pending
        if pending is not None and type(pending[0]) is not int:
            return f"the key index holds a malformed row ({pending[0]!r}): edited?"
        if not indexed or (pending is not None and pending[0] <= seq):
            return f"the key index of event {seq} does not match its key ids: edited?"
        return None

    def end(self, head: Any) -> ChainReport:
        """After the last event: the head row, leftover index rows and the anchor."""
        count, pending = self.count, self._pending
        if head is None:
            return self._broken("the chain head row is missing")
        if type(head.seq) is not int:
            return self._broken("the chain head row is malformed: edited?")
        if head.seq > count:
            return self._broken(
                f"the chain head names event {head.seq} but the log ends at event {count}: "
                "events deleted from the end?"
            )
        if head.seq < count:
            problem = (
                f"the log goes on past the chain head (event {head.seq}) to event {count}: "
                "events added outside the registry?"
            )
            return ChainReport(head.seq, self.prev, head.seq + 1, problem)
        if head.hash != self.prev:
            problem = f"the chain head's hash differs from event {count}'s: the head was edited?"
            return self._broken(problem, at=count)
        if pending is not None:
            problem = f"the key index names event {pending[0]}, which is not in the log"
            return self._broken(problem, at=pending[0])
        if not self._anchored:
            assert self._anchor is not None  # noqa: S101 - not anchored only with an anchor
            return self._broken(
                f"the log ends at event {count}, before the anchored event {self._anchor[0]}: "
                "events deleted from the end, and the head moved back?"
            )
        return ChainReport(count, self.prev)
