"""The one exception tree of vtreg.

Two families matter to a caller:

* :class:`VerificationError` is a definite "no": the plugin, signature or
  request was examined and refused (bad signature, digest mismatch, untrusted
  or revoked key, threshold not met, rollback, malformed input).
* Every other :class:`VtregError` means "could not decide": a file or key
  could not be read, a passphrase was wrong, a database was unreachable.

:class:`UsageError` marks a request that makes no sense as asked (a bad
duration, an impossible threshold). The CLI maps these families to exit codes
1, 3 and 2; library code only raises.

Messages say what was expected and what was found, and never contain key
material.
"""

from __future__ import annotations

__all__ = [
    "ERROR_TYPES",
    "REFUSAL_CODES",
    "ContentError",
    "ExpiredError",
    "FormatError",
    "KeyFileError",
    "LogError",
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
]


class VtregError(Exception):
    """Root of every error vtreg raises on purpose."""


# The refusal codes, stable and machine-readable: every VerificationError has one,
# the CLI puts it in its --json error object and the audit log in a refusal's
# details. docs/codes.md explains each; tests/verifier/test_codes.py keeps the two
# in step. A code is never renamed or reused for another meaning.
REFUSAL_CODES: dict[str, str] = {
    "unsigned": "the plugin has no plugin.sig",
    "malformed": "plugin.json, plugin.sig or the statement is malformed, oversize or inconsistent",
    "unknown-key": "no signature is by a trusted key",
    "bad-signature": "a signature names a trusted key but does not verify with it",
    "threshold": "fewer distinct trusted keys signed than required",
    "key-revoked": "a signer's key is revoked, leaving too few signers",
    "key-expired": "a signer's key has expired, leaving too few signers",
    "out-of-scope": "a signer's key may not sign this plugin name, leaving too few signers",
    "signature-expired": "the signature's own expiry has passed",
    "digest-mismatch": "a file's bytes differ from what was signed",
    "file-missing": "a signed file is missing from the directory",
    "file-added": "the directory holds a file the signature does not cover",
    "unsafe-path": "a symlink, special file, path escape or writable directory",
    "content-not-trusted": "the signed content is not trusted in the registry",
    "content-revoked": "the signed content was revoked",
    "rollback": "an older version than the newest trusted one, and not pinned",
    "wrong-platform": "the plugin carries no library for this host's platform",
    "abi-mismatch": "the library does not implement VT Code ABI v1 as signed",
    "dependency-untrusted": "a library the plugin needs is neither signed with it nor the system's",
    "version-conflict": "another content of the same name, version and platform is trusted",
    "exclude-unsafe": "an exclude pattern would leave plugin.json, a library or a shared "
    "library file out of the signature",
    "log-inconsistent": "an audit log proof does not verify, or a tree is not consistent "
    "with a checkpoint signed or seen before",
    "log-fork": "the fleet timestamp's checkpoint contradicts the one the host accepted before",
    "log-rollback": "the fleet timestamp's checkpoint is of a smaller tree than one seen before",
    "log-signature": "the fleet timestamp's checkpoint is not signed by the host's log key",
    "log-checkpoint-missing": "the fleet timestamp carries no checkpoint; the host requires one",
    "log-quorum": "the fleet timestamp's checkpoint lacks the witness cosignatures the host "
    "requires",
    "quorum": "a checkpoint lacks the witness cosignatures its policy requires",
    "trust-expired": "the fleet host's trust state has expired (no sync since), and no grace",
    "metadata-unsigned": "fleet metadata is unsigned, wrongly signed or below its threshold",
    "metadata-rollback": "fleet metadata is older than trusted, or not the version expected",
    "metadata-expired": "fleet metadata has expired (a freeze)",
    "metadata-mismatch": "a fleet metadata file is not the one its parent role names",
    "metadata-oversize": "a fleet metadata file is longer than allowed (endless data)",
}


# The names an error's ``type`` may take in --json output (docs/json.md): these classes
# and the loader's three. Any other class reports the nearest of them it derives from,
# so a new internal subclass never shows an undocumented name. Never renamed.
ERROR_TYPES: tuple[str, ...] = (
    "VtregError",
    "VerificationError",
    "FormatError",
    "SignatureError",
    "ContentError",
    "UnsafeFileError",
    "ExpiredError",
    "PolicyError",
    "LogError",
    "NotFoundError",
    "KeyFileError",
    "PassphraseError",
    "WriteError",
    "RegistryError",
    "UsageError",
    "AbiError",
    "LoadError",
    "PluginCallError",
)


class VerificationError(VtregError):
    """A definite "no": the thing examined is refused.

    ``code`` is one of :data:`REFUSAL_CODES` (each subclass has a default).
    ``keyids`` names the trusted keys whose signatures were valid, and
    ``subject`` the signed (name, version, content digest) once a statement
    signed by a known key was read (the digest is None when the directory did
    not match it), so that an audit record of the refusal is filed under the
    most authenticated identity there is and says whose signature was involved.
    """

    default_code = "malformed"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        keyids: tuple[str, ...] = (),
        subject: tuple[str, str, str | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        if self.code not in REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {self.code!r}")
        self.keyids = keyids
        self.subject = subject


class FormatError(VerificationError):
    """A plugin.json, plugin.sig or statement is malformed or oversize."""


class SignatureError(VerificationError):
    """Not enough valid signatures from trusted keys (unsigned, unknown or unfit keys)."""

    default_code = "threshold"


class ContentError(VerificationError):
    """The directory differs from what was signed (changed, missing or extra file)."""

    default_code = "digest-mismatch"


class UnsafeFileError(VerificationError):
    """A symlink, device, FIFO or socket inside a plugin directory, or a path escape."""

    default_code = "unsafe-path"


class ExpiredError(VerificationError):
    """The signature has expired."""

    default_code = "signature-expired"


class PolicyError(VerificationError):
    """Refused by trust policy: untrusted or revoked content, rollback, wrong platform."""

    default_code = "content-not-trusted"


class LogError(VerificationError):
    """A transparency log refused: a proof that does not verify, a fork, a rewritten history."""

    default_code = "log-inconsistent"


class NotFoundError(VtregError):
    """A file or directory that was asked for does not exist or cannot be read."""


class KeyFileError(VtregError):
    """A key file is missing, unreadable or not an ed25519 key in a format we accept."""


class PassphraseError(VtregError):
    """No passphrase was available, or it did not decrypt the key."""


class WriteError(VtregError):
    """A file could not be written, or would have overwritten one that exists."""


class RegistryError(VtregError):
    """The trust registry could not be opened, read or written, or its schema is wrong."""


class UsageError(VtregError):
    """The request itself is invalid (bad option value, impossible combination)."""
