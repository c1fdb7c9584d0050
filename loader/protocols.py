"""What the loader needs from the outside world, as small Protocols.

The loader never imports the registry: it asks a :class:`TrustPolicy` for a
decision and tells an :class:`AuditSink` what happened. ``registry.Registry``
implements both; tests and other hosts may bring their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from vtreg.verifier.errors import VerificationError
from vtreg.verifier.manifest import claimed_identity
from vtreg.verifier.signatures import VerifiedPlugin
from vtreg.verifier.tree import PluginTree

__all__ = ["AuditEvent", "AuditSink", "TrustPolicy"]


@dataclass(frozen=True)
class AuditEvent:
    """One decision or change, as the loader (or anyone) reports it.

    ``action`` is a dotted verb such as ``plugin.load``; ``outcome`` is
    ``allowed``/``refused`` for decisions and ``ok`` for changes.
    """

    action: str
    outcome: str
    plugin: str | None = None
    version: str | None = None
    digest: str | None = None
    keyids: tuple[str, ...] = ()
    reason: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def refusal(
        cls,
        action: str,
        error: VerificationError,
        *,
        manifest: bytes | None,
        details: Mapping[str, object],
    ) -> AuditEvent:
        """The record of a refusal, labelled with what was refused.

        After the signatures checked out the error names the authenticated
        plugin; before that, the refusal is labelled with the name plugin.json
        claims (``manifest``), marked ``unverified_name`` in the details.
        """
        extra: dict[str, object] = {"error": type(error).__name__, "code": error.code}
        plugin: str | None
        release: str | None
        content: str | None
        if error.subject is not None:
            plugin, release, content = error.subject
        else:
            (plugin, release), content = claimed_identity(manifest), None
            extra["unverified_name"] = True
        return cls(
            action,
            "refused",
            plugin=plugin,
            version=release,
            digest=content,
            keyids=error.keyids,
            reason=str(error),
            details={**details, **extra},
        )


@runtime_checkable
class TrustPolicy(Protocol):
    """Decides whether a captured plugin may be loaded."""

    def authorize(self, tree: PluginTree, *, at: datetime) -> VerifiedPlugin:
        """Return the verified plugin, or raise a ``VerificationError`` saying why not."""
        ...


@runtime_checkable
class AuditSink(Protocol):
    """Receives every load and refusal."""

    def record(self, event: AuditEvent) -> None: ...
