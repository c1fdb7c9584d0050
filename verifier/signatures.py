"""Sign and verify plugin directories.

Verification is pure: it takes the envelope bytes, a captured tree, trusted
keys and the time, and returns a :class:`VerifiedPlugin` or raises. The order
is fixed so that nothing unauthenticated is trusted:

1. parse the envelope and check ``payloadType``;
2. check every signature over ``PAE(payloadType, payload)`` against the
   trusted keys (the envelope's keyid is only a hint), count each key once,
   and only then parse the payload as a statement;
3. drop signers whose key is revoked, expired or out of scope for the
   plugin's name, and require ``threshold`` distinct keys;
4. check expiry, then that the directory holds exactly the signed files
   with the signed digests, and that plugin.json agrees with the statement.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from .envelope import (
    MAX_SIGNATURES,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    TRUSTED_ALGORITHMS,
    Envelope,
    PluginPredicate,
    Statement,
    Subject,
    encode_envelope,
    format_time,
    pae,
    parse_envelope,
    parse_statement,
    trusted_algorithms,
)
from .errors import (
    ContentError,
    DigestsMissingError,
    ExpiredError,
    FormatError,
    SignatureError,
    UsageError,
    VerificationError,
    VtregError,
)
from .keys import PublicKey, SigningKey
from .layout import MANIFEST_FILE, SIGNATURE_FILE
from .manifest import PluginManifest, parse_manifest
from .platforms import (
    UNKNOWN_PLATFORM,
    detect_library_platform,
    library_candidates,
    library_filename,
)
from .tree import PluginTree, capture

__all__ = [
    "SignResult",
    "SignatureCheck",
    "SignedStatement",
    "TrustedKey",
    "VerifiedPlugin",
    "content_digest",
    "sign",
    "verify",
    "verify_directory",
    "verify_envelope",
    "with_required_digests",
]

_CONTENT_DIGEST_PREFIX = "sha256:"
T = TypeVar("T")


@dataclass(frozen=True)
class TrustedKey:
    """A public key as a verifier trusts it: optionally scoped, expiring or revoked.

    ``scopes`` are glob patterns over plugin names (empty: any name). A revoked
    key never counts, whatever the signature's claimed time: ``signed_at`` is
    written by the signer and proves nothing once the key is compromised.
    """

    key: PublicKey
    scopes: tuple[str, ...] = ()
    expires: datetime | None = None
    revoked: str | None = None

    @property
    def keyid(self) -> str:
        return self.key.keyid

    def problem(self, plugin_name: str, at: datetime) -> str | None:
        """Why this key may not vouch for ``plugin_name`` at ``at``, or None."""
        if self.revoked is not None:
            return f"key revoked ({self.revoked})"
        if self.expires is not None and at >= self.expires:
            return f"key expired at {format_time(self.expires)}"
        if self.scopes and not any(fnmatch.fnmatchcase(plugin_name, p) for p in self.scopes):
            return f"key may not sign {plugin_name!r} (scope: {', '.join(self.scopes)})"
        return None


@dataclass(frozen=True)
class SignatureCheck:
    """What became of one signature in the envelope."""

    keyid_hint: str
    keyid: str | None
    counted: bool
    status: str

    def describe(self) -> str:
        who = (self.keyid or self.keyid_hint or "no keyid")[:16]
        return f"{who}: {self.status}"


@dataclass(frozen=True)
class SignedStatement:
    """An envelope whose signatures met the threshold: the statement is authentic."""

    envelope: bytes
    payload: bytes
    statement: Statement
    signers: tuple[str, ...]
    checks: tuple[SignatureCheck, ...]

    @property
    def predicate(self) -> PluginPredicate:
        return self.statement.predicate

    @property
    def required_algorithms(self) -> tuple[str, ...]:
        """Every trusted algorithm named by any subject (sha256 always included)."""
        return _required_algorithms(self.statement)

    def match(self, tree: PluginTree) -> VerifiedPlugin:
        """Check the directory against the statement.

        Raises:
            ContentError: a file is missing, extra or changed.
            FormatError: the statement is inconsistent with plugin.json.
        """
        try:
            manifest = _check_tree(self.statement, tree)
        except VerificationError as e:
            # Say whose valid signature this refused directory carried.
            e.keyids = e.keyids or tuple(sorted({c.keyid for c in self.checks if c.keyid}))
            raise
        predicate = self.predicate
        return VerifiedPlugin(
            name=predicate.name,
            version=predicate.version,
            abi_version=predicate.abi_version,
            platform=predicate.platform,
            library=predicate.library,
            content_digest=content_digest(
                predicate.name,
                predicate.version,
                {p: f.digests["sha256"] for p, f in tree.files.items()},
            ),
            signers=self.signers,
            checks=self.checks,
            files={p: dict(f.digests) for p, f in tree.files.items()},
            signed_at=predicate.signed_at,
            expires=predicate.expires,
            manifest=manifest,
            envelope=self.envelope,
            payload=self.payload,
        )


@dataclass(frozen=True)
class VerifiedPlugin:
    """A plugin directory whose content matches a statement signed by enough trusted keys."""

    name: str
    version: str
    abi_version: int
    platform: str
    library: str
    content_digest: str
    signers: tuple[str, ...]
    checks: tuple[SignatureCheck, ...]
    files: Mapping[str, Mapping[str, str]]
    signed_at: datetime
    expires: datetime | None
    manifest: PluginManifest
    envelope: bytes = field(repr=False)
    payload: bytes = field(repr=False)

    @property
    def signature_keyids(self) -> tuple[str, ...]:
        """Every trusted key with a valid signature here, counted or not (revoked, expired...)."""
        return tuple(sorted({c.keyid for c in self.checks if c.keyid}))

    def summary(self) -> dict[str, object]:
        """A JSON-ready description (no envelope bytes)."""
        return {
            "name": self.name,
            "version": self.version,
            "abi_version": self.abi_version,
            "platform": self.platform,
            "library": self.library,
            "content_digest": self.content_digest,
            "signers": list(self.signers),
            "signed_at": format_time(self.signed_at),
            "expires": format_time(self.expires) if self.expires else None,
            "files": {p: d["sha256"] for p, d in self.files.items()},
        }


def content_digest(name: str, version: str, files: Mapping[str, str]) -> str:
    """The plugin's content digest: what exactly was signed, independent of who signed.

    SHA-256 over the canonical JSON ``{"files": {path: sha256}, "name", "version"}``
    (sorted keys, no spaces, ASCII). Signing time, expiry and signatures are
    not part of it, so a co-signature does not change it.
    """
    doc = {"files": dict(sorted(files.items())), "name": name, "version": version}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _CONTENT_DIGEST_PREFIX + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _as_trusted(keys: Iterable[TrustedKey | PublicKey]) -> dict[str, TrustedKey]:
    trusted: dict[str, TrustedKey] = {}
    for key in keys:
        entry = key if isinstance(key, TrustedKey) else TrustedKey(key)
        trusted.setdefault(entry.keyid, entry)
    return trusted


def verify_envelope(
    envelope: bytes | None,
    keys: Iterable[TrustedKey | PublicKey],
    *,
    at: datetime,
    threshold: int = 1,
) -> SignedStatement:
    """Check an envelope's signatures and expiry; parse its statement.

    Args:
        envelope: plugin.sig bytes (None: the plugin is unsigned).
        keys: the keys the caller trusts, with their scope/expiry/revocation.
        at: the time to judge expiry at.
        threshold: how many distinct trusted keys must have signed.

    Returns:
        The authenticated statement and who signed it.

    Raises:
        SignatureError: unsigned, or fewer than ``threshold`` trusted keys signed.
        FormatError: malformed envelope or statement, wrong payloadType.
        ExpiredError: the signature's ``expires`` has passed.
    """
    if threshold < 1:
        raise UsageError(f"threshold must be at least 1, got {threshold}")
    if envelope is None:
        raise SignatureError(f"unsigned: there is no {SIGNATURE_FILE}")
    parsed = parse_envelope(envelope)
    if parsed.payloadType != PAYLOAD_TYPE:
        raise FormatError(f"payloadType is {parsed.payloadType!r}, expected {PAYLOAD_TYPE!r}")
    payload = parsed.payload_bytes()
    matched = _match_signatures(parsed, payload, _as_trusted(keys))
    checks, counted = _tally(matched, lambda key: None)
    if len(counted) < threshold:
        raise _threshold_error(checks, counted, threshold)
    # Only now is the payload known to come from keys we trust; parse it, then
    # drop signers that may not vouch for this plugin's name at this time.
    statement = parse_statement(payload)
    predicate = statement.predicate
    checks, counted = _tally(matched, lambda key: key.problem(predicate.name, at))
    if len(counted) < threshold:
        raise _threshold_error(checks, counted, threshold)
    if predicate.expires is not None and at >= predicate.expires:
        raise ExpiredError(
            f"signature expired at {format_time(predicate.expires)} (now {format_time(at)})"
        )
    return SignedStatement(envelope, payload, statement, tuple(sorted(counted)), tuple(checks))


_Match = tuple[str, TrustedKey | None, str]


def _tally(
    matched: list[_Match], problem_of: Callable[[TrustedKey], str | None]
) -> tuple[list[SignatureCheck], list[str]]:
    """Each signature's fate, and the distinct keys that count (each key once)."""
    checks: list[SignatureCheck] = []
    counted: list[str] = []
    for hint, key, status in matched:
        if key is None:
            checks.append(SignatureCheck(hint, None, counted=False, status=status))
            continue
        problem = problem_of(key)
        if problem is None and key.keyid in counted:
            problem = "same key signed again; it counts once"
        if problem is None:
            counted.append(key.keyid)
        checks.append(SignatureCheck(hint, key.keyid, problem is None, problem or "valid"))
    return checks, counted


