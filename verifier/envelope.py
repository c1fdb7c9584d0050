"""DSSE envelopes carrying an in-toto Statement v1 about a native plugin.

Signatures are over ``PAE(payloadType, payload)``, the DSSE pre-authentication
encoding of the *raw payload bytes*; nothing is ever re-serialised before
verifying. The statement is parsed only from payload bytes whose signature
has been checked (see :mod:`verifier.signatures`).

DSSE and in-toto v1 say consumers MUST ignore fields they do not know, so the
envelope, its signature entries, the Statement and its subjects (in-toto
ResourceDescriptors, with ``uri``, ``mediaType``, ``annotations``...) ignore
them. The predicate is ours and versioned by its URI: it forbids them.
Duplicate keys are refused everywhere (:mod:`vtreg.verifier._json`).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictStr,
    model_validator,
)

from ._base64 import decode_canonical
from ._json import load_model
from .errors import FormatError
from .exclude import MAX_EXCLUDES, check_exclude_pattern, excluded_paths
from .layout import MAX_SIGNATURE_BYTES, SIGNATURE_FILE, TRUSTED_ALGORITHMS
from .manifest import IntegralNumber, PluginName, SemVerStr
from .times import format_time

__all__ = [
    "MAX_SIGNATURES",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "PREDICATE_TYPE_V1",
    "STATEMENT_TYPE",
    "TRUSTED_ALGORITHMS",
    "Envelope",
    "EnvelopeSignature",
    "PluginPredicate",
    "Statement",
    "Subject",
    "b64decode",
    "b64encode",
    "encode_envelope",
    "format_time",
    "pae",
    "parse_envelope",
    "parse_statement",
    "trusted_algorithms",
]

PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE: Final = "https://vtreg.dev/native-plugin/v2"
# v1 statements (no file lengths) still verify, so signatures already published
# stay good; the loader refuses them (see PluginPredicate.lengths).
PREDICATE_TYPE_V1: Final = "https://vtreg.dev/native-plugin/v1"
MAX_SIGNATURES = 32
MAX_FILE_LENGTH = 1 << 48  # 256 TiB: any real file, and still exact in a JSON number


_HEX = re.compile(r"[0-9a-f]+")
_PLATFORM = re.compile(r"[a-z0-9]+-[a-z0-9_]+")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``DSSEv1 SP len SP type SP len SP body``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as DSSE payloads and signatures are written."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Strict, canonical base64 (see :func:`~vtreg.verifier._base64.decode_canonical`).

    Args:
        text: the base64 text.
        what: names the value in error messages.

    Raises:
        FormatError: not base64, or not its canonical encoding.
    """
    try:
        return decode_canonical(text)
    except ValueError as e:
        raise FormatError(f"{what} is {e}") from e


# RFC 3339 date-time in UTC: "T" (or "t") between date and time, seconds, an
# optional fraction, and "Z" (or "z"). ASCII digits only: no date-only, week or
# ISO basic forms, which fromisoformat would also take.
_UTC_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?[Zz]", re.ASCII)


def _parse_time(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # pydantic refuses what is not a datetime
    match = _UTC_TIME.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not an RFC 3339 UTC time like 2026-11-24T08:00:00Z (ending in 'Z')"
        )
    date, clock, fraction = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]  # finer than microseconds: truncated
    try:
        return datetime.fromisoformat(f"{date}T{clock}.{micro}+00:00")
    except ValueError as e:
        raise ValueError(f"{value!r} is not a valid time: {e}") from e


UtcTime = Annotated[
    datetime,
    BeforeValidator(_parse_time),
    PlainSerializer(format_time, return_type=str),
]


def _check_subject_path(path: str) -> str:
    parts = path.split("/")
    if (
        not path
        or len(path.encode("utf-8")) > 4096
        or any(p in ("", ".", "..") for p in parts)
        or not path.isprintable()
        or "\\" in path
    ):
        raise ValueError(f"{path!r} is not a relative path inside the plugin directory")
    return path


