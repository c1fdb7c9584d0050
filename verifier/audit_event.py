"""The audit event: what a host reports, what the log stores, and the bytes its hash covers.

The fields are declared once, by :class:`AuditEvent` (what a caller reports)
and :class:`AuditRecord` (that, plus what the log adds); the hashed fields, the
stored columns and the JSON keys are derived from the two declarations.

Each event's ``hash`` is ``SHA-256(prev_hash || canonical(event))`` where
``prev_hash`` is the previous event's hash as 32 raw bytes (32 zero bytes
before the first event) and ``canonical(event)`` is the UTF-8 JSON array

    ["vtreg-audit-v1", seq, at, actor, action, outcome, plugin, version,
     digest, keyids, reason, details]

with ``at`` in ISO 8601 UTC with microseconds, ``keyids`` the sorted key ids
joined by spaces and ``details`` a canonical JSON object string.

Pure: no IO, no clock. The registry stores these records (registry.audit);
anything else that keeps or checks a copy of the log can use this module alone.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from .errors import VerificationError

__all__ = [
    "COLUMNS",
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "JSON_FIELDS",
    "REPORTED_FIELDS",
    "AuditEvent",
    "AuditRecord",
    "at_text",
    "canonical",
    "chain_hash",
]

GENESIS_HASH = "0" * 64
_FORMAT = "vtreg-audit-v1"


@dataclass(frozen=True)
class AuditEvent:
    """One decision or change, as the loader (or anyone) reports it.

    ``action`` is a dotted verb such as ``plugin.load``; ``outcome`` is
    ``allowed``/``refused`` for decisions and ``ok`` for changes.
    """

    action: str
    outcome: str
    plugin: str | None = None
    version: str | None = None
    digest: str | None = None
    keyids: tuple[str, ...] = ()
    reason: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def refusal(
        cls,
        action: str,
        error: VerificationError,
        *,
        manifest: bytes | None,
        details: Mapping[str, object],
    ) -> AuditEvent:
        """The record of a refusal, labelled with what was refused.

        After the signatures checked out the error names the authenticated
        plugin; before that, the refusal is labelled with the name plugin.json
        claims (``manifest``), marked ``unverified_name`` in the details.
        """
        from .manifest import claimed_identity  # pydantic: only when there is a refusal
        from .text import printable

        extra: dict[str, object] = {"error": type(error).__name__, "code": error.code}
        plugin: str | None
        release: str | None
        content: str | None
        if error.subject is not None:
            plugin, release, content = error.subject
        else:
            (plugin, release), content = claimed_identity(manifest), None
            extra["unverified_name"] = True
        return AuditEvent(
            action,
            "refused",
            plugin=plugin,
            version=release,
            digest=content,
            keyids=error.keyids,
            reason=printable(str(error)),  # never a NUL or an escape sequence in the log
            details={**details, **extra},
        )

    def stored(self) -> tuple[Any, ...]:
        """The reported fields as the log hashes and stores them, in :data:`REPORTED_FIELDS` order.

        Key ids become one text of the sorted, distinct ids joined by spaces,
        details one canonical JSON object text.

        Raises:
            ValueError: a key id is empty or holds white space (the stored text could
                not be split back into the same ids).
        """
        values = {name: getattr(self, name) for name in REPORTED_FIELDS}
        keyids = sorted(set(self.keyids))
        if any(k.split() != [k] for k in keyids):
            raise ValueError(f"an audit key id must be a non-empty word without spaces: {keyids!r}")
        values["keyids"] = " ".join(keyids)
        values["details"] = json.dumps(
            self.details, sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        return tuple(values.values())


@dataclass(frozen=True, kw_only=True)
class AuditRecord(AuditEvent):
    """An event as the log holds it: what was reported, and what the log added.

    The log's own fields, in order: ``seq``, ``at`` and ``actor`` (hashed,
    before the reported fields), then the link, ``prev_hash`` and ``hash``.
    """

    seq: int
    at: datetime
    actor: str
    prev_hash: str
    hash: str

    @classmethod
    def from_stored(cls, values: Sequence[Any]) -> AuditRecord:
        """The record of a stored row: its values in :data:`COLUMNS` order, ``at`` a datetime."""
        named = dict(zip(COLUMNS, values, strict=True))
        named["keyids"] = tuple(named["keyids"].split())
        named["details"] = json.loads(named["details"])
        return cls(**named)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON: the :data:`JSON_FIELDS`, ``at`` as RFC 3339 UTC (``...Z``)."""
        doc = {name: getattr(self, name) for name in JSON_FIELDS}
        doc["at"] = self.at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        doc["keyids"] = list(self.keyids)
        return doc


def _names(cls: type[AuditEvent]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


REPORTED_FIELDS = _names(AuditEvent)
"""What a caller reports: ``action`` to ``details``."""

_LOGGED = tuple(name for name in _names(AuditRecord) if name not in REPORTED_FIELDS)

HASHED_FIELDS = (*_LOGGED[:3], *REPORTED_FIELDS)
"""What the hash covers, in the order of the canonical array (after the format tag)."""

COLUMNS = (*HASHED_FIELDS, *_LOGGED[3:])
"""Every stored field, in storage order: the hashed fields, then ``prev_hash`` and ``hash``."""

JSON_FIELDS = tuple(name for name in COLUMNS if name != "prev_hash")
"""The keys of :meth:`AuditRecord.to_json` (the link is the previous event's ``hash``)."""


# JSON's own string encoder (what json.dumps uses with ensure_ascii=False). Joining
# the fields by hand gives byte-for-byte the output of
# json.dumps(fields, ensure_ascii=False, separators=(",", ":")) at a third of the
# cost; tests/registry/test_audit_format.py holds the two equal.
_json_string = json.encoder.encode_basestring


def _json_optional(value: str | None) -> str:
    return "null" if value is None else _json_string(value)


def _json_time(value: datetime | str) -> str:
    return _json_string(at_text(value))


# How each hashed field is written, by its declared type in AuditRecord (the annotation
# text, as this module's annotations are postponed): seq a JSON number,
# at a time (see at_text), the rest JSON strings (key ids and details as stored, text),
# or null where the field is optional. A value of another type raises (TypeError,
# ValueError, AttributeError): the log never holds one.
_ENCODE_AS: dict[str, Callable[[Any], str]] = {
    "int": str,
    "datetime": _json_time,
    "str": _json_string,
    "str | None": _json_optional,
    "tuple[str, ...]": _json_string,
    "Mapping[str, object]": _json_string,
}
_ENCODERS = tuple(
    _ENCODE_AS[str(f.type)] for name in HASHED_FIELDS for f in fields(AuditRecord) if f.name == name
)
_HEAD = "[" + _json_string(_FORMAT) + ","


def canonical(*values: Any) -> bytes:
    """The exact bytes an event's hash covers: its :data:`HASHED_FIELDS` values, in order.

    Key ids and details as stored (see :meth:`AuditEvent.stored`); ``at`` as a
    datetime or as the text :func:`at_text` accepts.

    Raises:
        TypeError, ValueError, AttributeError: a value of a type the log never holds.
    """
    if len(values) != len(_ENCODERS):
        raise TypeError(f"an audit event has {len(_ENCODERS)} hashed fields, not {len(values)}")
    return (_HEAD + ",".join(map(operator.call, _ENCODERS, values)) + "]").encode("utf-8")


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


_SQLITE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", re.ASCII)


def chain_hash(prev_hash: str, event_bytes: bytes) -> str:
    """``SHA-256(prev_hash || event_bytes)`` as hex, ``prev_hash`` taken as its 32 raw bytes."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + event_bytes).hexdigest()
