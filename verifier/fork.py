"""Transferable evidence that a log signed two inconsistent checkpoints (a fork).

The evidence is the two signed checkpoints, a consistency proof from the
smaller tree size to the larger one that verifies against the larger
checkpoint's root, and the root of the smaller size that proof shows the
larger tree to have. Anyone holding the log's vkey can check it
(:meth:`ForkEvidence.check`): both notes are the log's, the proof holds for
the larger one, and the smaller one signed another root for the same leaves.
This is what Go's sumdb client prints on a fork (its ``TestClientFork``).

Pure: no IO.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from .errors import LogError
from .merkle import verify_consistency
from .note import Checkpoint
from .policy import Policy

__all__ = ["ForkError", "ForkEvidence"]


@dataclass(frozen=True)
class ForkEvidence:
    """Two checkpoints of one log, and the proof that they disagree."""

    older: bytes  # the signed note of the smaller tree
    newer: bytes  # the signed note of the larger (or equal) tree
    proof: tuple[bytes, ...]
    older_root_in_newer: bytes

    def check(self, policy: Policy) -> tuple[Checkpoint, Checkpoint]:
        """Confirm the fork; return the two checkpoints.

        Raises:
            VerificationError: a note is not the log's (see :meth:`Policy.accept`).
            LogError: this is not evidence of a fork.
        """
        older = policy.accept(self.older).checkpoint
        newer = policy.accept(self.newer).checkpoint
        if older.origin != newer.origin or older.size > newer.size:
            raise LogError("not a fork: two logs, or the checkpoints in the wrong order")
        verify_consistency(older.size, newer.size, self.older_root_in_newer, newer.root, self.proof)
        if self.older_root_in_newer == older.root:
            raise LogError("not a fork: the two checkpoints are consistent")
        return older, newer

    def to_json(self) -> dict[str, object]:
        """The evidence as JSON: the two notes, the proof and the root, base64 where binary."""
        return {
            "older": self.older.decode(),
            "newer": self.newer.decode(),
            "proof": [base64.b64encode(h).decode() for h in self.proof],
            "older_root_in_newer": base64.b64encode(self.older_root_in_newer).decode(),
        }

    def text(self) -> str:
        """The evidence for people and for other verifiers, in one block of text."""
        older, newer = self.older.decode(), self.newer.decode()
        lines = [
            "FORK: the log signed two checkpoints that no append-only log can both have.",
            "",
            "checkpoint (smaller tree):",
            older.rstrip("\n"),
            "",
            "checkpoint (larger tree):",
            newer.rstrip("\n"),
            "",
            "in the larger tree the first leaves hash to (not the smaller checkpoint's root):",
            base64.b64encode(self.older_root_in_newer).decode(),
            "consistency proof between the two sizes in the larger tree:",
            *(base64.b64encode(h).decode() for h in self.proof),
        ]
        return "\n".join(lines)


class ForkError(LogError):
    """The log forked: ``evidence`` shows it to anyone."""

    def __init__(self, message: str, evidence: ForkEvidence, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.evidence = evidence
