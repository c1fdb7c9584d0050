"""vtreg loader: verify-then-load of VT Code ABI v1 native plugins over ctypes.

Mirrors VT Code's ``native_plugin`` module (``PluginLoader``, ``NativePlugin``,
``PluginMetadata``, ``PluginContext``, ``PluginResult``, ``PLUGIN_ABI_VERSION``),
and takes its trust decision and audit sink as Protocols (``TrustPolicy``,
``AuditSink``) that ``registry.Registry`` implements. The errors a host
catches are here too: ``VtregError`` (anything vtreg raises on purpose),
``VerificationError`` (a definite "no", with a ``code``), ``UsageError`` (a
call that makes no sense), ``NotFoundError``, and the loader's own
``AbiError``, ``LoadError`` and ``PluginCallError``. Public names load on first
use: the isolation worker imports only the ABI module.
"""

from __future__ import annotations

from vtreg.verifier._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from vtreg.verifier.errors import NotFoundError, UsageError, VerificationError, VtregError

    from .abi import PLUGIN_ABI_VERSION, AbiError, LoadError, PluginCallError
    from .discovery import Discovery, Skipped
    from .loader import Isolation, KeyPolicy, PluginLoader
    from .native import NativePlugin, PluginContext, PluginMetadata, PluginResult
    from .protocols import AuditEvent, AuditSink, TrustPolicy

_EXPORTS = {
    "abi": ("PLUGIN_ABI_VERSION", "AbiError", "LoadError", "PluginCallError"),
    "discovery": ("Discovery", "Skipped"),
    "errors": ("NotFoundError", "UsageError", "VerificationError", "VtregError"),
    "loader": ("Isolation", "KeyPolicy", "PluginLoader"),
    "native": ("NativePlugin", "PluginContext", "PluginMetadata", "PluginResult"),
    "protocols": ("AuditEvent", "AuditSink", "TrustPolicy"),
}

__all__ = [
    "PLUGIN_ABI_VERSION",
    "AbiError",
    "AuditEvent",
    "AuditSink",
    "Discovery",
    "Isolation",
    "KeyPolicy",
    "LoadError",
    "NativePlugin",
    "NotFoundError",
    "PluginCallError",
    "PluginContext",
    "PluginLoader",
    "PluginMetadata",
    "PluginResult",
    "Skipped",
    "TrustPolicy",
    "UsageError",
    "VerificationError",
    "VtregError",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
