"""Check a plugin's signatures and match its directory against what was signed.

Checking is pure: it takes the envelope bytes, a captured tree, trusted keys
and the time, and returns a result or raises. The order is fixed so that
nothing unauthenticated is trusted:

1. parse the envelope and check ``payloadType``;
2. check every signature over ``PAE(payloadType, payload)`` against the
   trusted keys (the envelope's keyid is only a hint of which to try first;
   a signature no trusted key can check does not count), count each key
   once, and only then parse the payload as a statement;
3. drop signers whose key is revoked, expired or out of scope for the
   plugin's name, and require ``threshold`` distinct keys;
4. check expiry, then that the directory holds exactly the signed files
   with the signed digests, and that plugin.json agrees with the statement.

The rules about trusted *contents* (revocation, thresholds, rollback) are
the decision's, in :mod:`vtreg.verifier.decision`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .envelope import (
    PAYLOAD_TYPE,
    TRUSTED_ALGORITHMS,
    Envelope,
    PluginPredicate,
    Statement,
    Subject,
    format_time,
    pae,
    parse_envelope,
    parse_statement,
    trusted_algorithms,
)
from .errors import (
    ContentError,
    ExpiredError,
    FormatError,
    SignatureError,
    UsageError,
    VerificationError,
    VtregError,
)
from .keys import PublicKey
from .layout import MANIFEST_FILE, SIGNATURE_FILE
from .manifest import PluginManifest, parse_manifest
from .platforms import detect_library_platform, library_names
from .status import KEY_PROBLEM_CODES
from .tree import PluginTree, capture, file_set_error, read_signature, size_error
from .trust import TrustedKey, TrustState

__all__ = [
    "SignatureCheck",
    "SignedStatement",
    "VerifiedPlugin",
    "check_tree",
    "content_digest",
    "verify",
    "verify_directory",
    "verify_envelope",
]

_CONTENT_DIGEST_PREFIX = "sha256:"


@dataclass(frozen=True)
class SignatureCheck:
    """What became of one signature in the envelope."""

    keyid_hint: str
    keyid: str | None
    counted: bool
    status: str
    code: str | None = None  # the refusal code of a signature that did not count

    def describe(self) -> str:
        """``<key id prefix>: <status>`` for messages."""
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
        """The signed vtreg predicate: name, version, platform, library, times."""
        return self.statement.predicate

    @property
    def signature_keyids(self) -> tuple[str, ...]:
        """Every trusted key with a valid signature here, counted or not."""
        return tuple(sorted({c.keyid for c in self.checks if c.keyid}))

    @property
    def expected(self) -> dict[str, int | None]:
        """Each signed file's signed length (None throughout for a v1 statement):
        what a capture may read (:func:`~vtreg.verifier.tree.capture`'s ``expect``)."""
        lengths = self.statement.lengths
        return {s.name: lengths[s.name] if lengths else None for s in self.statement.subject}

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The digest algorithms a capture must compute to check this statement."""
        return _required_algorithms(self.statement)

    @property
    def exclude(self) -> tuple[str, ...]:
        """The signed exclude patterns: what a capture leaves out unread."""
        return tuple(self.predicate.exclude or ())

    def match(self, tree: PluginTree) -> VerifiedPlugin:
        """Check the directory against the statement.

        Raises:
            ContentError: a file is missing, extra or changed.
            FormatError: the statement is inconsistent with plugin.json.
            VtregError: the capture lacks a digest the statement names
                (it was made with other algorithms; could not decide).
        """
        try:
            manifest = check_tree(self.statement, tree)
        except VerificationError as e:
            # File the refusal under the signed name, not the one a tampered
            # plugin.json claims, and say whose valid signature it carried.
            e.keyids = e.keyids or self.signature_keyids
            e.subject = e.subject or (self.predicate.name, self.predicate.version, None)
            raise
        predicate = self.predicate
        sha256 = {p: f.digests["sha256"] for p, f in tree.files.items()}
        return VerifiedPlugin(
            name=predicate.name,
            version=predicate.version,
            abi_version=predicate.abi_version,
            platform=predicate.platform,
            library=predicate.library,
            libraries=predicate.platform_libraries,
            exclude=tuple(predicate.exclude or ()),
            content_digest=content_digest(predicate.name, predicate.version, sha256),
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
    # Every signed platform's library ({platform: file}); platform/library is one of them
    # (for a loaded plugin: the one this host loads).
    libraries: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms the plugin carries a library for, sorted."""
        return tuple(sorted(self.libraries or {self.platform: self.library}))

    @property
    def signature_keyids(self) -> tuple[str, ...]:
        """Every trusted key with a valid signature here, counted or not (revoked, expired...)."""
        return tuple(sorted({c.keyid for c in self.checks if c.keyid}))

    @property
    def subject(self) -> tuple[str, str, str]:
        """(name, version, content digest): what a refusal after verification names."""
        return self.name, self.version, self.content_digest

    def summary(self) -> dict[str, object]:
        """A JSON-ready description (no envelope bytes)."""
        return {
            "name": self.name,
            "version": self.version,
            "abi_version": self.abi_version,
            "platform": self.platform,
            "library": self.library,
            "platforms": list(self.platforms),
            "libraries": dict(sorted((self.libraries or {self.platform: self.library}).items())),
            "exclude": list(self.exclude),
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
    return _content_digest(name, version, tuple(sorted(files.items())))


# A load computes it from the statement (to pick the trust record) and again from the
# capture, whose digests are the statement's once they match: the same arguments.
@functools.lru_cache(maxsize=64)
def _content_digest(name: str, version: str, files: tuple[tuple[str, str], ...]) -> str:
    doc = {"files": dict(files), "name": name, "version": version}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _CONTENT_DIGEST_PREFIX + hashlib.sha256(canonical.encode("ascii")).hexdigest()


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
        SignatureError: unsigned, or fewer than ``threshold`` trusted keys signed
            (code ``unsigned``, ``unknown-key``, ``bad-signature``, ``threshold``,
            or the key problem that left too few: ``key-revoked``...).
        FormatError: malformed envelope or statement, wrong payloadType.
        ExpiredError: the signature's ``expires`` has passed.
    """
    if threshold < 1:
        raise UsageError(f"threshold must be at least 1, got {threshold}")
    if envelope is None:
        raise SignatureError(f"unsigned: there is no {SIGNATURE_FILE}", code="unsigned")
    parsed = parse_envelope(envelope)
    if parsed.payloadType != PAYLOAD_TYPE:
        raise FormatError(f"payloadType is {parsed.payloadType!r}, expected {PAYLOAD_TYPE!r}")
    payload = parsed.payload_bytes()
    matched = _match_signatures(parsed, payload, TrustState.of_keys(keys).keys)
    checks, counted = _tally(matched, lambda key: None)
    if len(counted) < threshold:
        raise _threshold_error(checks, counted, threshold)
    # Only now is the payload known to come from keys we trust; parse it, then
    # drop signers that may not vouch for this plugin's name at this time.
    statement = parse_statement(payload)
    predicate = statement.predicate
    signed = (predicate.name, predicate.version, None)
    checks, counted = _tally(matched, lambda key: key.problem(predicate.name, at))
    if len(counted) < threshold:
        raise _threshold_error(checks, counted, threshold, subject=signed)
    if predicate.expires is not None and at >= predicate.expires:
        raise ExpiredError(
            f"signature expired at {format_time(predicate.expires)} (now {format_time(at)})",
            keyids=tuple(sorted(counted)),
            subject=signed,
        )
    return SignedStatement(envelope, payload, statement, tuple(sorted(counted)), tuple(checks))


# (keyid hint, the trusted key whose signature verified or None, status, refusal code)
_Match = tuple[str, TrustedKey | None, str, str | None]


def _tally(
    matched: list[_Match], problem_of: Callable[[TrustedKey], tuple[str, str] | None]
) -> tuple[list[SignatureCheck], list[str]]:
    """Each signature's fate, and the distinct keys that count (each key once)."""
    checks: list[SignatureCheck] = []
    counted: list[str] = []
    for hint, key, status, code in matched:
        if key is None:
            checks.append(SignatureCheck(hint, None, counted=False, status=status, code=code))
            continue
        problem = problem_of(key)
        if problem is None and key.keyid in counted:
            problem = "threshold", "same key signed again; it counts once"
        if problem is None:
            counted.append(key.keyid)
            checks.append(SignatureCheck(hint, key.keyid, counted=True, status="valid"))
        else:
            checks.append(SignatureCheck(hint, key.keyid, False, problem[1], problem[0]))
    return checks, counted


# Which refusal a shortfall is reported as, when several signatures fell short.
_CODE_ORDER = (*KEY_PROBLEM_CODES, "bad-signature", "unknown-key")


def _threshold_error(
    checks: list[SignatureCheck],
    counted: list[str],
    threshold: int,
    subject: tuple[str, str, None] | None = None,
) -> SignatureError:
    detail = "; ".join(c.describe() for c in checks)
    valid = tuple(sorted({c.keyid for c in checks if c.keyid}))
    codes = {c.code for c in checks}
    # A key problem that cost a valid signature explains the shortfall; with some
    # valid signatures and no such problem, too few keys signed.
    code = next((c for c in _CODE_ORDER[:3] if c in codes), None)
    if code is None:
        code = "threshold" if valid else next((c for c in _CODE_ORDER if c in codes), "unknown-key")
    return SignatureError(
        f"signed by {len(counted)}/{threshold} required trusted keys ({detail})",
        code=code,
        keyids=valid,
        subject=subject,
    )


def _match_signatures(
    envelope: Envelope, payload: bytes, trusted: Mapping[str, TrustedKey]
) -> list[_Match]:
    message = pae(envelope.payloadType, payload)
    results: list[_Match] = []
    for entry in envelope.signatures:
        signature = entry.signature_bytes()
        # DSSE: the keyid "MUST NOT be used for security decisions". It only says
        # which key to try first; then every other trusted key is tried, and only
        # the cryptography decides (each key still counts once: see _tally). A
        # signature that no trusted key can check (another algorithm, say) does
        # not count, and refuses nothing.
        hinted = trusted.get(entry.keyid)
        candidates = [hinted] if hinted else []
        candidates += [k for k in trusted.values() if k is not hinted]
        key = next((k for k in candidates if k.key.verify(signature, message)), None)
        if key is not None:
            results.append((entry.keyid, key, "valid", None))
        elif hinted is not None:
            results.append((entry.keyid, None, "bad signature", "bad-signature"))
        else:
            results.append((entry.keyid, None, "not signed by a trusted key", "unknown-key"))
    return results


def _required_algorithms(statement: Statement) -> tuple[str, ...]:
    needed = {"sha256"}  # always: the content digest is defined over sha256
    for subject in statement.subject:
        needed.update(trusted_algorithms(subject))
    return tuple(a for a in TRUSTED_ALGORITHMS if a in needed)


def check_tree(statement: Statement, tree: PluginTree) -> PluginManifest:
    """Check that ``tree`` holds exactly the files ``statement`` signed, and plugin.json agrees.

    Returns:
        The parsed plugin.json.

    Raises:
        ContentError: a file is missing (``file-missing``), extra (``file-added``)
            or changed (``digest-mismatch``).
        FormatError: a subject without a trusted digest, or plugin.json that
            contradicts the statement.
        VtregError: the capture lacks a digest algorithm the statement names.
    """
    needed = _required_algorithms(statement)
    if not set(needed) <= tree.algorithms:
        missing = ", ".join(sorted(set(needed) - tree.algorithms))
        raise VtregError(f"cannot decide: the capture of {tree.root} has no {missing} digests")
    if tuple(tree.exclude) != tuple(statement.predicate.exclude or ()):
        raise VtregError(
            f"cannot decide: {tree.root} was captured leaving out other paths than signed"
        )
    subjects: dict[str, Subject] = {s.name: s for s in statement.subject}
    _check_file_set(subjects, tree)
    lengths = statement.lengths or {}
    for name, subject in subjects.items():
        captured = tree.files[name]
        if name in lengths and captured.size != lengths[name]:
            raise size_error(name, captured.size, lengths[name])
        _check_digests(name, subject, captured.digests)
    if tree.manifest is None:
        raise FormatError(f"the signed statement does not cover {MANIFEST_FILE}")
    manifest = parse_manifest(tree.manifest)
    _check_consistent(statement.predicate, manifest, tree)
    return manifest


def _check_file_set(subjects: Mapping[str, Subject], tree: PluginTree) -> None:
    error = file_set_error(subjects, tree.files)
    if error is not None:
        raise error


def _check_digests(name: str, subject: Subject, captured: Mapping[str, str]) -> None:
    algorithms = trusted_algorithms(subject)
    if not algorithms:
        raise FormatError(
            f"{name} has no trusted digest (found {', '.join(sorted(subject.digest))}; "
            f"expected one of {', '.join(TRUSTED_ALGORITHMS)})"
        )
    for algorithm in algorithms:
        if captured[algorithm] != subject.digest[algorithm]:
            raise ContentError(
                f"digest of {name} is {algorithm}:{captured[algorithm][:16]}…, "
                f"signed {algorithm}:{subject.digest[algorithm][:16]}…"
            )


def _check_consistent(
    predicate: PluginPredicate, manifest: PluginManifest, tree: PluginTree
) -> None:
    for field_name in ("name", "version", "abi_version"):
        signed, found = getattr(predicate, field_name), getattr(manifest, field_name)
        if signed != found:
            raise FormatError(
                f"the signature says {field_name} {signed!r} but {MANIFEST_FILE} says {found!r}"
            )
    for platform, name in predicate.platform_libraries.items():
        _check_library(predicate.name, platform, name, tree)


def _check_library(plugin: str, platform: str, name: str, tree: PluginTree) -> None:
    """The signed library of ``platform`` is named as that platform expects and built for it."""
    expected = library_names(plugin, platform)
    if name not in expected:
        raise FormatError(
            f"signed library is {name!r}; {platform} expects " + " or ".join(map(repr, expected))
        )
    library = tree.files.get(name)
    if library is None:
        raise FormatError(f"signed library {name} is not among the signed files")
    built_for = detect_library_platform(library.head)
    if built_for != platform:
        raise FormatError(
            f"the signature says platform {platform} but {name} is built for {built_for}"
        )


def verify(
    tree: PluginTree,
    keys: Iterable[TrustedKey | PublicKey],
    *,
    at: datetime,
    threshold: int = 1,
) -> VerifiedPlugin:
    """Verify a captured plugin directory against trusted keys alone (no registry).

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
) -> VerifiedPlugin:
    """Check plugin.sig against ``keys`` first, then capture what it signed and :func:`verify` it.

    Raises:
        VerificationError: any refusal.
        NotFoundError: the directory cannot be read.
    """
    signed = verify_envelope(read_signature(path), keys, at=at, threshold=threshold)
    tree = capture(
        path, expect=signed.expected, algorithms=signed.algorithms, exclude=signed.exclude
    )
    return verify(tree, keys, at=at, threshold=threshold)
