"""vtreg registry: trust store, revocations, audit log, and the ``vtreg`` CLI.

Public names are loaded on first use so that ``vtreg --help`` and offline
``vtreg verify`` never import SQLAlchemy or Alembic.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up path)
if TYPE_CHECKING:
    from typing import Any

    from .audit import AuditRecord, ChainReport
    from .service import KeyInfo, PluginInfo, Registry, TrustResult

_EXPORTS = {
    "audit": ("AuditRecord", "ChainReport"),
    "service": ("KeyInfo", "PluginInfo", "Registry", "TrustResult"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["AuditRecord", "ChainReport", "KeyInfo", "PluginInfo", "Registry", "TrustResult"]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
