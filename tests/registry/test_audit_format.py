"""The audit log's canonical encoding is exactly the documented JSON array."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from vtreg.registry import audit

_text = st.text(max_size=40)
_optional = st.none() | _text


@given(
    seq=st.integers(min_value=1, max_value=2**62),
    at=st.datetimes(timezones=st.just(UTC)),
    actor=_text,
    action=_text,
    outcome=_text,
    plugin=_optional,
    version=_optional,
    digest=_optional,
    keyids=_text,
    reason=_optional,
    details=_text,
)
def test_canonical_is_the_documented_json_array(
    seq: int, at: datetime, actor: str, action: str, outcome: str, plugin: str | None,
    version: str | None, digest: str | None, keyids: str, reason: str | None, details: str,
) -> None:  # fmt: skip
    fields = [seq, at, actor, action, outcome, plugin, version, digest, keyids, reason, details]
    expected = json.dumps(
        ["vtreg-audit-v1", seq, at.isoformat(timespec="microseconds"), *fields[2:]],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    assert audit.canonical(*fields) == expected  # type: ignore[arg-type]


def test_sqlite_storage_text_hashes_like_the_datetime() -> None:
    at = datetime(2026, 11, 24, 9, 0, 13, 123456, tzinfo=UTC)
    stored = "2026-11-24 09:00:13.123456"  # SQLAlchemy's SQLite storage format
    assert audit.at_text(stored) == audit.at_text(at) == "2026-11-24T09:00:13.123456+00:00"


def test_genesis_and_chaining() -> None:
    first = audit.chain_hash(audit.GENESIS_HASH, b"x")
    import hashlib

    assert first == hashlib.sha256(bytes(32) + b"x").hexdigest()
