"""What a verifier trusts, as one immutable value: :class:`TrustState`.

A decision (:mod:`vtreg.verifier.decision`) is a pure function of a plugin
directory's capture, a :class:`TrustState` and the time. Where the state comes
from is not its business: the SQL registry builds the slice one decision needs
(the keys, the one content a plugin's envelope claims and its name's rollback
floor) inside a transaction, a host without a registry builds it from public
keys alone (:meth:`TrustState.of_keys`), and a fleet host from its verified
local snapshot. All of them get the same rules and the same tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .keys import PublicKey
from .manifest import SemVer
from .status import key_problem

__all__ = ["TrustState", "TrustedContent", "TrustedKey"]


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
        """The key id: lowercase hex SHA-256 of the raw public key."""
        return self.key.keyid

    def problem(self, plugin_name: str, at: datetime) -> tuple[str, str] | None:
        """Why this key may not vouch for ``plugin_name`` at ``at``: (code, text), or None."""
        return key_problem(self.revoked, self.expires, self.scopes, plugin_name, at)


@dataclass(frozen=True)
class TrustedContent:
    """One plugin content the operator trusted (or trusted and then revoked).

    ``platforms`` are those it carries a library for (sorted). ``threshold``
    is how many distinct trusted keys must have signed it at every load;
    ``pinned`` lets this version load although a newer one of the same name
    is trusted for the platform loaded.
    """

    name: str
    version: str
    platforms: tuple[str, ...]
    content_digest: str
    threshold: int = 1
    pinned: bool = False
    revoked: str | None = None
    revoked_at: datetime | None = None


def _newest(contents: Iterable[TrustedContent]) -> dict[tuple[str, str], str]:
    """The newest unrevoked version per (name, platform): the rollback floors. A content
    raises the floor of each platform it covers, and no other."""
    newest: dict[tuple[str, str], SemVer] = {}
    for content in contents:
        if content.revoked is not None:
            continue
        version = SemVer.parse(content.version)
        for where in ((content.name, p) for p in content.platforms):
            if where not in newest or newest[where] < version:
                newest[where] = version
    return {where: str(version) for where, version in newest.items()}


@dataclass(frozen=True)
class TrustState:
    """The keys, contents and rollback floors a decision is made against.

    Args:
        keys: trusted keys by key id, with scope, expiry and revocation.
        contents: trusted contents by content digest; ``None`` trusts any
            content that enough trusted keys signed (a host with keys and no
            registry), and then no content, revocation or rollback rule applies.
        names: the plugin names this state is complete for (``None``: every
            name). For a name in ``names`` the state holds every content a
            decision about *this envelope* may ask for (a store may read only
            the one content the envelope's statement claims) and the complete
            rollback floors of that name. A decision about another name is not
            made from it.
        floors: the lowest version each (name, platform) may load at, unless
            the content is pinned: the newest trusted, unrevoked version.
        threshold: distinct trusted keys every plugin needs at least (the
            content's own threshold may ask for more).
    """

    keys: Mapping[str, TrustedKey]
    contents: Mapping[str, TrustedContent] | None = None
    names: frozenset[str] | None = None
    floors: Mapping[tuple[str, str], str] = field(default_factory=dict)
    threshold: int = 1

    @classmethod
    def of_keys(cls, keys: Iterable[TrustedKey | PublicKey], *, threshold: int = 1) -> TrustState:
        """Trust whatever ``threshold`` of ``keys`` signed (no registry of contents)."""
        return cls(keys=_by_keyid(keys), threshold=threshold)

    @classmethod
    def build(
        cls,
        keys: Iterable[TrustedKey | PublicKey],
        contents: Iterable[TrustedContent],
        *,
        names: Iterable[str] | None = None,
        floors: Mapping[tuple[str, str], str] | None = None,
        threshold: int = 1,
    ) -> TrustState:
        """A state over trusted contents.

        Args:
            keys: the trusted keys.
            contents: trusted (and revoked) contents.
            names: see the class; ``None``: every name.
            floors: the rollback floors, as a store that holds more versions
                than ``contents`` found them (for example with an index);
                ``None``: computed from ``contents``, which then must hold
                every version of each name in ``names``.
            threshold: see the class.

        Returns:
            The state.
        """
        by_digest = {c.content_digest: c for c in contents}
        return cls(
            keys=_by_keyid(keys),
            contents=by_digest,
            names=frozenset(names) if names is not None else None,
            floors=dict(floors) if floors is not None else _newest(by_digest.values()),
            threshold=threshold,
        )

    def covers(self, name: str) -> bool:
        """Whether this state is complete for ``name`` (see ``names``)."""
        return self.names is None or name in self.names


def _by_keyid(keys: Iterable[TrustedKey | PublicKey]) -> dict[str, TrustedKey]:
    trusted: dict[str, TrustedKey] = {}
    for key in keys:
        entry = key if isinstance(key, TrustedKey) else TrustedKey(key)
        trusted.setdefault(entry.keyid, entry)
    return trusted
