"""C2SP tlog-proof (``c2sp.org/tlog-proof@v1``): an entry's inclusion under a checkpoint.

    c2sp.org/tlog-proof@v1
    extra <base64>          (optional; vtreg puts the event's canonical bytes here)
    index <n>
    <base64 hash>...        (the inclusion proof, leaf's sibling first)

    <the checkpoint, a signed note, verbatim>

Verifying one checks the checkpoint under a :class:`~.policy.Policy`, then the
inclusion of the leaf in the checkpoint's tree. Pure: no IO.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .errors import FormatError
from .merkle import HASH_SIZE, leaf_hash, verify_inclusion
from .note import MAX_NOTE_BYTES, decode_base64
from .policy import AcceptedCheckpoint, Policy

__all__ = ["HEADER", "TlogProof"]

HEADER = "c2sp.org/tlog-proof@v1"
_MAX_HASHES = 63


@dataclass(frozen=True)
class TlogProof:
    """One entry's inclusion proof and the signed checkpoint it is relative to."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        """The proof file."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode() for h in self.hashes]
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint

    @classmethod
    def parse(cls, data: bytes) -> TlogProof:
        """Parse a proof file.

        Raises:
            FormatError: not a tlog-proof (header, index, hashes, blank line, note).
        """
        if len(data) > MAX_NOTE_BYTES * 2:
            raise FormatError("a tlog-proof is too large")
        head, blank, checkpoint = data.partition(b"\n\n")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError as e:
            raise FormatError("a tlog-proof's header lines are ASCII") from e
        if not blank or lines[0] != HEADER:
            raise FormatError(f"not a {HEADER} file")
        lines = lines[1:]
        extra = None
        if lines and lines[0].startswith("extra "):
            extra = decode_base64(lines.pop(0)[6:], "the proof's extra data")
        if not lines or not re.fullmatch(r"index (0|[1-9][0-9]{0,18})", lines[0]):
            raise FormatError("a tlog-proof names the entry's index: 'index <n>'")
        hashes = tuple(decode_base64(line, "a proof hash") for line in lines[1:])
        if len(hashes) > _MAX_HASHES or any(len(h) != HASH_SIZE for h in hashes):
            raise FormatError("a tlog-proof's hashes are at most 63 SHA-256 hashes")
        return cls(int(lines[0][6:]), hashes, checkpoint, extra)

    def verify(self, entry: bytes, policy: Policy) -> AcceptedCheckpoint:
        """Check that ``entry`` is entry ``index`` of a log the policy accepts.

        Raises:
            FormatError, SignatureError, VerificationError: see :meth:`Policy.accept`.
            LogError: the inclusion proof does not verify.
        """
        accepted = policy.accept(self.checkpoint)
        tree = accepted.checkpoint
        verify_inclusion(self.index, tree.size, leaf_hash(entry), self.hashes, tree.root)
        return accepted
