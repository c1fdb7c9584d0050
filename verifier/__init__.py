"""vtreg verifier: pure checks of signed plugin directories, and the trust decision.

Capture a directory (:func:`capture`), then decide with a :class:`TrustState`
(:func:`decide`), or check it against public keys alone (:func:`verify`).
Sign with :func:`sign`. No database, no ctypes, no CLI. Public names are
loaded on first use, so importing a light module such as
:mod:`vtreg.verifier.tree` does not pull in pydantic or cryptography. Every
other name lives in its module (e.g. :mod:`vtreg.verifier.errors`).
"""

from __future__ import annotations

from ._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up path)

if TYPE_CHECKING:
    from .decision import decide, decide_trust
    from .errors import REFUSAL_CODES, VerificationError, VtregError
    from .keys import PublicKey, SigningKey, read_private_key_file, read_public_key_file
    from .manifest import PLUGIN_ABI_VERSION, PluginManifest
    from .signatures import VerifiedPlugin, content_digest, verify, verify_directory
    from .signing import SignResult, sign
    from .tree import PluginTree, capture
    from .trust import TrustedContent, TrustedKey, TrustState

_EXPORTS = {
    "decision": ("decide", "decide_trust"),
    "errors": ("REFUSAL_CODES", "VerificationError", "VtregError"),
    "keys": ("PublicKey", "SigningKey", "read_private_key_file", "read_public_key_file"),
    "manifest": ("PLUGIN_ABI_VERSION", "PluginManifest"),
    "signatures": ("VerifiedPlugin", "content_digest", "verify", "verify_directory"),
    "signing": ("SignResult", "sign"),
    "tree": ("PluginTree", "capture"),
    "trust": ("TrustState", "TrustedContent", "TrustedKey"),
}

__all__ = [
    "PLUGIN_ABI_VERSION",
    "REFUSAL_CODES",
    "PluginManifest",
    "PluginTree",
    "PublicKey",
    "SignResult",
    "SigningKey",
    "TrustState",
    "TrustedContent",
    "TrustedKey",
    "VerificationError",
    "VerifiedPlugin",
    "VtregError",
    "capture",
    "content_digest",
    "decide",
    "decide_trust",
    "read_private_key_file",
    "read_public_key_file",
    "sign",
    "verify",
    "verify_directory",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