def _threshold_error(
    checks: list[SignatureCheck], counted: list[str], threshold: int
) -> SignatureError:
    detail = "; ".join(c.describe() for c in checks)
    valid = tuple(sorted({c.keyid for c in checks if c.keyid}))
    return SignatureError(
        f"signed by {len(counted)}/{threshold} required trusted keys ({detail})", keyids=valid
    )


def _match_signatures(
    envelope: Envelope, payload: bytes, trusted: dict[str, TrustedKey]
) -> list[_Match]:
    message = pae(envelope.payloadType, payload)
    results: list[_Match] = []
    for entry in envelope.signatures:
        signature = entry.signature_bytes()
        # The keyid is an unauthenticated hint: try the key it names first, then
        # every other trusted key, and let only the cryptography decide.
        hinted = trusted.get(entry.keyid)
        candidates = [hinted] if hinted else []
        candidates += [k for k in trusted.values() if k is not hinted]
        key = next((k for k in candidates if k.key.verify(signature, message)), None)
        if key is not None and entry.keyid and entry.keyid != key.keyid:
            # A hint that names another key is not trusted for anything, but an
            # envelope contradicting itself is refused rather than half-believed.
            results.append(
                (entry.keyid, None, f"keyid does not match the key that signed ({key.keyid[:16]})")
            )
        elif key is not None:
            results.append((entry.keyid, key, "valid"))
        elif hinted is not None:
            results.append((entry.keyid, None, "bad signature"))
        else:
            results.append((entry.keyid, None, "not signed by a trusted key"))
    return results