def _check_digest_set(digests: dict[str, str]) -> dict[str, str]:
    if not digests:
        raise ValueError("empty digest set")
    for algorithm, value in digests.items():
        expected = TRUSTED_ALGORITHMS.get(algorithm)
        if expected is not None and (len(value) != expected or not _HEX.fullmatch(value)):
            raise ValueError(f"{algorithm} digest must be {expected} lowercase hex digits")
    return digests


def _check_platform(platform: str) -> str:
    if not _PLATFORM.fullmatch(platform):
        raise ValueError(f"{platform!r} is not a platform like linux-x86_64")
    return platform


def _check_pattern(pattern: str) -> str:
    check_exclude_pattern(pattern)
    return pattern


_Platform = Annotated[StrictStr, AfterValidator(_check_platform)]
_Pattern = Annotated[StrictStr, AfterValidator(_check_pattern)]


_FROZEN_CLOSED = ConfigDict(extra="forbid", frozen=True, strict=True)
_FROZEN_OPEN = ConfigDict(extra="ignore", frozen=True, strict=True)


def _check_b64(text: str) -> str:
    try:
        b64decode(text, "value")
    except FormatError as e:
        raise ValueError(str(e).removeprefix("value ")) from e
    return text


class EnvelopeSignature(BaseModel):
    """One DSSE signature: an optional key id hint and a base64 signature.

    The signature's algorithm is the key's (ed25519, ECDSA...): one that no
    trusted key can check simply does not count, so its length is not
    checked here, only its encoding.
    """

    model_config = _FROZEN_OPEN

    keyid: Annotated[StrictStr, Field(max_length=256)] = ""
    sig: Annotated[StrictStr, Field(max_length=1024), AfterValidator(_check_b64)]

    def signature_bytes(self) -> bytes:
        """The decoded signature bytes."""
        return b64decode(self.sig, "signature")


class Envelope(BaseModel):
    """A DSSE envelope as it appears in plugin.sig."""

    model_config = _FROZEN_OPEN

    payloadType: StrictStr
    payload: Annotated[StrictStr, AfterValidator(_check_b64)]
    signatures: Annotated[list[EnvelopeSignature], Field(min_length=1, max_length=MAX_SIGNATURES)]

    def payload_bytes(self) -> bytes:
        """The decoded payload: the exact bytes the signatures cover (inside PAE)."""
        return b64decode(self.payload, "envelope payload")


class Subject(BaseModel):
    """One signed file: its path inside the plugin directory and its digest set.

    An in-toto ResourceDescriptor; of its fields only these two are read.
    """

    model_config = _FROZEN_OPEN

    name: Annotated[StrictStr, AfterValidator(_check_subject_path)]
    digest: Annotated[dict[StrictStr, StrictStr], AfterValidator(_check_digest_set)]


_FileLength = Annotated[IntegralNumber, Field(ge=0, le=MAX_FILE_LENGTH)]


