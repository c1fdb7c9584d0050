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

from verifier.capture import PluginTree
from verifier.verify import VerifiedPlugin

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
