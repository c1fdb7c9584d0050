"""A :class:`~vtreg.verifier.trust.TrustState` as canonical JSON, and back.

A fleet publishes its registry's trust state as signed TUF metadata, and each
host keeps the state it verified in a local file. Both carry the same entries,
written here: a key, a content, a rollback floor, each a JSON object with
fixed fields. :func:`canonical` gives the one byte string of a JSON value
(sorted keys, no spaces, UTF-8), so an entry hashes the same wherever it is
written. Reading is strict: every field present, of its type, no other field.

Pure: no IO, no clock, no TUF.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ._json import load_json_object
from .envelope import format_time
from .errors import FormatError, KeyFileError
from .keys import PublicKey
from .trust import TrustedContent, TrustedKey, TrustState

__all__ = [
    "canonical",
    "content_from_json",
    "content_to_json",
    "floor_from_json",
    "floor_to_json",
    "key_from_json",
    "key_to_json",
    "state_from_json",
    "state_to_json",
]

_KEY_FIELDS = {"keyid", "public_key", "name", "scopes", "expires", "revoked"}
_CONTENT_FIELDS = {
    "name",
    "version",
    "platforms",
    "content_digest",
    "threshold",
    "pinned",
    "revoked",
    "revoked_at",
}
# Written before a content could cover several platforms: one "platform" string.
_LEGACY_CONTENT_FIELDS = (_CONTENT_FIELDS - {"platforms"}) | {"platform"}
_FLOOR_FIELDS = {"name", "platform", "version"}
_STATE_FIELDS = {"keys", "contents", "floors", "names"}


def canonical(value: object) -> bytes:
    """The canonical bytes of a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def key_to_json(key: TrustedKey) -> dict[str, Any]:
    """A trusted key as a JSON object (the raw public key in hex)."""
    return {
        "keyid": key.keyid,
        "public_key": key.key.raw.hex(),
        "name": key.key.name,
        "scopes": list(key.scopes),
        "expires": _time(key.expires),
        "revoked": key.revoked,
    }


def content_to_json(content: TrustedContent) -> dict[str, Any]:
    """A trusted (or revoked) content as a JSON object."""
    return {
        "name": content.name,
        "version": content.version,
        "platforms": list(content.platforms),
        "content_digest": content.content_digest,
        "threshold": content.threshold,
        "pinned": content.pinned,
        "revoked": content.revoked,
        "revoked_at": _time(content.revoked_at),
    }


def floor_to_json(name: str, platform: str, version: str) -> dict[str, Any]:
    """A rollback floor as a JSON object."""
    return {"name": name, "platform": platform, "version": version}


def state_to_json(state: TrustState) -> dict[str, Any]:
    """A state over contents as a JSON object (keys, contents, floors, names; sorted).

    Raises:
        ValueError: ``state`` trusts any signed content (it has no contents):
            not a state a fleet publishes.
    """
    if state.contents is None:
        raise ValueError("only a state over contents is written")
    return {
        "keys": [key_to_json(state.keys[k]) for k in sorted(state.keys)],
        "contents": [content_to_json(state.contents[d]) for d in sorted(state.contents)],
        "floors": [floor_to_json(n, p, v) for (n, p), v in sorted(state.floors.items())],
        "names": sorted(state.names) if state.names is not None else None,
    }


