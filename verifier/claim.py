"""What a plugin's envelope claims about it, read before any signature is checked.

A trust store uses the claim only to pick which trust records to read for a
decision (the registry's rows, a fleet host's state rows); the decision then
authenticates the same bytes, so a lying claim is refused there. Pure.
"""

from __future__ import annotations

from typing import NamedTuple

from .envelope import parse_envelope, parse_statement
from .errors import FormatError
from .signatures import content_digest

__all__ = ["Claim", "claim_of"]


class Claim(NamedTuple):
    """What a plugin's envelope claims about it, before any signature is checked."""

    name: str
    version: str
    platforms: tuple[str, ...]  # every platform the statement names a library for
    # None when the statement names no sha256 for some file (it used another
    # algorithm): the content digest is over sha256 digests, which only the
    # capture then has.
    content_digest: str | None


def claim_of(envelope: bytes | None) -> Claim | None:
    """``envelope``'s claimed name, version, platforms and content digest; None if unreadable.

    Nothing here is trusted: it only picks which rows to read. The decision
    authenticates these same bytes, so a claim that is a lie is refused there,
    and one that is true picked exactly the rows the decision asks for.
    """
    if envelope is None:
        return None
    try:
        statement = parse_statement(parse_envelope(envelope).payload_bytes())
    except FormatError:
        return None
    predicate = statement.predicate
    sha256 = {s.name: s.digest.get("sha256") for s in statement.subject}
    files = {path: digest for path, digest in sha256.items() if digest is not None}
    digest = (
        content_digest(predicate.name, predicate.version, files)
        if len(files) == len(sha256)
        else None
    )
    return Claim(predicate.name, predicate.version, predicate.platforms, digest)
