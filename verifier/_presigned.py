"""Whether plugin.sig carries valid signatures by ``--threshold`` of the ``--key`` files, cheaply.

The early capture of ``vtreg verify DIR --key PUB`` (:class:`~vtreg.verifier.tree.PendingCapture`)
may read more than a few MiB of DIR only once plugin.sig is known to come from a key the
user named, and it cannot wait for the CLI to import what checks it properly
(pydantic, cryptography) without losing the overlap it exists for. This checks just
that: ed25519 signatures in the envelope by as many distinct keys read from plain
``PUBLIC KEY`` files as the threshold asks verify, with libsodium, over the DSSE
pre-authentication encoding of the payload. It decides nothing: the full check
(:func:`~vtreg.verifier.signatures.verify_envelope`: threshold, scope, expiry) still
runs before anything read is used. Anything this does not recognise (another key
format, an ECDSA key, a malformed envelope) answers False, and the
capture then waits for that full check.

Standard library and PyNaCl only, so the forked child can run it while its parent imports.
"""

from __future__ import annotations

import binascii
import json
import os
import re
import stat

__all__ = ["signed_by"]

# An ed25519 SubjectPublicKeyInfo is this DER prefix and the key's 32 bytes (RFC 8410).
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
_PEM = re.compile(rb"-----BEGIN PUBLIC KEY-----\s+([A-Za-z0-9+/=\s]+?)-----END PUBLIC KEY-----")
_MAX_KEY_FILE = 64 << 10
_MAX_TRIED = 16  # signatures tried: bounds what a crafted envelope costs here


def _ed25519_key(path: str) -> bytes | None:
    """The raw ed25519 key of a public key file holding one PEM block, or None."""
    try:
        # O_NONBLOCK: a FIFO named as a key must not stall the capture
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, _MAX_KEY_FILE + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    blocks = _PEM.findall(data)
    if len(data) > _MAX_KEY_FILE or len(blocks) != 1:
        return None
    try:
        der = binascii.a2b_base64(blocks[0])
    except binascii.Error:
        return None
    if len(der) != 44 or not der.startswith(_ED25519_SPKI):
        return None
    return der[12:]


def _signatures(envelope: bytes) -> tuple[bytes, list[bytes]] | None:
    """The PAE bytes the envelope's signatures cover and its first signatures, or None."""
    try:
        parsed = json.loads(envelope)
        kind = parsed["payloadType"].encode("utf-8")
        payload = binascii.a2b_base64(parsed["payload"].encode("ascii"))
        sigs = [binascii.a2b_base64(s["sig"].encode("ascii")) for s in parsed["signatures"]]
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, binascii.Error):
        return None
    message = b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)
    return message, [s for s in sigs[:_MAX_TRIED] if len(s) == 64]


def signed_by(envelope: bytes | None, key_files: tuple[str, ...], threshold: int = 1) -> bool:
    """True if ``threshold`` distinct ed25519 keys among ``key_files`` signed ``envelope``.

    Lenient where it may be (base64 padding, unknown fields): a True lets a capture read
    what the statement claims, never lets the plugin verify.
    """
    if envelope is None or not key_files or threshold < 1:
        return False
    keys = list(dict.fromkeys(k for k in map(_ed25519_key, key_files) if k is not None))
    signed = _signatures(envelope) if len(keys) >= threshold else None
    if not signed:
        return False
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    message, sigs = signed
    signers: set[bytes] = set()
    for sig in sigs:
        for key in keys:
            if key in signers:
                continue
            try:
                crypto_sign_open(sig + message, key)
            except (BadSignatureError, ValueError, TypeError):
                continue
            signers.add(key)
            if len(signers) >= threshold:
                return True
    return False
