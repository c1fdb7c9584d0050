"""Keys: key ids, public key files, passphrase-protected private keys.

Signing key files are ed25519 (a key on a PKCS#11 token may also be ECDSA). A
trusted public key may also be ECDSA P-256 or P-384 (what KMS and HSM signers
produce), so that such signatures count.

Private keys are PKCS#8 PEM (or OpenSSH's own format, read and kept as
such). Encrypted PKCS#8 keys use PBES2 with scrypt (N=2^14, r=8, p=8) and
AES-256-CBC rather than the library default of PBKDF2 with 2,048
iterations, because a stolen key file should cost an attacker real memory
and time per guess. N·r sets the memory (16 MiB, within OpenSSL's default
32 MiB cap, so ``openssl pkey`` decrypts it); p=8 keeps the work per guess
that N=2^17, p=1 had. The result is a standard ``ENCRYPTED PRIVATE KEY``
(RFC 8018 + RFC 7914) that any PKCS#8 reader with scrypt support decrypts.

A public key file is a PEM ``PUBLIC KEY`` block with ``# keyid:`` and
``# name:`` comment lines above it; the key id is recomputed on load and a
file whose comment disagrees is refused.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .errors import KeyFileError, NotFoundError, PassphraseError
from .files import read_bounded
from .text import printable

# cryptography (~20 ms to import) is imported where it is used: verifying an ed25519
# signature from a registry's raw key needs none of it (libsodium verifies).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "MAX_KEY_FILE_BYTES",
    "SCRYPT_N",
    "KeyType",
    "PublicKey",
    "SigningKey",
    "is_openssh_private_key",
    "keyid_of",
    "load_private_key",
    "load_public_key",
    "read_private_key_file",
    "read_public_key_file",
]

MAX_KEY_FILE_BYTES = 16 * 1024
_OPENSSH_LABEL = "OPENSSH PRIVATE KEY"
SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 8

Passphrase = bytes | Callable[[], bytes] | None


KeyType = Literal["ed25519", "ecdsa-p256", "ecdsa-p384"]

# The ECDSA curves a trusted key may use, and the hash each signs with: SHA-256 on
# P-256, SHA-384 on P-384, as securesystemslib's ecdsa-sha2-nistp256/384 schemes and
# sigstore do.
_ECDSA_CURVES: dict[str, tuple[KeyType, str]] = {
    "secp256r1": ("ecdsa-p256", "SHA256"),
    "secp384r1": ("ecdsa-p384", "SHA384"),
}


def _ecdsa_hash(curve: str) -> hashes.HashAlgorithm:
    """The hash an ECDSA signature on ``curve`` is over (see _ECDSA_CURVES)."""
    from cryptography.hazmat.primitives import hashes

    algorithm: hashes.HashAlgorithm = getattr(hashes, _ECDSA_CURVES[curve][1])()
    return algorithm


def keyid_of(raw_public_key: bytes) -> str:
    """Key id: lowercase hex SHA-256 of the key's raw bytes (see :attr:`PublicKey.raw`)."""
    return hashlib.sha256(raw_public_key).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """A public key with its key id and an optional human name.

    ``raw`` is what the key id hashes and the registry stores: an ed25519
    key's 32 bytes, or an ECDSA P-256/P-384 key's DER SubjectPublicKeyInfo with
    its point uncompressed (one encoding per key, so one key has one id).
    ``key_type`` follows from it.
    """

    raw: bytes
    name: str | None = None
    keyid: str = field(init=False)
    key_type: KeyType = field(init=False)
    _ecdsa: ec.EllipticCurvePublicKey | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ecdsa = None
        if len(self.raw) == 32:
            key_type: KeyType = "ed25519"
            problem = _weak_point(self.raw)
            if problem is not None:
                raise KeyFileError(f"not a usable ed25519 public key: {problem}")
        else:
            ecdsa, key_type = _ecdsa_key(self.raw)
        object.__setattr__(self, "keyid", keyid_of(self.raw))
        object.__setattr__(self, "key_type", key_type)
        object.__setattr__(self, "_ecdsa", ecdsa)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is this key's signature over ``message``.

        An ed25519 signature is its 64 bytes; an ECDSA one is DER-encoded
        (r, s) over SHA-256 (P-256) or SHA-384 (P-384). Anything else is False.
        """
        if self._ecdsa is not None:
            return _ecdsa_verify(self._ecdsa, signature, message)
        if len(signature) == 64:
            return _ed25519_verify(self.raw, signature, message)
        return False

    @property
    def ecdsa_hash(self) -> hashes.HashAlgorithm | None:
        """The hash an ECDSA signature by this key is over; None for an ed25519 key."""
        if self._ecdsa is None:
            return None
        return _ecdsa_hash(self._ecdsa.curve.name)

    def to_pem(self) -> bytes:
        """The key as a SubjectPublicKeyInfo PEM block."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        key = self._ecdsa or Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def to_file_bytes(self) -> bytes:
        """The public key file: comments carrying key id and name, then the PEM block."""
        lines = [f"# vtreg public key ({self.key_type})", f"# keyid: {self.keyid}"]
        if self.name:
            lines.append(f"# name: {self.name}")
        return ("\n".join(lines) + "\n").encode() + self.to_pem()

    @property
    def short_id(self) -> str:
        """The first 16 hex digits of the key id, for tables and messages."""
        return self.keyid[:16]

    def label(self) -> str:
        """``keyid-prefix (name)`` for messages."""
        return f"{self.short_id}({self.name})" if self.name else self.short_id


