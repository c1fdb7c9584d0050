"""plugin.json: VT Code's plugin metadata, validated.

VT Code tolerates unknown fields in plugin.json, so we do too (they are
ignored, though still covered by the signature as part of the file's bytes).
What we do constrain is what becomes a file name or a comparison: ``name`` is a
safe identifier and ``version`` is a semantic version. VT Code itself reads
only ``name`` from plugin.json when it loads a plugin, so ``description`` is
optional here, and a version may leave out its minor or patch number
(``1.0`` sorts as ``1.0.0``): see :meth:`SemVer.parse`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StrictBool, StrictInt

from ._json import load_model
from .errors import FormatError
from .layout import MANIFEST_FILE, MAX_MANIFEST_BYTES

__all__ = [
    "PLUGIN_ABI_VERSION",
    "IntegralNumber",
    "PluginManifest",
    "PluginName",
    "SemVer",
    "SemVerStr",
    "check_plugin_name",
    "claimed_identity",
    "parse_manifest",
]

PLUGIN_ABI_VERSION = 1

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", re.ASCII)
# re.ASCII: \d is 0-9 only, or "1\u0660.0.0" (an Arabic-Indic zero) would pass and sort as 10.0.0.
# MINOR and PATCH may be left out (1.0, 1): a missing number is 0, which is the
# only order a reader could mean. The semver core regex otherwise.
_SEMVER_RE = re.compile(
    r"(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?",
    re.ASCII,
)
_MAX_VERSION_LENGTH = 128

# Bytes of SemVer.sort_key. After major.minor.patch comes either _RELEASE or the
# prerelease identifiers and _END; _RELEASE is above every identifier tag, so a
# release sorts after its prereleases, and _END below them, so a shorter list of
# identifiers sorts before a longer one it is a prefix of.
_END = b"\x00"
_NUMERIC = b"\x01"
_ALPHANUMERIC = b"\x02"
_RELEASE = b"\x03"
_LONG = 0xFF  # a length byte of 0xFF: the length itself follows, as a number key


def check_plugin_name(name: str) -> str:
    """Return ``name`` if it is a safe plugin name, else raise ``ValueError``.

    A plugin name becomes part of a file name (``lib<name>.so``), so it is
    1-64 characters of letters, digits, ``.``, ``_`` and ``-``, not starting
    with ``.`` or ``-``.
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid plugin name (1-64 of A-Z a-z 0-9 . _ -, "
            "not starting with '.' or '-')"
        )
    return name


def _check_semver(version: str) -> str:
    SemVer.parse(version)
    return version


@functools.total_ordering
@dataclass(frozen=True)
class SemVer:
    """A parsed semantic version, ordered by semver precedence (build metadata ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``text``: semver 2.0.0, where MINOR and PATCH may be left out.

        ``1.0`` and ``1`` mean ``1.0.0`` for ordering (and compare equal to
        it); the string as written stays what was signed, so ``1.0`` and
        ``1.0.0`` are still two names (``vtreg revoke hello@1.0`` matches only
        the first). Anything whose order would be a guess is refused, saying
        why: a leading ``v``, a fourth number, leading zeros, non-ASCII digits.

        Raises:
            ValueError: not such a version, or too long.
        """
        del cls  # SemVer itself: parsed once per text (_parse_semver)
        return _parse_semver(text)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after its prereleases; numeric identifiers sort before
        # alphanumeric ones and compare as numbers (semver.org, section 11).
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def sort_key(self) -> bytes:
        """Bytes whose order (as bytes, e.g. a database's BLOB/bytea order) is semver precedence.

        ``a.sort_key() < b.sort_key()`` exactly when ``a < b``, and the keys are
        equal exactly when the versions are (build metadata is ignored), so a
        database can find the newest version with an index instead of parsing
        every row.

        Raises:
            ValueError: a negative number (never one that :meth:`parse` returned).
        """
        key = b"".join(_number_key(n) for n in (self.major, self.minor, self.patch))
        if not self.prerelease:
            return key + _RELEASE
        identifiers = [
            _NUMERIC + _number_key(p) if isinstance(p, int) else _ALPHANUMERIC + _text_key(p)
            for p in self.prerelease
        ]
        return key + b"".join(identifiers) + _END

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        if self.build:
            text += "+" + self.build
        return text


