"""What the loader needs from the outside world, as small Protocols.

The loader never imports the registry: it asks a :class:`TrustPolicy` for a
decision and tells an :class:`AuditSink` what happened. ``registry.Registry``
implements both; tests and other hosts may bring their own. :class:`AuditEvent`
itself is defined with the rest of the event format in verifier.audit_event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from vtreg.verifier.audit_event import AuditEvent
from vtreg.verifier.signatures import VerifiedPlugin
from vtreg.verifier.tree import PluginTree

__all__ = ["AuditEvent", "AuditSink", "TrustPolicy"]


@runtime_checkable
class TrustPolicy(Protocol):
    """Decides whether a captured plugin may be loaded."""

    def authorize(self, tree: PluginTree, *, at: datetime) -> VerifiedPlugin:
        """Return the verified plugin, or raise a ``VerificationError`` saying why not."""
        ...


@runtime_checkable
class AuditSink(Protocol):
    """Receives every load and refusal."""

    def record(self, event: AuditEvent) -> None:
        """Keep ``event`` (durably, for an audit log)."""
        ...
