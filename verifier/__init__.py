"""vtreg verifier: pure checks of signed plugin directories.

Manifest model, hashing, keys, DSSE envelopes, sign and verify. No database,
no ctypes, no CLI. Public names are loaded on first use, so importing a
light module such as :mod:`verifier.tree` does not pull in pydantic or
cryptography.
"""

from __future__ import annotations

from ._lazy import lazy_exports

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up path)

if TYPE_CHECKING:
    from .envelope import PAYLOAD_TYPE, PREDICATE_TYPE, Envelope, Statement
    from .errors import (
        ContentError,
        ExpiredError,
        FormatError,
        KeyFileError,
        NotFoundError,
        PassphraseError,
        PolicyError,
        RegistryError,
        SignatureError,
        UnsafeFileError,
        UsageError,
        VerificationError,
        VtregError,
        WriteError,
    )
    from .keys import PublicKey, SigningKey, read_private_key_file, read_public_key_file
    from .manifest import PLUGIN_ABI_VERSION, PluginManifest, SemVer
    from .platforms import host_platform, library_filename
    from .signatures import (
        SignedStatement,
        SignResult,
        TrustedKey,
        VerifiedPlugin,
        content_digest,
        sign,
        verify,
        verify_directory,
        verify_envelope,
    )
    from .structure import validate_plugin_structure
    from .tree import CapturedFile, PluginTree, capture

_EXPORTS = {
    "tree": ("CapturedFile", "PluginTree", "capture"),
    "envelope": ("PAYLOAD_TYPE", "PREDICATE_TYPE", "Envelope", "Statement"),
    "errors": (
        "ContentError",
        "ExpiredError",
        "FormatError",
        "KeyFileError",
        "NotFoundError",
        "PassphraseError",
        "PolicyError",
        "RegistryError",
        "SignatureError",
        "UnsafeFileError",
        "UsageError",
        "VerificationError",
        "VtregError",
        "WriteError",
    ),
    "keys": ("PublicKey", "SigningKey", "read_private_key_file", "read_public_key_file"),
    "manifest": ("PLUGIN_ABI_VERSION", "PluginManifest", "SemVer"),
    "platforms": ("host_platform", "library_filename"),
    "structure": ("validate_plugin_structure",),
    "signatures": (
        "SignResult",
        "SignedStatement",
        "TrustedKey",
        "VerifiedPlugin",
        "content_digest",
        "sign",
        "verify",
        "verify_directory",
        "verify_envelope",
    ),
}

__all__ = [
    "PAYLOAD_TYPE",
    "PLUGIN_ABI_VERSION",
    "PREDICATE_TYPE",
    "CapturedFile",
    "ContentError",
    "Envelope",
    "ExpiredError",
    "FormatError",
    "KeyFileError",
    "NotFoundError",
    "PassphraseError",
    "PluginManifest",
    "PluginTree",
    "PolicyError",
    "PublicKey",
    "RegistryError",
    "SemVer",
    "SignResult",
    "SignatureError",
    "SignedStatement",
    "SigningKey",
    "Statement",
    "TrustedKey",
    "UnsafeFileError",
    "UsageError",
    "VerificationError",
    "VerifiedPlugin",
    "VtregError",
    "WriteError",
    "capture",
    "content_digest",
    "host_platform",
    "library_filename",
    "read_private_key_file",
    "read_public_key_file",
    "sign",
    "validate_plugin_structure",
    "verify",
    "verify_directory",
    "verify_envelope",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