# A load parses its version as the statement, plugin.json and the rollback rule are
# checked, and the floor's: a few versions, over and over. SemVer is frozen.
@functools.lru_cache(maxsize=256)
def _parse_semver(text: str) -> SemVer:
    match = _SEMVER_RE.fullmatch(text)
    if match is None or len(text) > _MAX_VERSION_LENGTH:
        raise ValueError(f"{text!r} is not a semantic version{_why_not(text)}")
    major, minor, patch, pre, build = match.groups()
    prerelease = tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else ()
    return SemVer(int(major), int(minor or 0), int(patch or 0), prerelease, build or "")


def _number_key(n: int) -> bytes:
    """``n`` as its big-endian bytes after their length: more bytes is a bigger number,
    and numbers of one length compare byte by byte."""
    if n < 0:
        raise ValueError(f"a version number cannot be negative, got {n}")
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(body) < _LONG:
        return bytes([len(body)]) + body
    # Only numbers of 255 bytes (over 600 digits) or more; parse() caps versions at 128 characters.
    return bytes([_LONG]) + _number_key(len(body)) + body


def _text_key(identifier: str) -> bytes:
    """An alphanumeric identifier: its bytes, then _END, which is below every character
    (UTF-8 keeps the code point order Python compares strings in; parse() allows ASCII only)."""
    return identifier.encode("utf-8") + _END


def _why_not(text: str) -> str:
    """Why ``text`` has no certain order, for the error message."""
    core = re.split(r"[-+]", text, maxsplit=1)[0]
    if len(text) > _MAX_VERSION_LENGTH:
        reason = f"it is longer than {_MAX_VERSION_LENGTH} characters"
    elif core[:1] in ("v", "V"):
        reason = f"drop the leading {core[0]!r}"
    elif core.count(".") > 2 and all(p.isdigit() for p in core.split(".")):
        reason = "it has more than three numbers, so its order against 1.2.3 would be a guess"
    elif any(len(p) > 1 and p.startswith("0") for p in core.split(".")):
        reason = "a number has a leading zero, so two spellings would name one version"
    else:
        reason = "expected MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD] in ASCII"
    return f" ({reason}), like 1.2.3, 1.2 or 1.2.3-rc.1"


# Below 2**53 a double holds every integer exactly; from there on, 2**53 + 1 reads as 2**53.
_EXACT_FLOAT_LIMIT = 2**53


def _integral(value: object) -> object:
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
        return int(value)
    return value  # StrictInt refuses the rest: 1.5, true, "1"


PluginName = Annotated[str, AfterValidator(check_plugin_name)]
SemVerStr = Annotated[str, AfterValidator(_check_semver)]
# An integer, also when written as a JSON number with a zero fraction (1.0): protobuf's
# Struct writes every number as a double, and so in-toto-attestation's bindings do.
IntegralNumber = Annotated[StrictInt, BeforeValidator(_integral)]


class PluginManifest(BaseModel):
    """The fields of plugin.json that VT Code defines; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: PluginName
    # Optional: VT Code's loader reads only the name (its validate_plugin_structure,
    # and ours, still report a missing description).
    description: str | None = None
    version: SemVerStr
    author: str | None = None
    abi_version: IntegralNumber = PLUGIN_ABI_VERSION
    when_to_use: str | None = None
    when_not_to_use: str | None = None
    allowed_tools: tuple[str, ...] | None = None
    # VT Code takes thread_safe from the library's own metadata, not from here.
    # A signed false still counts: the loader then serialises calls whatever the
    # library claims (None: plugin.json does not say).
    thread_safe: StrictBool | None = None


def parse_manifest(data: bytes) -> PluginManifest:
    """Parse plugin.json bytes.

    Raises:
        FormatError: oversize, not JSON, or a field is missing or invalid.
    """
    return load_model(
        PluginManifest, data, MANIFEST_FILE, invalid=MANIFEST_FILE, limit=MAX_MANIFEST_BYTES
    )


def claimed_identity(data: bytes | None) -> tuple[str | None, str | None]:
    """plugin.json's name and version, unauthenticated, or (None, None) if unreadable.

    Only for labelling a refusal (an audit record of a plugin that did not
    verify): never for a decision.
    """
    try:
        manifest = parse_manifest(data or b"")
    except FormatError:
        return None, None
    return manifest.name, manifest.version