def _required_algorithms(statement: Statement) -> tuple[str, ...]:
    needed = {"sha256"}  # always: the content digest is defined over sha256
    for subject in statement.subject:
        needed.update(trusted_algorithms(subject))
    return tuple(a for a in TRUSTED_ALGORITHMS if a in needed)


def _check_tree(statement: Statement, tree: PluginTree) -> PluginManifest:
    needed = _required_algorithms(statement)
    if not set(needed) <= tree.algorithms:
        raise DigestsMissingError(needed)
    subjects: dict[str, Subject] = {s.name: s for s in statement.subject}
    missing = sorted(set(subjects) - set(tree.files))
    if missing:
        raise ContentError(
            f"{_few(missing)} {'is' if len(missing) == 1 else 'are'} signed but missing "
            "from the directory"
        )
    extra = sorted(set(tree.files) - set(subjects))
    if extra:
        raise ContentError(f"{_few(extra)} not covered by the signature (added after signing?)")
    for name, subject in subjects.items():
        algorithms = trusted_algorithms(subject)
        if not algorithms:
            raise FormatError(
                f"{name} has no trusted digest (found {', '.join(sorted(subject.digest))}; "
                f"expected one of {', '.join(TRUSTED_ALGORITHMS)})"
            )
        captured = tree.files[name].digests
        for algorithm in algorithms:
            if captured[algorithm] != subject.digest[algorithm]:
                raise ContentError(
                    f"digest of {name} is {algorithm}:{captured[algorithm][:16]}…, "
                    f"signed {algorithm}:{subject.digest[algorithm][:16]}…"
                )
    if tree.manifest is None:
        raise FormatError(f"the signed statement does not cover {MANIFEST_FILE}")
    manifest = parse_manifest(tree.manifest)
    _check_consistent(statement.predicate, manifest, tree)
    return manifest


