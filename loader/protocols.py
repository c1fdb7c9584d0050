"""What the loader needs from the outside world, as small Protocols.

The loader never imports the registry: it asks a :class:`TrustPolicy` for the
trust state a decision needs, decides with the pure core
(:mod:`vtreg.verifier.decision`), and tells an :class:`AuditSink` what
happened. ``registry.Registry`` implements both; tests and other hosts may
bring their own. :class:`AuditEvent` itself is defined with the rest of the
event format in verifier.audit_event.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

from vtreg.verifier.audit_event import AuditEvent
from vtreg.verifier.trust import TrustState

__all__ = ["AuditEvent", "AuditSink", "TrustPolicy", "failed_to_record", "raised_by_audit"]

_E = TypeVar("_E", bound=BaseException)


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


def failed_to_record(error: _E, sink: AuditSink) -> _E:
    """Mark ``error`` as ``sink``'s own failure to record an event, and return it.

    A :class:`TrustPolicy` that audits through a sink (the fleet's grace) raises
    the sink's error marked so: the loader, meeting it, does not write its error
    event to that same sink, which would wait (a held lock) and fail a second time.
    """
    error._vtreg_unrecorded_by = sink  # type: ignore[attr-defined]
    return error


def raised_by_audit(error: BaseException, sink: AuditSink) -> bool:
    """Whether ``error`` is ``sink``'s failure to record (see :func:`failed_to_record`)."""
    return getattr(error, "_vtreg_unrecorded_by", None) is sink
