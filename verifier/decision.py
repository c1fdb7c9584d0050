"""The trust decision: may this captured plugin be used, given this trust state, now?

Pure, like python-tuf's ``TrustedMetadataSet``: no file, database or network
IO and no clock; a :class:`~vtreg.verifier.trust.TrustState`, a capture and
the time go in, and a :class:`~vtreg.verifier.signatures.VerifiedPlugin`
comes out or a :class:`~vtreg.verifier.errors.VerificationError` with a
stable ``code`` says why not. The registry, a host without one, and a fleet
host all decide through these two functions.

A load (or ``vtreg verify``) is allowed when, in this order:

1. the envelope's signatures verify with enough distinct trusted keys that
   are unrevoked, unexpired and in scope for the plugin's name, and the
   signature has not expired (:func:`~vtreg.verifier.signatures.verify_envelope`);
2. the directory holds exactly the signed files with the signed digests,
   and plugin.json agrees with the statement;
3. with a registry of contents: the content digest is trusted and not
   revoked, signed by as many keys as it was trusted with, and not older
   than the newest trusted version of its name and platform unless pinned.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from .envelope import format_time
from .errors import PolicyError, SignatureError, VtregError
from .manifest import SemVer
from .signatures import SignedStatement, VerifiedPlugin, content_digest, verify_envelope
from .tree import PluginTree
from .trust import TrustedContent, TrustState

__all__ = ["authenticate", "decide", "decide_envelope", "decide_trust", "decide_trust_envelope"]


class _Signed(NamedTuple):
    """What the content checks read of an authenticated plugin."""

    name: str
    version: str
    platforms: tuple[str, ...]
    content_digest: str
    signers: tuple[str, ...]
    keyids: tuple[str, ...]

    @classmethod
    def of(cls, verified: VerifiedPlugin) -> _Signed:
        return cls(
            verified.name,
            verified.version,
            verified.platforms,
            verified.content_digest,
            verified.signers,
            verified.signature_keyids,
        )

    @property
    def subject(self) -> tuple[str, str, str]:
        return self.name, self.version, self.content_digest


def authenticate(envelope: bytes | None, state: TrustState, *, at: datetime) -> SignedStatement:
    """Check plugin.sig alone against the state's keys and threshold.

    Raises:
        VerificationError: unsigned, malformed, too few fit signers, expired.
    """
    return verify_envelope(envelope, state.keys.values(), at=at, threshold=state.threshold)


def decide(
    tree: PluginTree,
    state: TrustState,
    *,
    at: datetime,
    signed: SignedStatement | None = None,
    platform: str | None = None,
) -> VerifiedPlugin:
    """Decide whether a captured plugin may be loaded (or pass ``vtreg verify``).

    Args:
        tree: the captured plugin directory, plugin.sig included.
        state: what is trusted (see :class:`~vtreg.verifier.trust.TrustState`).
        at: the time to judge key, signature and content status at.
        signed: what :func:`authenticate` returned for this same ``state`` and
            ``at`` before the capture (saving a second check); ignored unless it
            is the envelope the tree holds.
        platform: the platform whose library will be used (the loader's host):
            the rollback rule is judged for it. None, or one the plugin has no
            library for: judged for every platform it covers.

    Returns:
        The verified plugin.

    Raises:
        VerificationError: the refusal, with its ``code``.
        VtregError: ``state`` does not hold the plugin's name (could not decide).
    """
    if signed is None or signed.envelope != tree.signature:
        signed = authenticate(tree.signature, state, at=at)
    verified = signed.match(tree)
    if state.contents is not None:
        _check_content(_Signed.of(verified), state, platform)
    return verified


def decide_envelope(
    envelope: bytes, state: TrustState, *, at: datetime, platform: str | None = None
) -> SignedStatement:
    """Decide whether the content an envelope signs would load now, without its directory.

    This is how the registry reports a trusted content's effective status
    from the envelope it last accepted for it: every check of :func:`decide`
    except those of the directory itself (its files and plugin.json), which
    only a capture can make. The content digest is the statement's own, over
    the sha256 digests it signs. ``platform`` as for :func:`decide`.

    Raises:
        VerificationError: the refusal a load of that content would meet now.
        VtregError: the statement names no sha256 for some file (could not decide).
    """
    signed = authenticate(envelope, state, at=at)
    if state.contents is not None:
        _check_content(_signed_facts(signed), state, platform)
    return signed


def decide_trust_envelope(
    envelope: bytes, state: TrustState, *, at: datetime
) -> tuple[SignedStatement, str]:
    """Decide whether the content a plugin.sig alone signs may be trusted (``vtreg trust
    plugin.sig``): the statement pins every file's digest, so the content digest is
    known without the files, which every load then checks against it.

    As :func:`decide_trust` without the directory's own checks. Returns the
    authenticated statement and its content digest.

    Raises:
        VerificationError: too few fit signers, expired, or the content was revoked.
        VtregError: the statement names no sha256 for some file, or ``state`` does
            not hold its name (could not decide).
    """
    signed = authenticate(envelope, state, at=at)
    facts = _signed_facts(signed)
    if state.contents is None or not state.covers(facts.name):
        raise VtregError(f"cannot decide: the trust state does not hold {facts.name}")
    content = state.contents.get(facts.content_digest)
    if content is not None and content.revoked is not None:
        raise PolicyError(
            f"{_label(facts)} ({facts.content_digest}) was {_revoked(content)}; "
            "revocation is final",
            code="content-revoked",
            keyids=facts.keyids,
            subject=facts.subject,
        )
    return signed, facts.content_digest


def _signed_facts(signed: SignedStatement) -> _Signed:
    """What the content checks read of an authenticated statement, its digest computed
    from the sha256 digests it signs (as a capture's, once the files match)."""
    predicate, subjects = signed.predicate, signed.statement.subject
    files = {s.name: s.digest.get("sha256") for s in subjects}
    sha256 = {path: digest for path, digest in files.items() if digest is not None}
    if len(sha256) != len(files):
        raise VtregError("cannot decide: the statement names no sha256 digest for some file")
    return _Signed(
        predicate.name,
        predicate.version,
        predicate.platforms,
        content_digest(predicate.name, predicate.version, sha256),
        signed.signers,
        signed.signature_keyids,
    )


def _check_content(signed: _Signed, state: TrustState, platform: str | None) -> None:
    content = _trusted_content(signed, state)
    _check_signers(signed, content)
    judged = (platform,) if platform in signed.platforms else signed.platforms
    for where in judged:
        _check_rollback(signed, content, state, where)


def decide_trust(tree: PluginTree, state: TrustState, *, at: datetime) -> VerifiedPlugin:
    """Decide whether a captured plugin's content may be trusted (``vtreg trust``).

    As :func:`decide`, except that the content need not be trusted yet and an
    older version may be trusted beside a newer one (loads of it stay refused
    unless it is pinned); content that was revoked stays refused: revocation
    is final.

    Raises:
        VerificationError: the refusal, with its ``code``.
    """
    verified = authenticate(tree.signature, state, at=at).match(tree)
    if state.contents is None or not state.covers(verified.name):
        # Revocation is final: without the name's contents there is no knowing
        # whether this content was revoked.
        raise VtregError(f"cannot decide: the trust state does not hold {verified.name}")
    content = state.contents.get(verified.content_digest)
    if content is not None and content.revoked is not None:
        raise PolicyError(
            f"{_label(verified)} ({verified.content_digest}) was {_revoked(content)}; "
            "revocation is final",
            code="content-revoked",
            keyids=verified.signature_keyids,
            subject=verified.subject,
        )
    return verified


def _label(verified: VerifiedPlugin | _Signed) -> str:
    return f"{verified.name} {verified.version}"


def _revoked(content: TrustedContent) -> str:
    when = f" at {format_time(content.revoked_at)}" if content.revoked_at else ""
    return f"revoked{when} ({content.revoked})"


def _trusted_content(verified: _Signed, state: TrustState) -> TrustedContent:
    if not state.covers(verified.name):
        raise VtregError(f"cannot decide: the trust state does not hold {verified.name}")
    assert state.contents is not None  # noqa: S101 - decide() checked
    content = state.contents.get(verified.content_digest)
    if content is None:
        raise PolicyError(
            f"{_label(verified)} ({verified.content_digest}) is signed but not trusted: "
            "run `vtreg trust` to trust it",
            code="content-not-trusted",
            keyids=verified.keyids,
            subject=verified.subject,
        )
    if content.revoked is not None:
        raise PolicyError(
            f"{_label(verified)} was {_revoked(content)}",
            code="content-revoked",
            keyids=verified.keyids,
            subject=verified.subject,
        )
    return content


def _check_signers(verified: _Signed, content: TrustedContent) -> None:
    if len(verified.signers) < content.threshold:
        raise SignatureError(
            f"signed by {len(verified.signers)}/{content.threshold} trusted keys required "
            f"when {_label(verified)} was trusted",
            code="threshold",
            keyids=verified.keyids,
            subject=verified.subject,
        )


def _check_rollback(
    verified: _Signed, content: TrustedContent, state: TrustState, platform: str
) -> None:
    """Refuse a version below the newest trusted one of its name for ``platform``."""
    floor = state.floors.get((verified.name, platform))
    if floor is None or content.pinned:
        return
    if SemVer.parse(verified.version) < SemVer.parse(floor):
        raise PolicyError(
            f"rollback: {_label(verified)} is older than the trusted {verified.name} {floor} "
            f"for {platform} (trust it with --pin to allow this version)",
            code="rollback",
            keyids=verified.keyids,
            subject=verified.subject,
        )
