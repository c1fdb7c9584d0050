"""What the registry answers with: typed records of keys, trusted plugins and trust results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vtreg.verifier.errors import UsageError
from vtreg.verifier.status import LOADABLE
from vtreg.verifier.times import format_time

from . import rows

# Only types from these: the records are built by the read paths too, which
# import neither SQLAlchemy's ORM nor the pydantic models (registry.reader).
if TYPE_CHECKING:
    import sqlalchemy as sa
    import sqlalchemy.orm

    from vtreg.verifier.signatures import VerifiedPlugin

    from .models import Key, Plugin

__all__ = [
    "LOADABLE",
    "KeyChange",
    "KeyInfo",
    "PluginInfo",
    "TrustResult",
    "checked_digest",
    "digest_condition",
    "short_digest",
]

_SHORT_DIGEST = len("sha256:") + 16
_MIN_DIGEST_PREFIX = 8  # hex digits after "sha256:", as for key ids
_HEX = frozenset("0123456789abcdef")
_WHOLE_DIGEST = len("sha256:") + 64


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value else None


def short_digest(digest: str) -> str:
    """A content digest as tables print it: ``sha256:`` and 16 hex digits, a valid prefix."""
    return digest[:_SHORT_DIGEST]


def digest_condition(
    column: sa.orm.InstrumentedAttribute[str] | sa.orm.InstrumentedAttribute[str | None],
    digest: str,
) -> sa.ColumnElement[bool]:
    """``column`` holds the content digest ``digest`` names: the full digest, or a prefix
    of at least 8 hex digits after ``sha256:`` (such as :func:`short_digest` prints).

    Raises:
        UsageError: ``digest`` is neither.
    """
    text = checked_digest(digest)
    if len(text) == _WHOLE_DIGEST:
        return column == text
    return column.startswith(text, autoescape=True)


def checked_digest(digest: str) -> str:
    """``digest`` as stored (lowercase), once it is a content digest or a prefix of at
    least 8 hex digits after ``sha256:`` (such as :func:`short_digest` prints).

    Raises:
        UsageError: it is neither.
    """
    text = digest.strip().lower()
    algorithm, _, hex_part = text.partition(":")
    well_formed = _MIN_DIGEST_PREFIX <= len(hex_part) <= 64 and not set(hex_part) - _HEX
    if algorithm != "sha256" or not well_formed:
        raise UsageError(
            f"{digest!r} is not a content digest (sha256: and 64 hex digits, or a prefix "
            f"of {_MIN_DIGEST_PREFIX} or more)"
        )
    return text


@dataclass(frozen=True)
class KeyInfo:
    """A publisher key as the registry holds it (revoked keys stay, marked)."""

    keyid: str
    name: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    added_at: datetime
    added_by: str
    revoked_at: datetime | None
    revoked_reason: str | None

    @classmethod
    def of(cls, row: Key) -> KeyInfo:
        """The record of one ``keys`` row."""
        return cls(
            keyid=row.keyid,
            name=row.name,
            scopes=rows.scopes(row.keyid, row.scopes),
            expires_at=row.expires_at,
            added_at=row.added_at,
            added_by=row.added_by,
            revoked_at=row.revoked_at,
            revoked_reason=row.revoked_reason,
        )

    def same_terms(self, name: str | None, scopes: Sequence[str]) -> bool:
        """Whether adding the key again asks for the name and scopes it has.

        The expiry is not compared: ``--expires 90d`` re-run tomorrow names a
        later date, and a provisioning script that re-adds its keys must not
        fail. The stored expiry stands; the CLI says so when they differ.
        """
        named = name is None or name == self.name
        return named and sorted(scopes) == sorted(self.scopes)

    @property
    def may_sign(self) -> str:
        """The scope in words: the glob patterns, or "any plugin"."""
        return ", ".join(self.scopes) or "any plugin"

    @property
    def expires_text(self) -> str:
        """The expiry in words: an RFC 3339 time, or "never"."""
        return _time(self.expires_at) or "never"

    def terms(self) -> str:
        """Name, scope and expiry in one phrase."""
        return f"{self.name}, may sign {self.may_sign}, expires {self.expires_text}"

    def status(self, at: datetime) -> str:
        """``revoked``, ``expired`` or ``trusted`` at ``at``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and at >= self.expires_at:
            return "expired"
        return "trusted"

    def to_json(self, at: datetime) -> dict[str, Any]:
        """A JSON-ready description, with the status at ``at``."""
        return {
            "keyid": self.keyid,
            "name": self.name,
            "scopes": list(self.scopes),
            "expires_at": _time(self.expires_at),
            "added_at": _time(self.added_at),
            "added_by": self.added_by,
            "revoked_at": _time(self.revoked_at),
            "revoked_reason": self.revoked_reason,
            "status": self.status(at),
        }


@dataclass(frozen=True)
class PluginInfo:
    """A trusted (or trusted, then revoked) plugin content as the registry holds it."""

    name: str
    version: str
    content_digest: str
    platforms: tuple[str, ...]
    signers: tuple[str, ...]
    threshold: int
    pinned: bool
    trusted_at: datetime
    trusted_by: str
    revoked_at: datetime | None
    revoked_reason: str | None
    status: str  # LOADABLE, or the refusal code a load would meet now
    former_signers: tuple[str, ...] = ()  # signed an envelope accepted earlier, not the current

    @classmethod
    def of(cls, row: Plugin, status: str, former_signers: tuple[str, ...] = ()) -> PluginInfo:
        """The record of one ``plugins`` row and its signers, with its effective status."""
        return cls(
            name=row.name,
            version=rows.version(row.content_digest, row.version),
            content_digest=row.content_digest,
            platforms=row.platforms,
            signers=tuple(sorted(s.keyid for s in row.signers)),
            threshold=rows.threshold(row.content_digest, row.threshold),
            pinned=row.pinned,
            trusted_at=row.trusted_at,
            trusted_by=row.trusted_by,
            revoked_at=row.revoked_at,
            revoked_reason=row.revoked_reason,
            status=status,
            former_signers=former_signers,
        )

    @property
    def platform(self) -> str:
        """The platforms as people read them: ``linux-x86_64+macos-arm64``."""
        return "+".join(self.platforms)

    @property
    def label(self) -> str:
        """Name, version and short digest: two contents of one version never look alike."""
        return f"{self.name}@{self.version} ({short_digest(self.content_digest)})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "version": self.version,
            "content_digest": self.content_digest,
            "platforms": list(self.platforms),
            "signers": list(self.signers),
            "former_signers": list(self.former_signers),
            "threshold": self.threshold,
            "pinned": self.pinned,
            "trusted_at": _time(self.trusted_at),
            "trusted_by": self.trusted_by,
            "revoked_at": _time(self.revoked_at),
            "revoked_reason": self.revoked_reason,
            "status": self.status,
        }


@dataclass(frozen=True)
class TrustResult:
    """What ``vtreg trust`` did: the record, the verified plugin, and what changed."""

    plugin: PluginInfo
    verified: VerifiedPlugin | None  # None when trusted from a plugin.sig alone
    created: bool
    changed: bool
    newer: str | None  # the newest trusted version of its name and platform, if this is older
    replaced: tuple[str, ...] = ()  # digests of the same version no longer trusted (--replace)
    previous_signers: tuple[str, ...] | None = None  # when a new envelope was accepted


@dataclass(frozen=True)
class KeyChange:
    """What revoking a key (or changing its terms) did: the key, whether it changed,
    and the trusted contents it signed that would load before and not now."""

    key: KeyInfo
    changed: bool
    unloadable: tuple[PluginInfo, ...] = ()
