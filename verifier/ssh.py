"""OpenSSH's key formats: ``ssh-ed25519 AAAA... comment`` lines and fingerprints.

OpenSSH writes a public key as one line: the key type, the base64 of the key
blob (RFC 4253 §6.6: string "ssh-ed25519", string the 32 raw bytes) and an
optional comment. Its fingerprint is ``SHA256:`` and the unpadded base64 of
the blob's SHA-256 (what ``ssh-keygen -lf`` and ``ssh-add -l`` print). The
key id stays the SHA-256 of the raw 32 bytes, as for every other key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from cryptography.hazmat.primitives import serialization

from .errors import KeyFileError
from .keys import PublicKey
from .text import printable

__all__ = [
    "ED25519",
    "blob_type",
    "fingerprint",
    "is_public_line",
    "parse_blob",
    "parse_public_line",
    "public_blob",
    "public_line",
    "read_string",
    "ssh_string",
]

ED25519 = "ssh-ed25519"
_LINE = re.compile(r"([a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?: (.*))?")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def ssh_string(value: bytes) -> bytes:
    """``value`` as an SSH wire string: a 4-byte big-endian length, then the bytes."""
    return struct.pack(">I", len(value)) + value


def read_string(data: bytes, offset: int, what: str) -> tuple[bytes, int]:
    """The SSH wire string at ``offset`` and the offset after it.

    Raises:
        KeyFileError: the data ends before the string does.
    """
    if offset + 4 > len(data):
        raise KeyFileError(f"{what}: truncated")
    (length,) = struct.unpack_from(">I", data, offset)
    end = offset + 4 + length
    if end > len(data):
        raise KeyFileError(f"{what}: truncated")
    return data[offset + 4 : end], end


def public_blob(key: PublicKey) -> bytes:
    """The key's OpenSSH wire blob (what agents and ``.pub`` lines carry).

    An ECDSA key's is RFC 5656's ``ecdsa-sha2-nistp256`` (or ``-nistp384``) blob,
    so that its line and fingerprint are the ones ``ssh-keygen`` shows for it.
    """
    if key.key_type == "ed25519":
        return ssh_string(ED25519.encode()) + ssh_string(key.raw)
    line = serialization.load_der_public_key(key.raw).public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return base64.b64decode(line.split()[1])


def fingerprint(blob: bytes) -> str:
    """``SHA256:...`` of a key blob, as ``ssh-keygen -lf`` and ``ssh-add -l`` print it."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def public_line(key: PublicKey) -> str:
    """The key as an OpenSSH public key line, its name as the comment."""
    blob = public_blob(key)
    line = f"{blob_type(blob)} {base64.b64encode(blob).decode('ascii')}"
    return f"{line} {key.name}" if key.name else line


def is_public_line(text: str) -> bool:
    """True if ``text`` looks like an OpenSSH public key line of any type."""
    return _LINE.fullmatch(text.strip()) is not None


def parse_public_line(text: str, what: str = "public key") -> PublicKey:
    """Parse an OpenSSH ``ssh-ed25519 AAAA... [comment]`` line.

    The comment names the key when it is a safe name (``alice``, not
    ``alice@host``, which would not fit the registry's names).

    Raises:
        KeyFileError: not one OpenSSH line, not ed25519, or a blob that
            disagrees with its type or is not a usable ed25519 key.
    """
    match = _LINE.fullmatch(text.strip())
    if match is None:
        raise KeyFileError(f"{what}: not an OpenSSH public key line")
    kind, body, comment = match.groups()
    if kind != ED25519:
        raise KeyFileError(f"{what}: expected an {ED25519} key, found {printable(kind)}")
    try:
        blob = base64.b64decode(body, validate=True)
    except binascii.Error as e:
        raise KeyFileError(f"{what}: its key is not valid base64") from e
    name = comment.strip() if comment and _SAFE_NAME.fullmatch(comment.strip()) else None
    return parse_blob(blob, what, name)


def blob_type(blob: bytes) -> str:
    """The key type a blob names (``ssh-ed25519``, ``ssh-rsa``, ...), or "?" if none."""
    try:
        kind, _ = read_string(blob, 0, "key")
    except KeyFileError:
        return "?"
    return kind.decode("ascii", errors="replace")


def parse_blob(blob: bytes, what: str, name: str | None = None) -> PublicKey:
    """The ed25519 public key in an OpenSSH key blob.

    Raises:
        KeyFileError: the blob is not exactly an ``ssh-ed25519`` key.
    """
    kind, offset = read_string(blob, 0, what)
    if kind != ED25519.encode():
        shown = printable(kind.decode("ascii", errors="replace"))
        raise KeyFileError(f"{what}: expected an {ED25519} key, found {shown}")
    raw, offset = read_string(blob, offset, what)
    if offset != len(blob):
        raise KeyFileError(f"{what}: its key blob is not an {ED25519} key")
    return PublicKey(raw, name)