def _fields(obj: object, expected: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise FormatError(f"{what} must be a JSON object, found {type(obj).__name__}")
    if set(obj) != expected:
        missing, extra = sorted(expected - set(obj)), sorted(set(obj) - expected)
        raise FormatError(f"{what}: missing fields {missing}, unknown fields {extra}")
    return obj


def _typed(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(f"{what}: {name} has the wrong type ({type(value).__name__})")
    return value


def _opt_str(obj: Mapping[str, Any], name: str, what: str) -> str | None:
    value: str | None = _typed(obj, name, (str, type(None)), what)
    return value


def _opt_time(obj: Mapping[str, Any], name: str, what: str) -> datetime | None:
    text = _opt_str(obj, name, what)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise FormatError(f"{what}: {name} is not a time: {text!r}") from e
    if moment.tzinfo is None or format_time(moment) != text:
        raise FormatError(f"{what}: {name} is not an RFC 3339 UTC time in seconds: {text!r}")
    return moment


def key_from_json(obj: object) -> TrustedKey:
    """A trusted key from :func:`key_to_json`'s object.

    Raises:
        FormatError: a field is missing, unknown or of the wrong type, or the
            key id is not the public key's.
    """
    what = "trusted key"
    entry = _fields(obj, _KEY_FIELDS, what)
    try:
        raw = bytes.fromhex(_typed(entry, "public_key", str, what))
        key = PublicKey(raw, _opt_str(entry, "name", what))
    except ValueError as e:
        raise FormatError(f"{what}: public_key is not hex") from e
    except KeyFileError as e:  # not 32 bytes, or a weak point
        raise FormatError(f"{what}: {e}") from e
    if key.keyid != _typed(entry, "keyid", str, what):
        raise FormatError(f"{what}: keyid {entry['keyid']!r} is not its public key's")
    scopes = _typed(entry, "scopes", list, what)
    if not all(isinstance(s, str) for s in scopes):
        raise FormatError(f"{what}: scopes must be strings")
    return TrustedKey(
        key,
        scopes=tuple(scopes),
        expires=_opt_time(entry, "expires", what),
        revoked=_opt_str(entry, "revoked", what),
    )


def content_from_json(obj: object) -> TrustedContent:
    """A trusted content from :func:`content_to_json`'s object.

    Raises:
        FormatError: a field is missing, unknown or of the wrong type.
    """
    what = "trusted content"
    legacy = isinstance(obj, dict) and "platform" in obj
    entry = _fields(obj, _LEGACY_CONTENT_FIELDS if legacy else _CONTENT_FIELDS, what)
    threshold = _typed(entry, "threshold", int, what)
    if threshold < 1:
        raise FormatError(f"{what}: threshold must be at least 1, found {threshold}")
    return TrustedContent(
        name=_typed(entry, "name", str, what),
        version=_typed(entry, "version", str, what),
        platforms=(_typed(entry, "platform", str, what),) if legacy else _platforms(entry, what),
        content_digest=_typed(entry, "content_digest", str, what),
        threshold=threshold,
        pinned=_typed(entry, "pinned", bool, what),
        revoked=_opt_str(entry, "revoked", what),
        revoked_at=_opt_time(entry, "revoked_at", what),
    )


def _platforms(entry: Mapping[str, Any], what: str) -> tuple[str, ...]:
    platforms = _typed(entry, "platforms", list, what)
    if not platforms or not all(isinstance(p, str) for p in platforms):
        raise FormatError(f"{what}: platforms must be a non-empty list of strings")
    if platforms != sorted(set(platforms)):
        raise FormatError(f"{what}: platforms must be sorted, each once")
    return tuple(platforms)


def floor_from_json(obj: object) -> tuple[tuple[str, str], str]:
    """``((name, platform), version)`` from :func:`floor_to_json`'s object.

    Raises:
        FormatError: a field is missing, unknown or of the wrong type.
    """
    what = "rollback floor"
    entry = _fields(obj, _FLOOR_FIELDS, what)
    where = (_typed(entry, "name", str, what), _typed(entry, "platform", str, what))
    return where, _typed(entry, "version", str, what)


def _list(obj: Mapping[str, Any], name: str) -> Iterable[object]:
    value: list[object] = _typed(obj, name, list, "trust state")
    return value


def state_from_json(obj: object) -> TrustState:
    """A state from :func:`state_to_json`'s object (or its bytes).

    Raises:
        FormatError: not such an object.
    """
    if isinstance(obj, bytes):
        obj = load_json_object(obj, "trust state")
    entry = _fields(obj, _STATE_FIELDS, "trust state")
    names = entry["names"]
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise FormatError("trust state: names must be null or a list of names")
    return TrustState.build(
        [key_from_json(k) for k in _list(entry, "keys")],
        [content_from_json(c) for c in _list(entry, "contents")],
        names=names,
        floors=dict(floor_from_json(f) for f in _list(entry, "floors")),
    )