def _ecdsa_verify(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key.verify(signature, message, ec.ECDSA(_ecdsa_hash(key.curve.name)))
    except InvalidSignature:
        return False
    return True


def _ecdsa_key(der: bytes) -> tuple[ec.EllipticCurvePublicKey, KeyType]:
    """The ECDSA key whose canonical DER SubjectPublicKeyInfo is ``der``."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFileError(
            f"not a usable public key: neither 32 ed25519 bytes nor a DER SubjectPublicKeyInfo "
            f"({len(der)} bytes)"
        ) from e
    raw = _raw_public_key(key, "public key")
    if not isinstance(key, ec.EllipticCurvePublicKey) or raw != der:
        # A compressed point, or an ed25519 key spelled as DER, would give one key a second id.
        raise KeyFileError("not a usable public key: not its canonical encoding")
    return key, _ECDSA_CURVES[key.curve.name][0]


def _raw_public_key(key: PublicKeyTypes, what: str) -> bytes:
    """``key``'s :attr:`PublicKey.raw` bytes, if it is a type that vtreg verifies."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(key, Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _ECDSA_CURVES:
        return key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    found = f"ECDSA {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else None
    raise KeyFileError(
        f"{what}: expected an ed25519 or ECDSA P-256/P-384 key, found {found or type(key).__name__}"
    )


# --- refusing weak public keys ---
#
# A public key of small order (the identity, or a point of order 2, 4 or 8)
# accepts forged signatures: with R = identity and S = 0, "verification"
# succeeds for any message, and OpenSSL does not refuse such keys. Several of
# them, each with its own key id, would also meet a k-of-n threshold together.
# So every public key is decoded here and refused if it is not canonically
# encoded, not on the curve, or of small order (8·A is the identity).

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


@functools.lru_cache(maxsize=4096)  # keys are checked each time a registry hands them out
def _ed25519_verify(raw: bytes, signature: bytes, message: bytes) -> bool:
    """libsodium's ed25519 verification (PyNaCl), not OpenSSL's.

    It runs on every load, and libsodium's takes about half the time here. It is
    also the stricter of the two: besides what OpenSSL refuses (S >= L), it refuses
    a signature whose R has small order, so it accepts no signature OpenSSL refuses
    (tests/verifier/test_ed25519_edges.py runs the ed25519-speccheck cases through
    both). Imported here, so that commands that verify nothing never load it.
    """
    from nacl.bindings import crypto_sign_open
    from nacl.exceptions import BadSignatureError

    try:
        crypto_sign_open(signature + message, raw)
    except BadSignatureError:
        return False
    return True


def _weak_point(encoded: bytes) -> str | None:
    """Why ``encoded`` is not a usable ed25519 public key, or None if it is."""
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    if y >= _P:
        return "non-canonical encoding"
    yy = y * y % _P
    u, v = (yy - 1) % _P, (_D * yy + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if v * x * x % _P != u:
        x = x * _SQRT_M1 % _P
        if v * x * x % _P != u:
            return "not a point on the curve"
    if x == 0 and sign:
        return "non-canonical encoding"
    if x & 1 != sign:
        x = _P - x
    # Double three times in extended coordinates (X, Y, Z, T) and look for the identity.
    X, Y, Z = x, y, 1
    for _ in range(3):
        A, B = X * X % _P, Y * Y % _P
        C = 2 * Z * Z % _P
        H = (A + B) % _P
        E = (H - (X + Y) * (X + Y)) % _P
        G = (A - B) % _P
        F = (C + G) % _P
        X, Y, Z = E * F % _P, G * H % _P, F * G % _P
    if X == 0 and Y == Z:
        return "a point of small order (it would accept forged signatures)"
    return None


class SigningKey:
    """An ed25519 private key. Never printed, never part of an error message."""

    def __init__(self, key: Ed25519PrivateKey, name: str | None = None) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = key
        self.public_key = PublicKey(
            key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ),
            name,
        )

    @classmethod
    def generate(cls, name: str | None = None) -> SigningKey:
        """A fresh random key pair, optionally named."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate(), name)

    @property
    def keyid(self) -> str:
        """The key id of the public half."""
        return self.public_key.keyid

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ed25519 signature of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"SigningKey(keyid={self.keyid!r})"

    def to_pem(self, passphrase: bytes | None, *, scrypt_n: int = SCRYPT_N) -> bytes:
        """PKCS#8 PEM; encrypted with scrypt + AES-256-CBC unless ``passphrase`` is None."""
        from cryptography.hazmat.primitives import serialization

        plain = self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if passphrase is None:
            return _pem("PRIVATE KEY", plain)
        if not passphrase:
            raise PassphraseError("refusing to encrypt a key with an empty passphrase")
        return _pem("ENCRYPTED PRIVATE KEY", _encrypt_pkcs8(plain, passphrase, scrypt_n))

    def to_openssh(self, passphrase: bytes | None) -> bytes:
        """The OpenSSH private key format (``ssh-keygen``'s), bcrypt-encrypted with a passphrase."""
        from cryptography.hazmat.primitives import serialization

        if passphrase is not None and not passphrase:
            raise PassphraseError("refusing to encrypt a key with an empty passphrase")
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
        )


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode("ascii")


