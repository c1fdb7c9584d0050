"""What the loader needs from the outside world, as small Protocols.

The loader never imports the registry: it asks a :class:`TrustPolicy` for the
trust state a decision needs, decides with the pure core
(:mod:`vtreg.verifier.decision`), and tells an :class:`AuditSink` what
happened. ``registry.Registry`` implements both; tests and other hosts may
bring their own. :class:`AuditEvent` itself is defined with the rest of the
event format in verifier.audit_event.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from vtreg.verifier.audit_event import AuditEvent
from vtreg.verifier.trust import TrustState

__all__ = ["AuditEvent", "AuditSink", "TrustPolicy"]


@runtime_checkable
class TrustPolicy(Protocol):
    """Says what is trusted, for the decision about one plugin."""

    def state_for(self, envelope: bytes | None) -> TrustState:
        """The trust state a decision about the plugin signed by ``envelope`` needs.

        ``envelope`` is plugin.sig as read and not yet checked: it may only pick
        what to read (the keys, the contents of the name it claims), never
        decide anything. Raise a ``VtregError`` when the state cannot be had.
        """
        ...


@runtime_checkable
class AuditSink(Protocol):
    """Receives every load and refusal."""

    def record(self, event: AuditEvent) -> None:
        """Keep ``event`` (durably, for an audit log)."""
        ...
