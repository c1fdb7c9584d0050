"""``vtreg audit``'s queries through a :class:`~.reader.Reader`: the filters of
:func:`vtreg.registry.audit.stream` in the driver's SQL, without the ORM.

Each filter is a fixed piece of SQL with a placeholder; the events come
newest first, walking ``audit_events``' primary key, or ``audit_event_keys``'
``(keyid, seq)`` key for ``--key``, and stop where the caller stops reading.
tests/registry/test_listing.py checks every filter against
:func:`vtreg.registry.audit.stream` on both engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Unpack

from vtreg.verifier.audit_event import COLUMNS, AuditRecord
from vtreg.verifier.errors import UsageError

from .reader import Reader, time_in
from .records import checked_digest

__all__ = ["count_events", "event_stream"]

if TYPE_CHECKING:  # typing only: registry.audit imports SQLAlchemy
    from .audit import QueryFilters

_GLOB = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_", "*": "%", "?": "_"})


def _time_param(reader: Reader, value: datetime) -> datetime | str:
    """A time as a parameter: SQLite compares the naive UTC text SQLAlchemy stores there."""
    if not reader.sqlite:
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _digest_where(reader: Reader, digest: str) -> tuple[str, str]:
    """``e.digest`` is the content ``digest`` names (whole, or a prefix of 8+ hex digits)."""
    text = checked_digest(digest)
    if len(text) == len("sha256:") + 64:
        return f"e.digest = {reader.mark}", text
    return f"e.digest LIKE {reader.mark}", text + "%"  # hex and a colon: no wildcard


def _plugin_where(reader: Reader, pattern: str) -> tuple[str, str]:
    """A plugin name, or a glob of ``*`` and ``?`` (``hello-*``) over names."""
    if "[" in pattern:
        raise UsageError(f"--plugin {pattern!r}: a name glob may use * and ? only")
    if "*" not in pattern and "?" not in pattern:
        return f"e.plugin = {reader.mark}", pattern
    return f"e.plugin LIKE {reader.mark} ESCAPE '\\'", pattern.translate(_GLOB)


def _where(reader: Reader, filters: QueryFilters) -> tuple[str, str, list[Any]]:
    """FROM and WHERE of the events ``filters`` match, the seq column to order by, and
    the parameters."""
    mark = reader.mark
    conditions: list[str] = []
    params: list[Any] = []
    source, order = "audit_events e", "e.seq"
    if filters.get("keyid") is not None:
        source += " JOIN audit_event_keys k ON k.seq = e.seq"
        conditions.append(f"k.keyid = {mark}")
        params.append(filters["keyid"])
        order = "k.seq"  # the (keyid, seq) primary key, newest first
    for piece in (
        _plugin_where(reader, p) if (p := filters.get("plugin")) is not None else None,
        _digest_where(reader, d) if (d := filters.get("digest")) is not None else None,
    ):
        if piece is not None:
            conditions.append(piece[0])
            params.append(piece[1])
    for column in ("action", "outcome", "actor"):
        value = filters.get(column)
        if value is not None:
            conditions.append(f"e.{column} = {mark}")
            params.append(value)
    for value, condition in ((filters.get("since"), ">="), (filters.get("until"), "<")):
        if value is not None:
            conditions.append(f"e.at {condition} {mark}")
            params.append(_time_param(reader, value))
    if filters.get("after") is not None:
        conditions.append(f"{order} < {mark}")
        params.append(filters["after"])
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    return f"FROM {source}{where}", order, params


def event_stream(reader: Reader, **filters: Unpack[QueryFilters]) -> Iterator[AuditRecord]:
    """Events matching every given filter, newest first (``limit`` ignored: the caller
    stops reading), fetched a batch at a time.

    Raises:
        UsageError: a filter is malformed (at once, before any event is read).
    """
    source, order, params = _where(reader, filters)
    columns = ", ".join(f"e.{name}" for name in COLUMNS)
    return _records(reader.stream(f"SELECT {columns} {source} ORDER BY {order} DESC", params))


def _records(rows: Iterator[Any]) -> Iterator[AuditRecord]:
    at = COLUMNS.index("at")
    for row in rows:
        values = list(row)
        values[at] = time_in(values[at])
        yield AuditRecord.from_stored(values)


def count_events(reader: Reader, **filters: Unpack[QueryFilters]) -> int:
    """How many events match every given filter."""
    source, _, params = _where(reader, filters)
    ((count,),) = reader.rows(f"SELECT count(*) {source}", params)
    return int(count)
