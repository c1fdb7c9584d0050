"""The slice of trust state one decision needs, read from the registry's tables.

A decision about a plugin needs every key (any of them may have signed it),
the trust record of the plugin's content, if there is one, and the rollback
floor of its name and platform (the newest unrevoked version: one probe of an
index, however many versions the name has). All of them are read through the
caller's transaction, so the decision sees one consistent state, and are
handed to the pure decision core (:mod:`vtreg.verifier.decision`) as a
:class:`~vtreg.verifier.trust.TrustState`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from vtreg.verifier.claim import claim_of
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState

from . import rows as columns
from .statements import Cursor, Statements

__all__ = ["read_full_state", "read_keys", "read_state", "state_for_contents"]


class _KeyRow(NamedTuple):
    """A row of :attr:`Statements.keys`, in its column order."""

    name: str
    public_key: bytes
    scopes: str
    expires_at: datetime | str | None
    revoked_at: datetime | str | None
    revoked_reason: str | None
    keyid: str

    def trusted(self) -> TrustedKey:
        return TrustedKey(
            columns.public_key(self.keyid, self.public_key, self.name),
            scopes=columns.scopes(self.keyid, self.scopes),
            expires=Statements.time_in(self.expires_at),
            revoked=self.revoked_reason if self.revoked_at is not None else None,
        )


class _ContentRow(NamedTuple):
    """A row of :attr:`Statements.contents`, in its column order."""

    name: str
    version: str
    platforms: str | None  # space-separated
    content_digest: str
    threshold: int
    pinned: bool | int
    revoked_at: datetime | str | None
    revoked_reason: str | None

    def trusted(self) -> TrustedContent:
        revoked_at = Statements.time_in(self.revoked_at)
        return TrustedContent(
            name=self.name,
            version=columns.version(self.content_digest, self.version),
            platforms=tuple(sorted((self.platforms or "").split())),
            content_digest=self.content_digest,
            threshold=columns.threshold(self.content_digest, self.threshold),
            pinned=bool(self.pinned),
            revoked=(self.revoked_reason or "") if revoked_at is not None else None,
            revoked_at=revoked_at,
        )


def read_keys(cursor: Cursor) -> list[TrustedKey]:
    """Every key the registry knows, revoked and expired ones included."""
    return [_trusted_key(tuple(row)) for row in cursor.rows(cursor.sql.keys)]


@functools.lru_cache(maxsize=4096)
def _trusted_key(row: tuple[Any, ...]) -> TrustedKey:
    # Every decision reads every key: a row read before is the same frozen key, so
    # it is not decoded again (a changed row, such as a revocation, is another entry).
    return _KeyRow(*row).trusted()


def state_for_contents(cursor: Cursor, contents: Iterable[TrustedContent]) -> TrustState:
    """The state every decision about the envelopes of ``contents`` needs: every key,
    these contents and the rollback floor of each of their names and platforms."""
    contents = list(contents)
    floors: dict[tuple[str, str], str] = {}
    for where in {(c.name, p) for c in contents for p in c.platforms}:
        floor = cursor.rows(cursor.sql.floor, where)
        if floor:
            floors[where] = columns.floor_version(*where, floor[0][0])
    names = {c.name for c in contents}
    return TrustState.build(read_keys(cursor), contents, names=names, floors=floors)


def read_state(cursor: Cursor, envelope: bytes | None, *, threshold: int = 1) -> TrustState:
    """Every key, and what the trust records say of the plugin ``envelope`` is about.

    That is the record of the content the envelope's statement claims, if it
    is trusted (or was, and is revoked), and the rollback floor of the claimed
    name on each platform the statement claims a library for. Every decision
    about that envelope asks for nothing else: the decision computes the
    content digest from the captured directory, which equals the statement's
    once the directory matches the statement, and it refuses a directory that
    does not before it looks at contents.

    They are read by one statement (:meth:`Statements.state`), so ``cursor`` may
    be one of :meth:`HotPath.statement`, outside any transaction.

    Args:
        cursor: a cursor in the transaction the decision is made in, or for one
            statement.
        envelope: plugin.sig's bytes, unverified (None: unsigned).
        threshold: distinct trusted keys the decision requires at least.

    Returns:
        The state; it holds no name when the envelope is missing or unreadable
        (the decision refuses such a plugin before it needs one).
    """
    claim = claim_of(envelope)
    if claim is None:
        return TrustState.build(read_keys(cursor), [], names=(), floors={}, threshold=threshold)
    by_digest = claim.content_digest is not None
    params = [claim.content_digest] if by_digest else [claim.name, claim.version]
    for platform in claim.platforms:
        params += [claim.name, platform]
    statement = cursor.sql.state(by_digest=by_digest, platforms=len(claim.platforms))
    keys, contents, floors = [], [], {}
    for row in cursor.rows(statement, params):  # see Statements.state for the layout
        tag = row[0]
        if tag == 0:
            keys.append(_trusted_key(tuple(row[1:8])))
        elif tag == 1:
            contents.append(_ContentRow(*row[8:16]).trusted())
        elif row[16] is not None:  # no row: no unrevoked content covers the platform
            platform = claim.platforms[tag - 2]
            floors[claim.name, platform] = columns.floor_version(claim.name, platform, row[16])
    return TrustState.build(keys, contents, names=(claim.name,), floors=floors, threshold=threshold)


def read_trust_changes(cursor: Cursor, since: int) -> frozenset[str]:
    """The plugin names whose trust records changed after audit event ``since``.

    Every write that changes a trust record logs an event naming the plugin
    in its own transaction (see :mod:`.audit`), so the events name exactly the
    entries a fleet must publish again (keys are few: they are always read).
    """
    rows = cursor.rows(cursor.sql.trust_changes, (since,))
    return frozenset(plugin for action, plugin in rows if plugin and action.startswith("plugin."))


def read_names_state(cursor: Cursor, names: Iterable[str]) -> TrustState:
    """Every key, and every trust record of ``names`` (complete for them alone)."""
    wanted = sorted(set(names))
    rows: list[Any] = []
    for i in range(0, len(wanted), 500):  # under any driver's parameter limit
        chunk = wanted[i : i + 500]
        rows += cursor.rows(cursor.sql.contents_of_names(len(chunk)), tuple(chunk))
    contents = [_ContentRow(*row).trusted() for row in rows]
    return TrustState.build(read_keys(cursor), contents, names=wanted)


def read_full_state(cursor: Cursor) -> TrustState:
    """Every key and every trust record, with the rollback floors they imply.

    What a fleet publishes (:mod:`vtreg.registry.fleet`): a state complete for
    every name, read through one transaction.
    """
    sql = cursor.sql
    keys = read_keys(cursor)
    contents = [_ContentRow(*row).trusted() for row in cursor.rows(sql.all_contents)]
    return TrustState.build(keys, contents)
