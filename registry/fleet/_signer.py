"""vtreg's own keys as securesystemslib signers, for TUF metadata.

TUF metadata is signed with the same keys ``vtreg sign`` signs with: a key
file, a key in ssh-agent or on a PKCS#11 token (any key reference,
:func:`vtreg.verifier.keyrefs.open_signer`), ed25519 only. The TUF key id of
a vtreg key is its vtreg key id (SHA-256 of the raw public key), so a key has
one id in the registry, in plugin.sig and in root.json.
"""

from __future__ import annotations

from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from vtreg.verifier.errors import UsageError
from vtreg.verifier.keyrefs import Signer as KeySigner
from vtreg.verifier.keys import PublicKey, read_private_key_file

__all__ = ["URI_SCHEME", "VtregSigner", "tuf_key"]

URI_SCHEME = "vtreg-file"


def tuf_key(public: PublicKey) -> SSlibKey:
    """``public`` as a TUF ed25519 key.

    Raises:
        UsageError: ``public`` is not an ed25519 key (an ECDSA token key, say).
    """
    if public.key_type != "ed25519":
        raise UsageError(f"fleet metadata is signed with ed25519 keys; {public.short_id} is not")
    return SSlibKey(public.keyid, "ed25519", "ed25519", {"public": public.raw.hex()})


class VtregSigner(Signer):
    """Signs TUF metadata with a vtreg signer (a key file's key, ssh-agent's, a token's)."""

    def __init__(self, key: KeySigner) -> None:
        self._key = key
        self._public = tuf_key(key.public_key)

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> VtregSigner:
        """The signer of a key file named ``vtreg-file:PATH``.

        ``secrets_handler("passphrase")`` is asked for the passphrase of an
        encrypted file.

        Raises:
            ValueError: another scheme, or the file holds another key than ``public_key``.
        """
        scheme, _, path = priv_key_uri.partition(":")
        if scheme != URI_SCHEME:
            raise ValueError(f"not a {URI_SCHEME} URI: {scheme}")
        handler = secrets_handler

        def passphrase() -> bytes:
            if handler is None:
                raise ValueError(f"{path} needs a passphrase and none can be asked for")
            return handler("passphrase").encode("utf-8")

        signer = cls(read_private_key_file(path, passphrase))
        if signer.public_key.keyid != public_key.keyid:
            raise ValueError(f"{path} holds key {signer.public_key.keyid}, not {public_key.keyid}")
        return signer

    @property
    def public_key(self) -> SSlibKey:
        """The TUF key of this signer."""
        return self._public

    def sign(self, payload: bytes) -> Signature:
        """The ed25519 signature of ``payload`` (hex), under this key's id."""
        return Signature(self._public.keyid, self._key.sign(payload).hex())
