"""C2SP signed notes, their ed25519 verifier keys, checkpoints and cosignatures.

* signed-note (c2sp.org/signed-note): a UTF-8 text ending in a newline, a
  blank line, then signature lines ``— <name> base64(key id || signature)``.
  A key id is ``SHA-256(name || 0x0A || type || public key)[:4]``; a vkey is
  ``<name>+<hex key id>+base64(type || public key)``. Type 0x01 is an ed25519
  signature over the text, the log's own.
* tlog-cosignature/v1 (type 0x04): a witness's ed25519 signature over
  ``cosignature/v1\\ntime <T>\\n`` followed by the checkpoint text, carried
  as ``timestamp (8 bytes, big-endian) || signature``.
* tlog-checkpoint: a note text of origin, tree size, base64 root hash and
  optional extension lines.

Verification follows signed-note: signatures by unknown keys (name and id not
both known) are ignored; a known key's signature that fails rejects the
whole note; a note with no verified known signature is rejected.

Pure: no IO, no clock (a cosignature's time is a parameter).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._base64 import decode_canonical
from .errors import FormatError, SignatureError
from .keys import PublicKey

if TYPE_CHECKING:
    from .keyrefs import Signer  # a key file's key, or one in ssh-agent or on a token

__all__ = [
    "COSIGNATURE",
    "ED25519",
    "MAX_NOTE_BYTES",
    "Checkpoint",
    "Note",
    "NoteSignature",
    "NoteVerifier",
    "cosign",
    "decode_base64",
    "open_note",
    "parse_note",
    "sign_note",
]

ED25519 = 0x01
COSIGNATURE = 0x04
MAX_NOTE_BYTES = 64 * 1024
_MAX_SIGNATURES = 64  # the spec asks for at least 16
_DASH = "\u2014"
_MAX_TIMESTAMP = 2**63 - 1
# A key name: non-empty, no Unicode space, no plus (and, as all of a note, no control).
_NAME = re.compile(r"[^\s+\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise FormatError(f"{name!r} is not a note key name (no spaces, no '+', not empty)")
    return name


def _key_id(name: str, kind: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def decode_base64(text: str, what: str) -> bytes:
    """Standard, canonical base64 (RFC 4648 section 4), as every C2SP format uses.

    Raises:
        FormatError: anything else, ``what`` naming the field.
    """
    if "-" in text or "_" in text:
        raise FormatError(f"{what} is not standard base64")
    try:
        return decode_canonical(text)
    except ValueError as e:
        raise FormatError(f"{what} is not canonical base64") from e


@dataclass(frozen=True)
class NoteVerifier:
    """A key that verifies notes: a name, a signature type and an ed25519 public key."""

    name: str
    kind: int
    key: PublicKey

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.kind not in (ED25519, COSIGNATURE):
            raise FormatError(f"signature type {self.kind:#04x} is not ed25519 (0x01) or 0x04")
        if self.key.key_type != "ed25519":
            raise FormatError(f"a note key is ed25519; {self.key.short_id} is {self.key.key_type}")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id signature lines carry."""
        return _key_id(self.name, self.kind, self.key.raw)

    @property
    def vkey(self) -> str:
        """The C2SP vkey text."""
        material = base64.b64encode(bytes([self.kind]) + self.key.raw).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """Parse a vkey; its key id must be the one its name and key give.

        Raises:
            FormatError: not a vkey of an ed25519 or cosignature key, or a key id
                that does not match.
        """
        name, plus, rest = vkey.strip().partition("+")
        hex_id, plus2, material = rest.partition("+")
        if not (plus and plus2 and re.fullmatch(r"[0-9a-f]{8}", hex_id)):
            raise FormatError("a vkey is <name>+<8 hex digits>+<base64 key>")
        raw = decode_base64(material, "the vkey's key")
        if len(raw) != 33:
            raise FormatError(f"a vkey's key is a type byte and 32 bytes, found {len(raw)} bytes")
        from .errors import KeyFileError

        try:
            verifier = cls(_check_name(name), raw[0], PublicKey(raw[1:], name))
        except KeyFileError as e:
            raise FormatError(f"the vkey of {name!r}: {e}") from e
        if verifier.key_id.hex() != hex_id:
            raise FormatError(f"the vkey of {name!r} names key id {hex_id}, its key has another")
        return verifier

    def verifies(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (a line's bytes after the key id) signs ``text``."""
        if self.kind == ED25519:
            return len(signature) == 64 and self.key.verify(signature, text)
        if len(signature) != 72:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > _MAX_TIMESTAMP:
            return False
        return self.key.verify(signature[8:], _cosigned(text, timestamp))


def _cosigned(text: bytes, timestamp: int) -> bytes:
    return b"cosignature/v1\ntime %d\n" % timestamp + text


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id, and the signature bytes after the id."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The line as a note carries it, newline included."""
        data = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_DASH} {self.name} {data}\n"

    @property
    def timestamp(self) -> int | None:
        """A cosignature's time (POSIX seconds), if this is one."""
        return int.from_bytes(self.signature[:8], "big") if len(self.signature) == 72 else None


@dataclass(frozen=True)
class Note:
    """A note: its text (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        """The signed note, byte for byte."""
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        """The same note with ``extra`` signature lines added (a line already there once)."""
        lines = list(self.signatures)
        lines += [s for s in extra if s not in lines]
        return Note(self.text, tuple(lines))


def parse_note(data: bytes) -> Note:
    """Split a signed note into its text and signature lines; check the format only.

    Raises:
        FormatError: oversize, not UTF-8, a control character, no blank line, a
            malformed signature line, or too many of them.
    """
    if len(data) > MAX_NOTE_BYTES:
        raise FormatError(f"a note is at most {MAX_NOTE_BYTES} bytes, found {len(data)}")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError("a note must be UTF-8") from e
    if _CONTROL.search(whole):
        raise FormatError("a note holds a control character other than newline")
    cut = whole.rfind("\n\n")
    if cut < 0 or not whole.endswith("\n"):
        raise FormatError("a signed note is a text, a blank line and signature lines")
    # Lines end in U+000A alone (as Go's note.Open): not splitlines(), which also ends
    # a line at U+0085, U+2028 and the like.
    text, block = whole[: cut + 1], whole[cut + 2 : -1]
    lines = block.split("\n") if block else []
    if not lines or len(lines) > _MAX_SIGNATURES:
        raise FormatError(f"a note has 1 to {_MAX_SIGNATURES} signature lines, found {len(lines)}")
    return Note(text, tuple(_signature_line(line) for line in lines))


def _signature_line(line: str) -> NoteSignature:
    dash, _, rest = line.partition(" ")
    name, _, data = rest.partition(" ")
    if dash != _DASH or not _NAME.fullmatch(name) or not data:
        raise FormatError("a note signature line is '\u2014 <name> <base64 signature>'")
    raw = decode_base64(data, f"the signature of {name!r}")
    if len(raw) < 5:
        raise FormatError(f"the signature of {name!r} is too short")
    return NoteSignature(name, raw[:4], raw[4:])


def open_note(
    data: bytes, verifiers: Sequence[NoteVerifier]
) -> tuple[Note, tuple[NoteVerifier, ...]]:
    """Parse and verify a note; return it and the known keys whose signatures verified.

    Raises:
        FormatError: see :func:`parse_note`.
        SignatureError: a known key's signature does not verify (``bad-signature``),
            or no known key signed (``unknown-key``).
    """
    note = parse_note(data)
    text = note.text.encode()
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[NoteVerifier] = []
    for line in note.signatures:
        verifier = known.get((line.name, line.key_id))
        if verifier is None:
            continue  # unknown keys are ignored, even with a known name or id
        if not verifier.verifies(text, line.signature):
            raise SignatureError(
                f"the signature of {line.name}+{line.key_id.hex()} does not verify",
                code="bad-signature",
            )
        if verifier not in verified:
            verified.append(verifier)
    if not verified:
        names = ", ".join(sorted({v.name for v in verifiers})) or "none"
        raise SignatureError(f"the note is not signed by a known key ({names})", code="unknown-key")
    return note, tuple(verified)


def sign_note(text: str, key: Signer, name: str) -> NoteSignature:
    """The ed25519 (type 0x01) signature line of ``key``, named ``name``, over ``text``."""
    _check_name(name)
    return NoteSignature(name, _key_id(name, ED25519, key.public_key.raw), key.sign(text.encode()))


def cosign(text: str, key: Signer, name: str, *, timestamp: int) -> NoteSignature:
    """The cosignature/v1 (type 0x04) line of witness ``key`` over checkpoint ``text``."""
    _check_name(name)
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"a cosignature time is 0 to 2**63 - 1, not {timestamp}")
    signed = key.sign(_cosigned(text.encode(), timestamp))
    key_id = _key_id(name, COSIGNATURE, key.public_key.raw)
    return NoteSignature(name, key_id, timestamp.to_bytes(8, "big") + signed)


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint: the log's origin, tree size and root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The note text."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text.

        Raises:
            FormatError: fewer than three lines, an empty line, a size with a
                leading zero or a root that is not 32 bytes of base64.
        """
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or "" in lines[:-1]:
            raise FormatError("a checkpoint is origin, size and root hash lines, none empty")
        origin, size, root, *extensions = lines[:-1]
        if not re.fullmatch(r"0|[1-9][0-9]{0,18}", size):
            raise FormatError(f"a checkpoint's tree size is a decimal number, not {size!r}")
        digest = decode_base64(root, "a checkpoint's root hash")
        if len(digest) != 32:
            raise FormatError(f"a checkpoint's root hash is 32 bytes, found {len(digest)}")
        return cls(origin, int(size), digest, tuple(extensions))
