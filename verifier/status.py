"""The effective status of a trusted content, from its trust record alone (stdlib only).

The decision core (:mod:`vtreg.verifier.decision`) decides about an envelope:
it verifies the signatures, then asks of each signer the questions of
:func:`key_problem`, then checks the signature's expiry and the content's
record. The registry keeps, for every trusted content, the outcome of the
first step (the keys whose signatures counted when its envelope was accepted:
``plugin_signers``) and the one field of the statement the later steps read
(its ``expires``: ``plugins.signature_expires``). :func:`content_status` asks
the remaining questions, in the decision's order and with the same code for
each answer, of those columns: so ``vtreg list`` judges a million contents
without parsing or verifying a million envelopes, and without importing the
models. tests/registry/test_listing.py checks it against the decision core, on
real registries.

One difference is deliberate (docs/decisions.md): a key added after an
envelope was accepted does not count for it here, although a load would let
its signature count; ``vtreg trust`` again records it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import NamedTuple

from .times import format_time

__all__ = [
    "KEY_PROBLEM_CODES",
    "LOADABLE",
    "ContentRecord",
    "KeyTerms",
    "content_status",
    "key_problem",
]

LOADABLE = "loadable"
"""The status of a content that would load now; any other status is a refusal code."""

KEY_PROBLEM_CODES = ("key-revoked", "key-expired", "out-of-scope")
"""The codes of :func:`key_problem`, in the order a shortfall of signers is reported as."""


def key_problem(
    revoked: str | None,
    expires: datetime | None,
    scopes: Collection[str],
    plugin_name: str,
    at: datetime,
) -> tuple[str, str] | None:
    """Why a key may not vouch for ``plugin_name`` at ``at``: (code, text), or None.

    A revoked key never counts, whatever the signature's claimed time; an
    expired one counts no more from its expiry on; a scoped key only for the
    names its glob patterns match (no patterns: any name).
    """
    if revoked is not None:
        return "key-revoked", f"key revoked ({revoked})"
    if expires is not None and at >= expires:
        return "key-expired", f"key expired at {format_time(expires)}"
    if scopes and not any(fnmatch.fnmatchcase(plugin_name, p) for p in scopes):
        scope = ", ".join(scopes)
        return "out-of-scope", f"key may not sign {plugin_name!r} (scope: {scope})"
    return None


class KeyTerms(NamedTuple):
    """What :func:`key_problem` reads of a key."""

    revoked: str | None
    expires: datetime | None
    scopes: tuple[str, ...]


class ContentRecord(NamedTuple):
    """What :func:`content_status` reads of a trusted content's record."""

    name: str
    signers: Collection[str]  # keys whose signatures counted when its envelope was accepted
    signature_expires: datetime | None
    threshold: int
    pinned: bool
    revoked: bool
    older_than_floor: bool  # its version is below the newest unrevoked one of name and platform


def content_status(record: ContentRecord, keys: Mapping[str, KeyTerms], at: datetime) -> str:
    """LOADABLE, or the refusal code a load of ``record``'s content would meet at ``at``.

    The checks of :func:`~vtreg.verifier.decision.decide_envelope`, in its order:
    the signers that still count (each key's :func:`key_problem`), the
    signature's expiry, then the content's revocation, threshold and rollback.
    """
    problems = []
    counted = 0
    for keyid in record.signers:
        key = keys.get(keyid)
        if key is None:  # keys are never deleted; a missing one cannot count
            problems.append("unknown-key")
            continue
        problem = key_problem(key.revoked, key.expires, key.scopes, record.name, at)
        if problem is None:
            counted += 1
        else:
            problems.append(problem[0])
    if counted < 1:
        return next((c for c in KEY_PROBLEM_CODES if c in problems), "unknown-key")
    if record.signature_expires is not None and at >= record.signature_expires:
        return "signature-expired"
    if record.revoked:
        return "content-revoked"
    if counted < record.threshold:
        return "threshold"
    if record.older_than_floor and not record.pinned:
        return "rollback"
    return LOADABLE