class PluginPredicate(BaseModel):
    """What the signer states about the plugin, beyond the files' digests.

    Its numbers are integers, which a signer writing through protobuf's Struct
    (in-toto-attestation's bindings) spells ``1.0``: read as ``1``.
    """

    model_config = _FROZEN_CLOSED

    name: PluginName
    version: SemVerStr
    abi_version: Annotated[IntegralNumber, Field(ge=1)]
    platform: _Platform
    library: StrictStr
    signed_at: UtcTime
    expires: UtcTime | None = None
    # Each signed file's length in bytes, as TUF records a target's length: a
    # verifier reads no file further than this, and copies no more of it aside.
    # Required from v2 on; absent in v1 statements.
    lengths: dict[StrictStr, _FileLength] | None = None
    # Every platform's library when the directory carries several ({platform: file});
    # absent for one, where platform/library say it all (and old verifiers still read it).
    libraries: dict[_Platform, StrictStr] | None = None
    # Glob patterns of paths the signature leaves out: they may exist and are never
    # read, hashed or loaded (see verifier.exclude); absent when none.
    exclude: Annotated[list[_Pattern], Field(min_length=1, max_length=MAX_EXCLUDES)] | None = None

    @model_validator(mode="after")
    def _primary_among_libraries(self) -> PluginPredicate:
        if self.libraries is None:
            return self
        if len(self.libraries) < 2:
            raise ValueError("libraries names several platforms; one is said by platform/library")
        if self.libraries.get(self.platform) != self.library:
            raise ValueError("platform/library must be one of libraries")
        if len(set(self.libraries.values())) != len(self.libraries):
            raise ValueError("libraries names one file for two platforms")
        return self

    @property
    def platform_libraries(self) -> dict[str, str]:
        """Each signed platform's library file, in platform order."""
        return dict(sorted((self.libraries or {self.platform: self.library}).items()))

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms this plugin carries a library for, sorted."""
        return tuple(self.platform_libraries)


# Predicate fields written only when they say something, so that a plugin of one
# platform and no exclusions is signed exactly as before they existed.
_OMITTED_WHEN_NONE = ("libraries", "exclude")


class Statement(BaseModel):
    """An in-toto Statement v1 whose predicate is a :class:`PluginPredicate`."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)

    type: Literal["https://in-toto.io/Statement/v1"] = Field(alias="_type")
    subject: Annotated[list[Subject], Field(min_length=1)]
    predicateType: Literal[
        "https://vtreg.dev/native-plugin/v2", "https://vtreg.dev/native-plugin/v1"
    ]
    predicate: PluginPredicate

    @model_validator(mode="after")
    def _lengths_cover_subjects(self) -> Statement:
        lengths = self.predicate.lengths
        if self.predicateType == PREDICATE_TYPE_V1:
            if lengths is not None:
                raise ValueError("a native-plugin/v1 predicate has no lengths")
            return self
        if lengths is None:
            raise ValueError("predicate.lengths is required")
        if set(lengths) != {s.name for s in self.subject}:
            raise ValueError("predicate.lengths must name exactly the subjects")
        return self

    @model_validator(mode="after")
    def _exclude_hides_nothing_signed(self) -> Statement:
        patterns = self.predicate.exclude or []
        hidden = excluded_paths(patterns, [s.name for s in self.subject])
        if hidden:
            raise ValueError(f"predicate.exclude matches the signed file {hidden[0]!r}")
        return self

    @property
    def lengths(self) -> dict[str, int] | None:
        """Each signed file's length (None for a v1 statement, which records none)."""
        return self.predicate.lengths

    def to_payload(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no spaces) to be signed."""
        obj = self.model_dump(mode="json", by_alias=True)
        for optional in _OMITTED_WHEN_NONE:  # absent, as statements before them wrote
            if obj["predicate"][optional] is None:
                del obj["predicate"][optional]
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def trusted_algorithms(subject: Subject) -> list[str]:
    """The subject's algorithms that we compute and trust, in a stable order."""
    return [a for a in TRUSTED_ALGORITHMS if a in subject.digest]


# The same plugin.sig is parsed to pick the registry's rows and again to authenticate
# it: the models are frozen, so the second parse of the same bytes is the first's.
@functools.lru_cache(maxsize=16)
def parse_envelope(data: bytes) -> Envelope:
    """Parse plugin.sig bytes into an envelope (signatures not yet checked).

    Raises:
        FormatError: oversize, not JSON, or not a DSSE envelope.
    """
    invalid = f"{SIGNATURE_FILE} is not a DSSE envelope"
    return load_model(Envelope, data, SIGNATURE_FILE, invalid=invalid, limit=MAX_SIGNATURE_BYTES)


@functools.lru_cache(maxsize=16)
def parse_statement(payload: bytes) -> Statement:
    """Parse verified payload bytes as our in-toto Statement.

    Raises:
        FormatError: not JSON, or not a Statement v1 with our predicate.
    """
    statement = load_model(Statement, payload, "signed statement", invalid="signed statement")
    names = [s.name for s in statement.subject]
    if len(set(names)) != len(names):
        raise FormatError("signed statement names the same file twice")
    return statement


def encode_envelope(
    payload_type: str, payload: bytes, signatures: list[tuple[str, bytes]]
) -> bytes:
    """plugin.sig bytes for a payload and ``(keyid, signature)`` pairs."""
    obj = {
        "payloadType": payload_type,
        "payload": b64encode(payload),
        "signatures": [{"keyid": keyid, "sig": b64encode(sig)} for keyid, sig in signatures],
    }
    return (json.dumps(obj, indent=2) + "\n").encode("ascii")
