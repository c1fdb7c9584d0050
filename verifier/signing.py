"""Sign a captured plugin directory: a new statement, or a co-signature on the existing one.

Signing is pure like verifying: it takes a captured tree, a signing key and
the time, and returns the new plugin.sig bytes; writing them is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pydantic

from ._json import first_error
from .envelope import (
    MAX_SIGNATURES,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Envelope,
    PluginPredicate,
    Statement,
    Subject,
    encode_envelope,
    format_time,
    pae,
    parse_envelope,
    parse_statement,
)
from .errors import FormatError, UsageError, VtregError
from .exclude import check_not_hiding
from .keyrefs import Signer
from .layout import MANIFEST_FILE, MAX_SIGNATURE_BYTES, SIGNATURE_FILE
from .manifest import PluginManifest, parse_manifest
from .platforms import (
    UNKNOWN_PLATFORM,
    detect_library_platform,
    library_candidates,
    library_names,
    library_names_by_family,
)
from .signatures import check_tree, content_digest
from .tree import PluginTree

__all__ = ["SignResult", "find_libraries", "sign"]


@dataclass(frozen=True)
class SignResult:
    """The new plugin.sig and what happened to any signatures already there."""

    envelope: bytes
    content_digest: str
    signatures: int
    cosigned: bool
    replaced: bool
    already_signed: bool


def find_libraries(tree: PluginTree, name: str) -> dict[str, str]:
    """Each platform's library in the directory ({platform: file}, sorted): per OS family
    the first of VT Code's names present, checked to be built for a platform of it.

    Raises:
        FormatError: no library at all, or one not built for a platform its name fits.
    """
    found: dict[str, str] = {}
    for names in library_names_by_family(name).values():
        library = next((n for n in names if n in tree.files), None)
        if library is None:
            continue
        platform = detect_library_platform(tree.files[library].head)
        if platform == UNKNOWN_PLATFORM:
            raise FormatError(f"{library} is not a shared library for a known platform")
        if library not in library_names(name, platform):
            raise FormatError(
                f"{library} is a {platform} library; that platform expects "
                f"{' or '.join(library_names(name, platform))}"
            )
        found[platform] = library
    if not found:
        expected = " or ".join(library_candidates(name))
        raise FormatError(f"expected a library named {expected} in {tree.root}, found none")
    return dict(sorted(found.items()))


def sign(
    tree: PluginTree,
    key: Signer,
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
    _check_exclusions(tree, (MANIFEST_FILE,))
    if tree.manifest is None:
        raise FormatError(f"{tree.root} has no {MANIFEST_FILE}")
    manifest = parse_manifest(tree.manifest)
    _check_exclusions(tree, library_candidates(manifest.name))
    libraries = find_libraries(tree, manifest.name)
    digest = content_digest(
        manifest.name, manifest.version, {p: f.digests["sha256"] for p, f in tree.files.items()}
    )

    existing = None if fresh else _cosignable(tree)
    if existing is not None:
        return _cosign(tree, key, existing, expires, digest)
    statement = _new_statement(tree, manifest, libraries, at, expires)
    payload = statement.to_payload()
    sig = key.sign(pae(PAYLOAD_TYPE, payload))
    envelope_bytes = _readable(tree, encode_envelope(PAYLOAD_TYPE, payload, [(key.keyid, sig)]))
    return SignResult(envelope_bytes, digest, 1, False, tree.signature is not None, False)


def _new_statement(
    tree: PluginTree,
    manifest: PluginManifest,
    libraries: dict[str, str],
    at: datetime,
    expires: datetime | None,
) -> Statement:
    # platform/library: the first platform's, in sorted order (what a single-platform
    # directory says alone, and a reader that knows only these fields sees).
    platform, library = next(iter(libraries.items()))
    try:
        return Statement(
            type=STATEMENT_TYPE,
            subject=[
                Subject(name=p, digest={"sha256": f.digests["sha256"]})
                for p, f in tree.files.items()
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
                lengths={p: f.size for p, f in tree.files.items()},
                libraries=libraries if len(libraries) > 1 else None,
                exclude=list(tree.exclude) or None,
            ),
        )
    except pydantic.ValidationError as e:  # a path no statement may name, say
        raise FormatError(f"cannot sign {tree.root}: {first_error(e)}") from e


def _check_exclusions(tree: PluginTree, must_sign: tuple[str, ...]) -> None:
    """Refuse a capture whose exclusions leave out one of ``must_sign`` (plugin.json, the
    plugin's library names), or any file named like a shared library (a dependency)."""
    try:
        check_not_hiding(tree.exclude, must_sign, list(tree.excluded))
    except ValueError as e:
        raise FormatError(str(e), code="exclude-unsafe") from e


def _readable(tree: PluginTree, envelope: bytes) -> bytes:
    """``envelope``, once it is known that verify will read it (never write what it refuses)."""
    if len(envelope) > MAX_SIGNATURE_BYTES:
        raise FormatError(
            f"the signature of {tree.root} would be {len(envelope):,} bytes, more than the "
            f"{MAX_SIGNATURE_BYTES:,} a verifier reads ({len(tree.files):,} files are signed); "
            "ship fewer files, e.g. one archive"
        )
    return envelope


def _cosign(
    tree: PluginTree,
    key: Signer,
    existing: tuple[Envelope, bytes, Statement],
    expires: datetime | None,
    digest: str,
) -> SignResult:
    """Add ``key``'s signature to the existing envelope, its payload kept byte for byte."""
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
    envelope_bytes = _readable(tree, encode_envelope(PAYLOAD_TYPE, payload, pairs))
    return SignResult(envelope_bytes, digest, len(pairs), True, False, False)


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
        check_tree(statement, tree)
    except VtregError:
        return None
    if statement.lengths is None:
        return None  # a v1 statement, which loaders refuse: sign a v2 one instead
    return envelope, payload, statement
