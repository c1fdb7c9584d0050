"""The audit log: canonical encoding, hash chain, appending, verifying, querying.

Each event's ``hash`` is ``SHA-256(prev_hash || canonical(event))`` where
``prev_hash`` is the previous event's hash as 32 raw bytes (32 zero bytes
before the first event) and ``canonical(event)`` is the UTF-8 JSON array

    ["vtreg-audit-v1", seq, at, actor, action, outcome, plugin, version,
     digest, keyids, reason, details]

with ``at`` in ISO 8601 UTC with microseconds, ``keyids`` the sorted key ids
joined by spaces and ``details`` a canonical JSON object string. Sequence
numbers are contiguous from 1, and the chain head row names the last event,
so an edited, deleted (anywhere, including the end), inserted or reordered
event is found by :func:`verify_chain`.

Appending happens inside the caller's transaction, after it has locked the
chain head (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite's ``BEGIN
IMMEDIATE`` is already exclusive), so concurrent writers queue and the chain
never forks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from vtreg.loader.protocols import AuditEvent

from .models import AuditEvent as AuditRow
from .models import AuditEventKey, ChainHead
from .statements import Cursor

__all__ = [
    "GENESIS_HASH",
    "AuditRecord",
    "ChainHeadState",
    "ChainReport",
    "append",
    "at_text",
    "canonical",
    "chain_hash",
    "lock_head",
    "query",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
_FORMAT = "vtreg-audit-v1"
_FORMAT_JSON = json.dumps(_FORMAT)


# JSON's own string encoder (what json.dumps uses with ensure_ascii=False). Joining
# the fields by hand gives byte-for-byte the output of
# json.dumps(fields, ensure_ascii=False, separators=(",", ":")) at a third of the
# cost; tests/registry/test_audit_format.py holds the two equal.
_json_string = json.encoder.encode_basestring


def _json(value: str | int | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return _json_string(value)


def canonical(
    seq: int,
    at: datetime | str,
    actor: str,
    action: str,
    outcome: str,
    plugin: str | None,
    version: str | None,
    digest: str | None,
    keyids: str,
    reason: str | None,
    details: str,
) -> bytes:
    """The exact bytes an event's hash covers (``at`` as a datetime or as :func:`at_text`)."""
    fields = (
        _FORMAT_JSON, str(seq), _json_string(at_text(at)), _json_string(actor),
        _json_string(action), _json_string(outcome), _json(plugin), _json(version),
        _json(digest), _json_string(keyids), _json(reason), _json_string(details),
    )  # fmt: skip
    return ("[" + ",".join(fields) + "]").encode("utf-8")


def at_text(value: datetime | str) -> str:
    """An event time as hashed: ISO 8601 UTC with microseconds (``...T09:00:13.123456+00:00``).

    Accepts what the database returns without type conversion, to keep
    verification fast: a datetime (PostgreSQL) or the exact text SQLAlchemy
    stores on SQLite, ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC). Any other text is
    refused (ValueError), the hashed form itself included: time filters compare
    the stored text, so the same instant spelled another way sorts elsewhere.
    """
    if isinstance(value, str):
        if _SQLITE_TIME.fullmatch(value):
            return f"{value[:10]}T{value[11:]}+00:00"
        raise ValueError(f"{value!r} is not a time as vtreg stores it")
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no place in the audit log")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


_SQLITE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


def chain_hash(prev_hash: str, event_bytes: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + event_bytes).hexdigest()


