"""Key references: where a signing key or a public key is, as a user names it.

A signing key is a private key file (PKCS#8 PEM, or OpenSSH's own format),
``ssh-agent:PUBFILE`` or ``ssh-agent:SHA256:<fingerprint>`` (the agent
signs), or an RFC 7512 ``pkcs11:`` URI (the token signs). A public key is a
file (PEM or an OpenSSH ``.pub``) or an OpenSSH line given inline.

The agent and PKCS#11 code is imported only when such a reference is used,
so that ``vtreg --help`` and ``vtreg verify`` do not pay for it.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import KeyFileError
from .keys import (
    Passphrase,
    PublicKey,
    SigningKey,
    read_private_key_file,
    read_public_key_file,
)
from .text import printable

__all__ = [
    "AGENT_PREFIX",
    "PKCS11_PREFIX",
    "DelegatedKey",
    "Signer",
    "open_signer",
    "read_private_key_ref",
    "read_public_key_ref",
]

AGENT_PREFIX = "ssh-agent:"
PKCS11_PREFIX = "pkcs11:"

Pin = Callable[[str], bytes]  # asked with the token's name, only when no other PIN source is set


class Signer(Protocol):
    """What signing needs of a key: its public half and signatures that it verifies.

    A :class:`~vtreg.verifier.keys.SigningKey` is one; so is a key held by
    ssh-agent or a PKCS#11 token (:class:`DelegatedKey`).
    """

    @property
    def public_key(self) -> PublicKey:
        """The public half."""

    @property
    def keyid(self) -> str:
        """The key id of the public half."""

    def sign(self, message: bytes) -> bytes:
        """The signature of ``message`` (ed25519's 64 bytes, or DER-encoded ECDSA)."""


@dataclass(frozen=True)
class DelegatedKey:
    """A key whose private half stays elsewhere (an agent, a token); only signatures come back.

    Every signature is checked against the public key before it is used, so
    an agent or token that answers with another key's signature (or garbage)
    never gets into a plugin.sig.
    """

    public_key: PublicKey
    _sign: Callable[[bytes], bytes]
    where: str

    @property
    def keyid(self) -> str:
        """The key id of the public half."""
        return self.public_key.keyid

    def sign(self, message: bytes) -> bytes:
        """The signature of ``message``, made by the agent or token."""
        signature = self._sign(message)
        if not self.public_key.verify(signature, message):
            raise KeyFileError(f"{self.where} returned a signature that its key does not verify")
        return signature


def open_signer(ref: str, passphrase: Passphrase, pin: Pin | None = None) -> Signer:
    """The signing key ``ref`` names: a key file, ``ssh-agent:...`` or ``pkcs11:...``.

    Args:
        passphrase: for an encrypted key file (bytes, or a callable asked only if needed).
        pin: asked for a token's PIN when neither the URI nor the environment gives one.

    Raises:
        KeyFileError: the file, agent key or token key is missing, unusable or
            of a type vtreg does not sign with, or a private key file is readable by others.
        PassphraseError: a passphrase or PIN is missing or wrong.
    """
    if ref.startswith(AGENT_PREFIX):
        from .sshagent import agent_key

        selector = ref.removeprefix(AGENT_PREFIX)
        if selector.startswith("SHA256:"):
            return agent_key(selector)
        return agent_key(read_public_key_file(selector))
    if ref.startswith(PKCS11_PREFIX):
        from .pkcs11_token import token_key

        return token_key(ref, pin)
    return read_private_key_ref(ref, passphrase)


def read_private_key_ref(path: str, passphrase: Passphrase) -> SigningKey:
    """A private key file, refused if group or others may read or write it (as OpenSSH does).

    Raises:
        KeyFileError: see :func:`open_signer`.
        PassphraseError: the passphrase is missing or wrong.
    """
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        mode = 0  # missing or unreadable: reading it says which
    if stat.S_ISREG(mode) and mode & 0o077:
        raise KeyFileError(
            f"private key file {printable(path)} is mode {stat.S_IMODE(mode):04o}, open to "
            f"group or others; allow only its owner (chmod 600 {printable(path)})"
        )
    return read_private_key_file(path, passphrase)


def read_public_key_ref(ref: str) -> PublicKey:
    """A public key file, or an OpenSSH ``ssh-ed25519 AAAA...`` line given inline.

    Raises:
        KeyFileError: not a readable ed25519 public key.
    """
    from .ssh import is_public_line, parse_public_line

    if is_public_line(ref):  # no key file is named "ssh-ed25519 AAAA..."
        return parse_public_line(ref, "inline public key")
    return read_public_key_file(ref)
