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
    "ContentError",
    "DigestsMissingError",
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
]


class VtregError(Exception):
    """Root of every error vtreg raises on purpose."""


class VerificationError(VtregError):
    """A definite "no": the thing examined is refused.

    ``keyids`` names the trusted keys whose signatures were valid, and
    ``subject`` the authenticated (name, version, content digest) when the
    refusal came after the signatures checked out, so that an audit record of
    the refusal can say what and whose signature was involved.
    """

    def __init__(
        self,
        message: str,
        *,
        keyids: tuple[str, ...] = (),
        subject: tuple[str, str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.keyids = keyids
        self.subject = subject


class FormatError(VerificationError):
    """A plugin.json, plugin.sig or statement is malformed or oversize."""


class SignatureError(VerificationError):
    """Not enough valid signatures from trusted keys."""


class ContentError(VerificationError):
    """The directory differs from what was signed (changed, missing or extra file)."""


class UnsafeFileError(VerificationError):
    """A symlink, device, FIFO or socket inside a plugin directory, or a path escape."""


class ExpiredError(VerificationError):
    """The signature has expired."""


class PolicyError(VerificationError):
    """Refused by trust policy: untrusted or revoked plugin, rollback, wrong platform."""


class DigestsMissingError(VtregError):
    """The statement names digest algorithms the capture did not compute; capture again."""

    def __init__(self, algorithms: tuple[str, ...]) -> None:
        super().__init__(f"capture again with {', '.join(algorithms)}")
        self.algorithms = algorithms


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
