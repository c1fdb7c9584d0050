"""What the registry holds, read for people: trusted contents with their effective status,
and keys (``vtreg list``, ``show``, ``key list``), through a :class:`~.reader.Reader`.

Each content's status is judged as a load would judge it now
(:func:`vtreg.verifier.status.content_status`) from columns alone: its
signers, its signature's expiry, its record, and whether its version is below
its name's rollback floor, which the same SELECT finds with one probe of
``ix_plugins_floor``. So a million contents stream in constant memory, in
``ix_plugins_list``'s order, without one envelope parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from vtreg.verifier.errors import NotFoundError, UsageError
from vtreg.verifier.status import ContentRecord, KeyTerms, content_status
from vtreg.verifier.times import format_time

from . import rows
from .reader import Reader, time_in
from .records import KeyInfo, checked_digest
from .revisions import SCHEMA_HEAD

__all__ = [
    "PluginQuery",
    "count_plugins",
    "key_infos",
    "plugin_documents",
    "registry_info",
    "resolve_keyid",
]

_KEYS = (
    "SELECT keyid, name, scopes, expires_at, added_at, added_by, revoked_at, revoked_reason "
    "FROM keys ORDER BY added_at, keyid"
)
# Columns of a content row, in PluginRow's order ({platforms}: the platforms it covers,
# joined with spaces). The last three: its signers, every key that signed an envelope
# accepted for it, and whether a newer unrevoked version of its name is trusted on one of
# its platforms (above the rollback floor there, as the registry's status judges it).
_PLUGIN_COLUMNS = (
    "p.name, p.version, p.content_digest, {platforms}, p.threshold, p.pinned, p.trusted_at, "
    "p.trusted_by, p.revoked_at, p.revoked_reason, p.signature_expires"
)
_OLDER = (
    "CASE WHEN EXISTS (SELECT 1 FROM plugins f JOIN plugin_platforms fp ON fp.plugin_id = f.id "
    "JOIN plugin_platforms pp ON pp.plugin_id = p.id AND pp.platform = fp.platform "
    "WHERE f.name = p.name AND f.revoked_at IS NULL AND f.version_key > p.version_key) "
    "THEN 1 ELSE 0 END"
)


@dataclass(frozen=True)
class PluginQuery:
    """Which contents to list: every filter given, in list order, after a cursor."""

    name: str | None = None
    signed_by: str | None = None  # a full key id
    revoked: bool | None = None  # None: both kinds
    after: str | None = None  # a content digest: continue after it


def _plugin_where(reader: Reader, query: PluginQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (empty, or starting with a space) of ``query``, and its parameters."""
    mark = reader.mark
    where: list[str] = []
    params: list[Any] = []
    if query.name is not None:
        where.append(f"p.name = {mark}")
        params.append(query.name)
    if query.signed_by is not None:
        where.append(
            f"(p.id IN (SELECT plugin_id FROM plugin_signers WHERE keyid = {mark}) OR p.id IN "
            f"(SELECT plugin_id FROM plugin_envelopes WHERE signers LIKE {mark}))"
        )
        params += [query.signed_by, f"%{query.signed_by}%"]  # a key id is hex: no wildcard
    if query.revoked is not None:
        where.append(f"p.revoked_at IS {'NOT ' if query.revoked else ''}NULL")
    if query.after is not None:
        where.append(
            "(p.name, p.trusted_at, p.id) > (SELECT c.name, c.trusted_at, c.id FROM plugins c "
            f"WHERE c.content_digest = {mark})"
        )
        params.append(query.after)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def _plugin_select(reader: Reader, query: PluginQuery) -> tuple[str, list[Any]]:
    signers = f"(SELECT {reader.agg('s.keyid')} FROM plugin_signers s WHERE s.plugin_id = p.id)"
    former = f"(SELECT {reader.agg('e.signers')} FROM plugin_envelopes e WHERE e.plugin_id = p.id)"
    platforms = (
        f"(SELECT {reader.agg('pp.platform')} FROM plugin_platforms pp WHERE pp.plugin_id = p.id)"
    )
    columns = _PLUGIN_COLUMNS.format(platforms=platforms)
    where, params = _plugin_where(reader, query)
    statement = f"SELECT {columns}, {signers}, {former}, {_OLDER} FROM plugins p{where}"
    return statement + " ORDER BY p.name, p.trusted_at, p.id", params


def count_plugins(reader: Reader, query: PluginQuery) -> int:
    """How many contents ``query`` asks for (for "N more" after a page)."""
    where, params = _plugin_where(reader, query)
    ((count,),) = reader.rows(f"SELECT count(*) FROM plugins p{where}", params)
    return int(count)


def _key_terms(reader: Reader) -> dict[str, KeyTerms]:
    """What the status reads of every key (revoked and expired ones included)."""
    return {
        keyid: KeyTerms(
            revoked_reason if revoked_at is not None else None,
            time_in(expires_at),
            rows.scopes(keyid, scopes),
        )
        for keyid, scopes, expires_at, revoked_at, revoked_reason in reader.rows(
            "SELECT keyid, scopes, expires_at, revoked_at, revoked_reason FROM keys"
        )
    }


