"""The slice of trust state one decision needs, read from the registry's tables.

A decision about a plugin needs every key (any of them may have signed it)
and every trusted content of the plugin's name (its own record, and the
newer versions that make it a rollback). Both are read through the caller's
transaction, so the decision sees one consistent state, and are handed to the
pure decision core (:mod:`vtreg.verifier.decision`) as a
:class:`~vtreg.verifier.trust.TrustState`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import NamedTuple

from vtreg.verifier._base64 import decode_canonical
from vtreg.verifier.keys import PublicKey
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState

from .statements import Cursor, Statements

__all__ = ["read_state"]


def _claimed_name(envelope: bytes | None) -> str | None:
    """The plugin name an unchecked envelope claims, or None if it claims none."""
    try:
        envelope_obj = json.loads(envelope or b"{}")
        statement = json.loads(decode_canonical(envelope_obj["payload"]))
        name = statement["predicate"]["name"]
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    return name if isinstance(name, str) else None


class _KeyRow(NamedTuple):
    """A row of :attr:`Statements.keys`, in its column order."""

    name: str
    public_key: bytes
    scopes: str
    expires_at: datetime | str | None
    revoked_at: datetime | str | None
    revoked_reason: str | None

    def trusted(self) -> TrustedKey:
        return TrustedKey(
            PublicKey(bytes(self.public_key), self.name),
            scopes=tuple(json.loads(self.scopes)),
            expires=Statements.time_in(self.expires_at),
            revoked=self.revoked_reason if self.revoked_at is not None else None,
        )


class _ContentRow(NamedTuple):
    """A row of :attr:`Statements.contents`, in its column order."""

    name: str
    version: str
    platform: str
    content_digest: str
    threshold: int
    pinned: bool | int
    revoked_at: datetime | str | None
    revoked_reason: str | None

    def trusted(self) -> TrustedContent:
        revoked_at = Statements.time_in(self.revoked_at)
        return TrustedContent(
            name=self.name,
            version=self.version,
            platform=self.platform,
            content_digest=self.content_digest,
            threshold=int(self.threshold),
            pinned=bool(self.pinned),
            revoked=(self.revoked_reason or "") if revoked_at is not None else None,
            revoked_at=revoked_at,
        )


def read_state(cursor: Cursor, envelope: bytes | None, *, threshold: int = 1) -> TrustState:
    """Every key, and every trusted content of the name ``envelope``'s statement claims.

    The claimed name only picks rows: the decision checks that the name it
    decides about is one the state holds.
    """
    sql = cursor.sql
    keys = [_KeyRow(*row).trusted() for row in cursor.rows(sql.keys)]
    name = _claimed_name(envelope)
    if name is None:
        return TrustState.build(keys, [], names=(), threshold=threshold)
    contents = [_ContentRow(*row).trusted() for row in cursor.rows(sql.contents, (name,))]
    return TrustState.build(keys, contents, names=(name,), threshold=threshold)
