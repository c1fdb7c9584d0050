"""vtreg registry: trust store, revocations, audit log, and the ``vtreg`` CLI.

Public names are loaded on first use so that ``vtreg --help`` and offline
``vtreg verify`` never import SQLAlchemy or Alembic.
"""

from __future__ import annotations

from vtreg.verifier._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up path)
if TYPE_CHECKING:
    from .audit import AuditRecord, ChainReport
    from .records import KeyInfo, PluginInfo, TrustResult
    from .service import Registry

_EXPORTS = {
    "audit": ("AuditRecord", "ChainReport"),
    "records": ("KeyInfo", "PluginInfo", "TrustResult"),
    "service": ("Registry",),
}

__all__ = ["AuditRecord", "ChainReport", "KeyInfo", "PluginInfo", "Registry", "TrustResult"]

__getattr__ = lazy_exports(__name__, _EXPORTS)