def _details_text(details: Mapping[str, object]) -> str:
    return json.dumps(details, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass
class ChainHeadState:
    """The locked chain head inside a writing transaction: the last event's number and hash."""

    seq: int
    hash: str


def lock_head(cursor: Cursor) -> ChainHeadState:
    """Lock and read the chain head; call first in every writing transaction."""
    rows = cursor.rows(cursor.sql.lock_head)
    if not rows:
        from vtreg.verifier.errors import RegistryError

        raise RegistryError("the audit chain head is missing: the registry has been tampered with")
    seq, digest = rows[0]
    return ChainHeadState(int(seq), str(digest))


def append(
    cursor: Cursor, head: ChainHeadState, event: AuditEvent, *, actor: str, at: datetime
) -> int:
    """Add ``event`` to the chain within the caller's transaction (head locked); return its seq.

    Runs for every load and every verification, so it is three short
    statements on the transaction's own cursor (see registry.statements).
    """
    sql = cursor.sql
    seq = head.seq + 1
    keyids = tuple(sorted(set(event.keyids)))
    if any(k.split() != [k] for k in keyids):
        # They are stored space-separated: a key id must be one non-empty word.
        raise ValueError(f"an audit key id must be a non-empty word without spaces: {keyids!r}")
    keyid_text = " ".join(keyids)
    details = _details_text(event.details)
    digest = chain_hash(
        head.hash,
        canonical(
            seq, at, actor, event.action, event.outcome, event.plugin, event.version,
            event.digest, keyid_text, event.reason, details,
        ),
    )  # fmt: skip
    cursor.rows(
        sql.insert_event,
        (
            seq, sql.time_out(at), actor, event.action, event.outcome, event.plugin,
            event.version, event.digest, keyid_text, event.reason, details, head.hash, digest,
        ),
    )  # fmt: skip
    if keyids:
        cursor.many(sql.insert_key, [(k, seq) for k in keyids])
    cursor.rows(sql.move_head, (seq, digest))
    head.seq, head.hash = seq, digest
    return seq


@dataclass(frozen=True)
class AuditRecord:
    """An event as read back."""

    seq: int
    at: datetime
    actor: str
    action: str
    outcome: str
    plugin: str | None
    version: str | None
    digest: str | None
    keyids: tuple[str, ...]
    reason: str | None
    details: dict[str, Any]
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "plugin": self.plugin,
            "version": self.version,
            "digest": self.digest,
            "keyids": list(self.keyids),
            "reason": self.reason,
            "details": self.details,
            "hash": self.hash,
        }