def _check_consistent(
    predicate: PluginPredicate, manifest: PluginManifest, tree: PluginTree
) -> None:
    for field_name in ("name", "version", "abi_version"):
        signed, found = getattr(predicate, field_name), getattr(manifest, field_name)
        if signed != found:
            raise FormatError(
                f"the signature says {field_name} {signed!r} but {MANIFEST_FILE} says {found!r}"
            )
    expected = library_filename(predicate.name, predicate.platform)
    if predicate.library != expected:
        raise FormatError(
            f"signed library is {predicate.library!r}; {predicate.platform} expects {expected!r}"
        )
    library = tree.files.get(predicate.library)
    if library is None:
        raise FormatError(f"signed library {predicate.library} is not among the signed files")
    built_for = detect_library_platform(library.head)
    if built_for != predicate.platform:
        raise FormatError(
            f"the signature says platform {predicate.platform} but {predicate.library} "
            f"is built for {built_for}"
        )


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def verify(
    tree: PluginTree,
    keys: Iterable[TrustedKey | PublicKey],
    *,
    at: datetime,
    threshold: int = 1,
) -> VerifiedPlugin:
    """Verify a captured plugin directory against trusted keys.

    Args:
        tree: the captured directory; its plugin.sig is the envelope checked.
        keys: trusted keys.
        at: the time to judge key and signature expiry at.
        threshold: distinct trusted keys required.

    Returns:
        The verified plugin.

    Raises:
        VerificationError: any refusal (see :func:`verify_envelope` and
            :meth:`SignedStatement.match`).
    """
    signed = verify_envelope(tree.signature, keys, at=at, threshold=threshold)
    return signed.match(tree)


def verify_directory(
    path: str,
    keys: Iterable[TrustedKey | PublicKey],
    *,
    at: datetime,
    threshold: int = 1,
    tree: PluginTree | None = None,
) -> VerifiedPlugin:
    """Capture (unless ``tree`` is given) and verify a plugin directory.

    If the statement names trusted algorithms the capture did not compute,
    the directory is captured again with them.
    """
    trusted = list(keys)
    return with_required_digests(
        path, lambda t: verify(t, trusted, at=at, threshold=threshold), tree=tree
    )


def with_required_digests(
    path: str, decide: Callable[[PluginTree], T], *, tree: PluginTree | None = None
) -> T:
    """Run ``decide`` on a capture of ``path``; capture again if it needs more digests."""
    try:
        return decide(tree if tree is not None else capture(path))
    except DigestsMissingError as e:
        return decide(capture(path, algorithms=e.algorithms))


# --- signing ---


@dataclass(frozen=True)
class SignResult:
    """The new plugin.sig and what happened to any signatures already there."""

    envelope: bytes
    content_digest: str
    signatures: int
    cosigned: bool
    replaced: bool
    already_signed: bool


