"""vtreg loader: verify-then-load of VT Code ABI v1 native plugins over ctypes.

Mirrors VT Code's ``native_plugin`` module (``PluginLoader``, ``NativePlugin``,
``PluginMetadata``, ``PluginContext``, ``PluginResult``, ``PLUGIN_ABI_VERSION``),
and takes its trust decision and audit sink as Protocols (``TrustPolicy``,
``AuditSink``) that ``registry.Registry`` implements. Public names load on
first use: the isolation worker imports only the ABI module.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

    from .abi import PLUGIN_ABI_VERSION, AbiError, PluginCallError
    from .loader import KeyPolicy, PluginLoader
    from .native import NativePlugin, PluginContext, PluginMetadata, PluginResult
    from .protocols import AuditEvent, AuditSink, TrustPolicy

_EXPORTS = {
    "abi": ("PLUGIN_ABI_VERSION", "AbiError", "PluginCallError"),
    "loader": ("KeyPolicy", "PluginLoader"),
    "native": ("NativePlugin", "PluginContext", "PluginMetadata", "PluginResult"),
    "protocols": ("AuditEvent", "AuditSink", "TrustPolicy"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "PLUGIN_ABI_VERSION",
    "AbiError",
    "AuditEvent",
    "AuditSink",
    "KeyPolicy",
    "NativePlugin",
    "PluginCallError",
    "PluginContext",
    "PluginLoader",
    "PluginMetadata",
    "PluginResult",
    "TrustPolicy",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