def query(
    session: Session,
    *,
    plugin: str | None = None,
    keyid: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """Events matching every given filter, newest first, at most ``limit``."""
    stmt = sa.select(AuditRow)
    order = AuditRow.seq.desc()
    if keyid is not None:
        stmt = stmt.join(AuditEventKey, AuditEventKey.seq == AuditRow.seq).where(
            AuditEventKey.keyid == keyid
        )
        # Walk the (keyid, seq) primary key newest-first instead of scanning every event.
        order = AuditEventKey.seq.desc()
    if plugin is not None:
        stmt = stmt.where(AuditRow.plugin == plugin)
    if action is not None:
        stmt = stmt.where(AuditRow.action == action)
    if outcome is not None:
        stmt = stmt.where(AuditRow.outcome == outcome)
    if since is not None:
        stmt = stmt.where(AuditRow.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRow.at < until)
    rows = session.execute(stmt.order_by(order).limit(limit)).scalars()
    return [
        AuditRecord(
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            action=r.action,
            outcome=r.outcome,
            plugin=r.plugin,
            version=r.version,
            digest=r.digest,
            keyids=tuple(r.keyids.split()),
            reason=r.reason,
            details=json.loads(r.details),
            hash=r.hash,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_chain` found."""

    events: int
    head: str
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


# `at` as the driver returns it (see at_text): converting a million datetimes costs seconds.
_COLUMNS = (
    AuditRow.seq, sa.type_coerce(AuditRow.at, sa.String), AuditRow.actor, AuditRow.action,
    AuditRow.outcome, AuditRow.plugin, AuditRow.version, AuditRow.digest, AuditRow.keyids,
    AuditRow.reason, AuditRow.details, AuditRow.prev_hash, AuditRow.hash,
)  # fmt: skip


def verify_chain(
    connection: Connection, *, batch: int = 10_000, anchor: tuple[int, str] | None = None
) -> ChainReport:
    """Walk the whole log in order and report the first event that breaks the chain.

    Besides each event's hash and link, the key index (audit_event_keys) must
    name exactly each event's key ids, and the head row must name the last
    event. ``anchor`` is a ``(seq, hash)`` recorded earlier, outside the
    database: the chain must still contain it, which a wholesale rewrite of
    the log (hashes recomputed, head moved) cannot fake.

    Run it in one snapshot (SQLite: any transaction; PostgreSQL: REPEATABLE
    READ), or concurrent appends look like a head that ran ahead of the log.
    """
    expected_seq, prev = 1, GENESIS_HASH
    anchored = anchor is None
    # Key ids in code point order, as append() sorts them, whatever the database's collation.
    keyid_order = (
        AuditEventKey.keyid.collate("C")
        if connection.dialect.name == "postgresql"
        else AuditEventKey.keyid  # SQLite's BINARY collation is code point order for UTF-8
    )
    events = index = None
    try:
        events = connection.execution_options(yield_per=batch).execute(
            sa.select(*_COLUMNS).order_by(AuditRow.seq)
        )
        index = connection.execution_options(yield_per=batch).execute(
            sa.select(AuditEventKey.seq, AuditEventKey.keyid).order_by(
                AuditEventKey.seq, keyid_order
            )
        )
        pending = next(index, None)
        for row in events:
            seq, at, actor, action, outcome, plugin, version, digest, keyids, reason, details, \
                stored_prev, stored_hash = row  # fmt: skip
            problem = None
            if seq != expected_seq:
                problem = (
                    f"event {expected_seq} is missing (the log jumps from {expected_seq - 1} "
                    f"to {seq}): deleted?"
                )
            elif stored_prev != prev:
                problem = (
                    f"event {seq} does not follow event {seq - 1} (prev_hash differs): "
                    "inserted, deleted or reordered?"
                )
            else:
                try:
                    event = canonical(
                        seq, at, actor, action, outcome, plugin, version, digest, keyids,
                        reason, details,
                    )  # fmt: skip
                except (TypeError, ValueError, AttributeError):
                    problem = (
                        f"event {seq} holds a value vtreg never writes (a wrong type, or a time "
                        "not in vtreg's form): edited?"
                    )
                else:
                    computed = chain_hash(prev, event)
                    if computed != stored_hash:
                        problem = f"event {seq} does not match its hash: edited or moved?"
            if problem is None:
                # The index rows for this event, in key id order, must be its key ids.
                indexed = True
                for keyid in keyids.split():
                    if pending is None or pending[0] != seq or pending[1] != keyid:
                        indexed = False
                        break
                    pending = next(index, None)
                if pending is not None and type(pending[0]) is not int:
                    problem = f"the key index holds a malformed row ({pending[0]!r}): edited?"
                elif not indexed or (pending is not None and pending[0] <= seq):
                    problem = f"the key index of event {seq} does not match its key ids: edited?"
            if problem is not None:
                return ChainReport(expected_seq - 1, prev, expected_seq, problem)
            if anchor is not None and seq == anchor[0]:
                if computed != anchor[1]:
                    return ChainReport(
                        seq - 1, prev, seq,
                        f"event {seq} is not the event anchored earlier (its hash differs): "
                        "the log was rewritten",
                    )  # fmt: skip
                anchored = True
            expected_seq, prev = seq + 1, computed
    finally:
        for result in (events, index):  # a PostgreSQL server-side cursor must not outlive
            if result is not None:  # an early return
                result.close()
    count = expected_seq - 1
    head = connection.execute(sa.select(ChainHead.seq, ChainHead.hash)).first()
    if head is None:
        return ChainReport(count, prev, count + 1, "the chain head row is missing")
    if type(head.seq) is not int:
        return ChainReport(count, prev, count + 1, "the chain head row is malformed: edited?")
    if head.seq > count:
        problem = (
            f"the chain head names event {head.seq} but the log ends at event {count}: "
            "events deleted from the end?"
        )
        return ChainReport(count, prev, count + 1, problem)
    if head.seq < count:
        problem = (
            f"the log goes on past the chain head (event {head.seq}) to event {count}: "
            "events added outside the registry?"
        )
        return ChainReport(head.seq, prev, head.seq + 1, problem)
    if head.hash != prev:
        problem = f"the chain head's hash differs from event {count}'s: the head was edited?"
        return ChainReport(count, prev, count, problem)
    if pending is not None:
        return ChainReport(
            count,
            prev,
            pending[0],
            f"the key index names event {pending[0]}, which is not in the log",
        )
    if not anchored:
        assert anchor is not None  # noqa: S101 - anchored is False only with an anchor
        problem = (
            f"the log ends at event {count}, before the anchored event {anchor[0]}: "
            "events deleted from the end, and the head moved back?"
        )
        return ChainReport(count, prev, count + 1, problem)
    return ChainReport(count, prev)