# --- a minimal DER writer for one fixed structure: EncryptedPrivateKeyInfo ---

_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        size = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(size)]) + size
    return bytes([tag]) + length + body


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _octets(value: bytes) -> bytes:
    return _tlv(0x04, value)


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _encrypt_pkcs8(plain_der: bytes, passphrase: bytes, scrypt_n: int) -> bytes:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    salt, iv = os.urandom(16), os.urandom(16)
    kek = Scrypt(salt=salt, length=32, n=scrypt_n, r=_SCRYPT_R, p=_SCRYPT_P).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain_der) + padder.finalize()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    kdf = _seq(
        _oid(_OID_SCRYPT),
        _seq(_octets(salt), _int(scrypt_n), _int(_SCRYPT_R), _int(_SCRYPT_P), _int(32)),
    )
    scheme = _seq(_oid(_OID_PBES2), _seq(kdf, _seq(_oid(_OID_AES256_CBC), _octets(iv))))
    return _seq(scheme, _octets(ciphertext))


# --- loading ---

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z ]+)-----\r?\n[A-Za-z0-9+/=\r\n]*?-----END \1-----\r?\n?"
)


def _single_pem_block(data: bytes, what: str) -> tuple[str, bytes]:
    blocks = list(_PEM_BLOCK.finditer(data))
    if len(blocks) != 1:
        raise KeyFileError(f"{what}: expected exactly one PEM block, found {len(blocks)}")
    return blocks[0].group(1).decode("ascii"), blocks[0].group(0)