def _find_library(tree: PluginTree, name: str) -> tuple[str, str]:
    found = [c for c in library_candidates(name) if c in tree.files]
    if len(found) != 1:
        expected = " or ".join(library_candidates(name))
        raise FormatError(
            f"expected exactly one library named {expected} in {tree.root}, found {len(found)}"
        )
    library = found[0]
    platform = detect_library_platform(tree.files[library].head)
    if platform == UNKNOWN_PLATFORM:
        raise FormatError(f"{library} is not a shared library for a known platform")
    if library != library_filename(name, platform):
        raise FormatError(
            f"{library} is a {platform} library; that platform expects "
            f"{library_filename(name, platform)}"
        )
    return library, platform


def sign(
    tree: PluginTree,
    key: SigningKey,
    *,
    at: datetime,
    expires: datetime | None = None,
    fresh: bool = False,
) -> SignResult:
    """Sign a captured plugin directory, co-signing its existing envelope if possible.

    If the directory already carries a plugin.sig whose statement still
    matches the directory, the new signature is added to it (the payload is
    kept byte for byte, so the content digest and earlier signatures stay
    valid). Otherwise, or with ``fresh``, a new statement is signed and
    earlier signatures are dropped.

    Raises:
        FormatError: plugin.json is invalid or the library is missing/unknown.
        UsageError: ``expires`` is not after ``at``, or differs from the
            expiry of the envelope being co-signed.
    """
    if expires is not None and expires <= at:
        raise UsageError(f"expiry {format_time(expires)} is not in the future")
    if tree.manifest is None:
        raise FormatError(f"{tree.root} has no {MANIFEST_FILE}")
    manifest = parse_manifest(tree.manifest)
    library, platform = _find_library(tree, manifest.name)
    digest = content_digest(
        manifest.name, manifest.version, {p: f.digests["sha256"] for p, f in tree.files.items()}
    )

    existing = None if fresh else _cosignable(tree)
    if existing is not None:
        envelope, payload, statement = existing
        signed_expiry = statement.predicate.expires
        if expires is not None and expires != signed_expiry:
            shown = format_time(signed_expiry) if signed_expiry else "never"
            raise UsageError(
                f"the existing signature sets expires={shown}; a co-signature signs the same "
                "statement and cannot change it"
            )
        message = pae(PAYLOAD_TYPE, payload)
        pairs = [(s.keyid, s.signature_bytes()) for s in envelope.signatures]
        if any(key.public_key.verify(sig, message) for _, sig in pairs):
            return SignResult(tree.signature or b"", digest, len(pairs), False, False, True)
        if len(pairs) >= MAX_SIGNATURES:
            raise UsageError(
                f"{SIGNATURE_FILE} already carries {len(pairs)} signatures, the most an envelope "
                "may hold; sign a fresh statement instead (vtreg sign --fresh)"
            )
        pairs.append((key.keyid, key.sign(message)))
        return SignResult(
            encode_envelope(PAYLOAD_TYPE, payload, pairs), digest, len(pairs), True, False, False
        )

    statement = Statement(
        type=STATEMENT_TYPE,
        subject=[
            Subject(name=p, digest={"sha256": f.digests["sha256"]}) for p, f in tree.files.items()
        ],
        predicateType=PREDICATE_TYPE,
        predicate=PluginPredicate(
            name=manifest.name,
            version=manifest.version,
            abi_version=manifest.abi_version,
            platform=platform,
            library=library,
            signed_at=at,
            expires=expires,
        ),
    )
    payload = statement.to_payload()
    sig = key.sign(pae(PAYLOAD_TYPE, payload))
    envelope_bytes = encode_envelope(PAYLOAD_TYPE, payload, [(key.keyid, sig)])
    return SignResult(envelope_bytes, digest, 1, False, tree.signature is not None, False)


def _cosignable(tree: PluginTree) -> tuple[Envelope, bytes, Statement] | None:
    """The existing envelope, if it is well-formed and still describes the directory."""
    if tree.signature is None:
        return None
    try:
        envelope = parse_envelope(tree.signature)
        if envelope.payloadType != PAYLOAD_TYPE:
            return None
        payload = envelope.payload_bytes()
        statement = parse_statement(payload)
        _check_tree(statement, tree)
    except VtregError:
        return None
    return envelope, payload, statement
