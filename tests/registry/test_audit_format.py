"""The audit log's canonical encoding is exactly the documented JSON array, and stays so."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtreg.loader.protocols import AuditEvent
from vtreg.registry import audit
from vtreg.verifier.audit_event import COLUMNS, HASHED_FIELDS, JSON_FIELDS, AuditRecord

_text = st.text(max_size=40)
_optional = st.none() | _text

# A value of each hashed field's stored type, in HASHED_FIELDS order.
_hashed_values = st.tuples(
    st.integers(min_value=1, max_value=2**62),  # seq
    st.datetimes(timezones=st.just(UTC)),  # at
    *[_optional if name in {"plugin", "version", "digest", "reason"} else _text
      for name in HASHED_FIELDS[2:]],
)  # fmt: skip


def test_the_fields_are_the_documented_ones_in_order() -> None:
    assert HASHED_FIELDS == (
        "seq", "at", "actor", "action", "outcome", "plugin", "version", "digest", "keyids",
        "reason", "details",
    )  # fmt: skip
    assert (*HASHED_FIELDS, "prev_hash", "hash") == COLUMNS
    assert (*HASHED_FIELDS, "hash") == JSON_FIELDS


@given(_hashed_values)
def test_canonical_is_the_documented_json_array(values: tuple[Any, ...]) -> None:
    seq, at, *rest = values
    expected = json.dumps(
        ["vtreg-audit-v1", seq, at.isoformat(timespec="microseconds"), *rest],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    assert audit.canonical(*values) == expected


# One event, its canonical bytes and its chain hashes, fixed: existing logs must still verify.
KNOWN_EVENT = AuditEvent(
    "plugin.verify",
    "refused",
    plugin="hello",
    version="1.0.0",
    digest="sha256:" + "ab" * 32,
    keyids=("fe" * 32, "0a" * 32, "fe" * 32),
    reason="signed by 1/2 trusted keys: \u00abhello\u00bb",
    details={"path": "/opt/plugins/h\u00e9llo", "counted": []},
)
KNOWN_AT = datetime(2026, 11, 24, 10, 0, 13, 123456, tzinfo=timezone(timedelta(hours=1)))
KNOWN_ACTOR = "operator@build-host"
KNOWN_BYTES = (
    '["vtreg-audit-v1",1,"2026-11-24T09:00:13.123456+00:00","operator@build-host",'
    '"plugin.verify","refused","hello","1.0.0","sha256:' + "ab" * 32 + '","' + "0a" * 32
    + " " + "fe" * 32 + '","signed by 1/2 trusted keys: \u00abhello\u00bb",'
    '"{\\"counted\\":[],\\"path\\":\\"/opt/plugins/h\u00e9llo\\"}"]'
).encode("utf-8")  # fmt: skip
KNOWN_HASH = "ea60ee2a4c883ba01049cb40adbcc1c4c3332962de063a5f30b3c111487220b1"
# The next event, as read back from SQLite (time as stored text), with every optional null.
NEXT_HASHED = (2, "2026-11-24 09:00:14.000001", KNOWN_ACTOR, "key.add", "ok",
               None, None, None, "", None, "{}")  # fmt: skip
NEXT_HASH = "2f27a9825d554ac90ceac487a072875d6186dc2a4e34f8625f60c1f0d572056d"


def test_known_answer() -> None:
    event_bytes = audit.canonical(1, KNOWN_AT, KNOWN_ACTOR, *KNOWN_EVENT.stored())
    assert event_bytes == KNOWN_BYTES
    assert audit.chain_hash(audit.GENESIS_HASH, event_bytes) == KNOWN_HASH
    assert audit.chain_hash(KNOWN_HASH, audit.canonical(*NEXT_HASHED)) == NEXT_HASH


def test_a_record_reads_back_what_was_stored() -> None:
    at = KNOWN_AT.astimezone(UTC)  # as the database returns it
    stored = (1, at, KNOWN_ACTOR, *KNOWN_EVENT.stored(), audit.GENESIS_HASH, KNOWN_HASH)
    record = AuditRecord.from_stored(stored)
    assert record.keyids == ("0a" * 32, "fe" * 32)  # sorted, once each
    assert record.details == KNOWN_EVENT.details
    assert record.stored() == KNOWN_EVENT.stored()
    assert record.to_json() == {
        "seq": 1,
        "at": "2026-11-24T09:00:13.123456Z",
        "actor": KNOWN_ACTOR,
        "action": "plugin.verify",
        "outcome": "refused",
        "plugin": "hello",
        "version": "1.0.0",
        "digest": "sha256:" + "ab" * 32,
        "keyids": ["0a" * 32, "fe" * 32],
        "reason": KNOWN_EVENT.reason,
        "details": {"counted": [], "path": "/opt/plugins/h\u00e9llo"},
        "hash": KNOWN_HASH,
    }


def test_canonical_takes_exactly_the_hashed_fields() -> None:
    with pytest.raises(TypeError, match="11 hashed fields, not 10"):
        audit.canonical(*NEXT_HASHED[:-1])


def test_sqlite_storage_text_hashes_like_the_datetime() -> None:
    at = datetime(2026, 11, 24, 9, 0, 13, 123456, tzinfo=UTC)
    stored = "2026-11-24 09:00:13.123456"  # SQLAlchemy's SQLite storage format
    assert audit.at_text(stored) == audit.at_text(at) == "2026-11-24T09:00:13.123456+00:00"


def test_genesis_and_chaining() -> None:
    first = audit.chain_hash(audit.GENESIS_HASH, b"x")
    assert first == hashlib.sha256(bytes(32) + b"x").hexdigest()