def load_public_key(data: bytes, what: str = "public key") -> PublicKey:
    """Parse a public key file (or a bare SubjectPublicKeyInfo PEM, or an OpenSSH line).

    Raises:
        KeyFileError: not exactly one ed25519 or ECDSA P-256/P-384 ``PUBLIC KEY``
            block, or the ``# keyid:`` comment does not match the key.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    ssh_line = _openssh_line(data)
    if ssh_line is not None:
        from .ssh import parse_public_line

        return parse_public_line(ssh_line, what)
    minisign = _minisign_key(data, what)
    if minisign is not None:
        return minisign
    label, block = _single_pem_block(data, what)
    if label != "PUBLIC KEY":
        raise KeyFileError(f"{what}: expected a PUBLIC KEY block, found {label}")
    try:
        key = serialization.load_pem_public_key(block)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyFileError(f"{what}: not a readable public key") from e
    comments = _comments(data)
    public = PublicKey(_raw_public_key(key, what), comments.get("name"))
    claimed = comments.get("keyid")
    if claimed is not None and claimed != public.keyid:
        raise KeyFileError(
            f"{what}: its keyid line says {claimed[:16]}… but the key's id is {public.short_id}…"
        )
    return public


_MINISIGN_COMMENT = "untrusted comment:"


def _minisign_key(data: bytes, what: str) -> PublicKey | None:
    """A minisign public key file (``untrusted comment: ...`` then base64 of ``Ed``, an
    8-byte key id and the 32-byte ed25519 key), or None if ``data`` is not one.

    minisign's own key id is not vtreg's: the key id stays the SHA-256 of the raw key.
    """
    lines = data.decode("ascii", errors="replace").splitlines()
    lines = [line.strip() for line in lines if line.strip()]
    if len(lines) != 2 or not lines[0].startswith(_MINISIGN_COMMENT):
        return None
    try:
        blob = base64.b64decode(lines[1], validate=True)
    except ValueError as e:
        raise KeyFileError(f"{what}: a minisign public key whose key line is not base64") from e
    if len(blob) != 42 or blob[:2] != b"Ed":
        raise KeyFileError(
            f"{what}: not a minisign ed25519 public key ({len(blob)} bytes, "
            f"algorithm {printable(blob[:2].decode('ascii', errors='replace'))})"
        )
    return PublicKey(blob[10:])


def _openssh_line(data: bytes) -> str | None:
    """The one line of ``data`` that is not a comment, if it holds no PEM block and has
    a space: an OpenSSH ``TYPE BASE64 [comment]`` line, or what is meant as one."""
    if b"-----BEGIN " in data:
        return None
    text = data.decode("ascii", errors="replace")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return lines[0] if len(lines) == 1 and " " in lines[0].strip() else None


def _comments(data: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in data.decode("ascii", errors="replace").splitlines():
        if line.startswith("#") and ":" in line:
            key, _, value = line[1:].partition(":")
            found.setdefault(key.strip().lower(), value.strip())
    return found


def load_private_key(
    data: bytes, passphrase: Passphrase, what: str = "private key", name: str | None = None
) -> SigningKey:
    """Parse a PKCS#8 PEM ed25519 private key, decrypting it if it is encrypted.

    Args:
        passphrase: bytes, or a callable asked only when the key is encrypted.

    Raises:
        KeyFileError: not an ed25519 PKCS#8 key.
        PassphraseError: the key is encrypted and the passphrase is missing or wrong.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    label, block = _single_pem_block(data, what)
    if label == _OPENSSH_LABEL:
        return _load_openssh_private_key(block, passphrase, what, name)
    if label not in ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        raise KeyFileError(f"{what}: expected a PKCS#8 PRIVATE KEY block, found {label}")
    secret: bytes | None = None
    if label == "ENCRYPTED PRIVATE KEY":
        secret = passphrase() if callable(passphrase) else passphrase
        if not secret:
            raise PassphraseError(f"{what} is encrypted and no passphrase was given")
    try:
        key = serialization.load_pem_private_key(block, secret)
    except ValueError as e:
        if secret is not None:
            # A wrong passphrase usually fails the padding check, but about one in
            # 256 decrypts to well-padded garbage that then fails to parse.
            raise PassphraseError(f"wrong passphrase for {what} (or the key is damaged)") from e
        raise KeyFileError(f"{what}: not a readable PKCS#8 private key") from e
    except UnsupportedAlgorithm as e:
        raise KeyFileError(f"{what}: uses an unsupported key or cipher") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{what}: expected an ed25519 key, found {type(key).__name__}")
    return SigningKey(key, name)