def plugin_documents(
    reader: Reader, query: PluginQuery, *, at: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The contents ``query`` asks for, in list order, each with its effective status at
    ``at`` (default: now), as :meth:`~vtreg.registry.records.PluginInfo.to_json` writes
    them (built straight from the row: at a million rows, every microsecond shows).

    Raises:
        UsageError: ``query.after`` names no trusted content.
    """
    if query.after is not None:
        query = replace(query, after=_content_named(reader, query.after))
    keys = _key_terms(reader)
    at = at or datetime.now(UTC)
    statement, params = _plugin_select(reader, query)
    for row in reader.stream(statement, params):
        yield _document(row, keys, at)


def _time_text(value: datetime | str | None) -> str | None:
    """A stored time as --json writes it (format_time); SQLite's text (SQLAlchemy's
    ``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC) is cut to it without a datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return f"{value[:10]}T{value[11:19]}Z"
    return format_time(value)


def _document(row: tuple[Any, ...], keys: dict[str, KeyTerms], at: datetime) -> dict[str, Any]:
    (name, version, digest, platforms, threshold, pinned, trusted_at, trusted_by) = row[:8]
    revoked_at, revoked_reason, expires, signed, former, older = row[8:]
    signers = sorted(signed.split()) if signed else []
    threshold, pinned = rows.threshold(digest, threshold), bool(pinned)
    record = ContentRecord(
        name, signers, time_in(expires), threshold, pinned, revoked_at is not None, bool(older)
    )
    return {
        "name": name,
        "version": version,
        "content_digest": digest,
        "platforms": sorted(platforms.split()) if platforms else [],
        "signers": signers,
        "former_signers": sorted(set(former.split()) - set(signers)) if former else [],
        "threshold": threshold,
        "pinned": pinned,
        "trusted_at": _time_text(trusted_at),
        "trusted_by": trusted_by,
        "revoked_at": _time_text(revoked_at),
        "revoked_reason": revoked_reason,
        "status": content_status(record, keys, at),
    }


def _content_named(reader: Reader, digest: str) -> str:
    """The one content digest ``digest`` names: itself, or a prefix as tables print it.

    Raises:
        UsageError: no content, or several, or not a digest.
    """
    text = checked_digest(digest)
    # A whole digest is one probe of its unique index; a prefix (hex and a colon: no
    # wildcard) a scan, as LIKE uses no index on either engine here.
    whole = len(text) == len("sha256:") + 64
    found = reader.rows(
        "SELECT content_digest FROM plugins WHERE content_digest "
        + (f"= {reader.mark}" if whole else f"LIKE {reader.mark} LIMIT 2"),
        (text if whole else text + "%",),
    )
    if not found:
        raise UsageError(f"--after {digest}: no such content in the registry")
    if len(found) > 1:
        raise UsageError(f"--after {digest}: the prefix matches several contents; give more")
    return str(found[0][0])


def key_infos(reader: Reader) -> list[KeyInfo]:
    """Every key, revoked ones included, oldest first."""
    return [
        KeyInfo(
            keyid=keyid,
            name=name,
            scopes=rows.scopes(keyid, scopes),
            expires_at=time_in(expires_at),
            added_at=time_in(added_at),  # type: ignore[arg-type] # NOT NULL
            added_by=added_by,
            revoked_at=time_in(revoked_at),
            revoked_reason=revoked_reason,
        )
        for keyid, name, scopes, expires_at, added_at, added_by, revoked_at, revoked_reason in (
            reader.rows(_KEYS)
        )
    ]


def resolve_keyid(reader: Reader, text: str) -> str:
    """A full key id from a full id, a unique prefix of at least 8 hex digits, or a key name
    (as :meth:`vtreg.registry.service.Registry.resolve_keyid`).

    Raises:
        NotFoundError: no key matches.
        UsageError: too short a prefix, or it matches several keys.
    """
    text = text.strip()
    hex_id = text.lower()
    is_hex = len(hex_id) >= 8 and all(c in "0123456789abcdef" for c in hex_id)
    mark = reader.mark
    by_id = reader.rows(f"SELECT keyid FROM keys WHERE keyid LIKE {mark} LIMIT 2", (hex_id + "%",))
    by_name = reader.rows(f"SELECT keyid FROM keys WHERE name = {mark}", (text,))
    found = [str(k) for (k,) in (by_id if is_hex else []) or by_name]
    if not found:
        if not is_hex and len(text) < 8 and not by_name:
            raise UsageError(
                f"{text!r} is not a key id (64 hex digits, or a prefix of 8 or more) "
                "nor the name of a key"
            )
        raise NotFoundError(f"no key {text} in the registry")
    if len(found) > 1:
        what = "key id prefix" if is_hex and by_id else "key name"
        raise UsageError(f"{what} {text} matches several keys; give more digits of its id")
    return found[0]


def registry_info(reader: Reader) -> dict[str, Any]:
    """Which registry this is and what it holds: schema revision, counts, the chain head
    (as :meth:`vtreg.registry.service.Registry.info`; JSON-ready)."""

    def counts(table: str) -> dict[str, int]:
        ((total, revoked),) = reader.rows(f"SELECT count(*), count(revoked_at) FROM {table}")
        return {"trusted": int(total) - int(revoked), "revoked": int(revoked)}

    ((revision,),) = reader.rows("SELECT version_num FROM alembic_version")
    keys, plugins = counts("keys"), counts("plugins")
    ((seq, head),) = reader.rows("SELECT seq, hash FROM audit_chain_head")
    last = reader.rows(f"SELECT at FROM audit_events WHERE seq = {reader.mark}", (seq,))
    last_at = time_in(last[0][0]) if last else None
    return {
        "url": reader.url,
        "engine": reader.engine,
        "revision": revision,
        "head_revision": SCHEMA_HEAD,
        "keys": keys,
        "plugins": plugins,
        "audit": {
            "events": int(seq),
            "head": head if seq else None,
            "last_at": format_time(last_at) if last_at else None,
        },
        "actor": reader.actor,
    }