def is_openssh_private_key(data: bytes) -> bool:
    """True if ``data`` is an OpenSSH-format private key (``ssh-keygen``'s default)."""
    return data.lstrip().startswith(b"-----BEGIN " + _OPENSSH_LABEL.encode())


def _load_openssh_private_key(
    block: bytes, passphrase: Passphrase, what: str, name: str | None
) -> SigningKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    secret: bytes | None = None
    if _openssh_is_encrypted(block, what):
        secret = passphrase() if callable(passphrase) else passphrase
        if not secret:
            raise PassphraseError(f"{what} is encrypted and no passphrase was given")
    try:
        key = serialization.load_ssh_private_key(block, secret)
    except ValueError as e:
        if secret is not None:
            raise PassphraseError(f"wrong passphrase for {what} (or the key is damaged)") from e
        raise KeyFileError(f"{what}: not a readable OpenSSH private key") from e
    except UnsupportedAlgorithm as e:
        raise KeyFileError(f"{what}: uses an unsupported key or cipher") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{what}: expected an ed25519 key, found {type(key).__name__}")
    return SigningKey(key, name)


def _openssh_is_encrypted(block: bytes, what: str) -> bool:
    """Whether the key's cipher is not "none" (the format's header says so in clear)."""
    body = b"".join(line for line in block.splitlines() if not line.startswith(b"-----"))
    try:
        raw = base64.b64decode(body, validate=True)
    except ValueError as e:
        raise KeyFileError(f"{what}: not a readable OpenSSH private key") from e
    magic = b"openssh-key-v1\0"
    if not raw.startswith(magic) or len(raw) < len(magic) + 4:
        raise KeyFileError(f"{what}: not a readable OpenSSH private key")
    length = int.from_bytes(raw[len(magic) : len(magic) + 4], "big")
    return raw[len(magic) + 4 : len(magic) + 4 + length] != b"none"


def read_public_key_file(path: str | os.PathLike[str]) -> PublicKey:
    """Read and parse a public key file; see :func:`load_public_key`.

    Raises:
        KeyFileError: the file is missing, unreadable, oversize or not a public key.
    """
    data = _read_key_file(path)
    return load_public_key(data, what=str(path))


def read_private_key_file(path: str | os.PathLike[str], passphrase: Passphrase) -> SigningKey:
    """Read and parse a private key file; see :func:`load_private_key`.

    The key is named after the file (``alice.key`` -> ``alice``).

    Raises:
        KeyFileError: the file is missing, unreadable, oversize or not an ed25519 key.
        PassphraseError: the passphrase is missing or wrong.
    """
    data = _read_key_file(path)
    return load_private_key(data, passphrase, str(path), Path(path).name.removesuffix(".key"))


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    try:
        return read_bounded(path, MAX_KEY_FILE_BYTES, f"key file {path}", too_large=KeyFileError)
    except NotFoundError as e:
        raise KeyFileError(str(e)) from e
