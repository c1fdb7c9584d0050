"""Which checkpoints to accept: C2SP tlog-policy (logs, witnesses, groups, a quorum).

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> all|any|<k> <member>...
    quorum <name>|none

A checkpoint is accepted if one of the logs signed it (its origin being that
log's key name) and the witnesses whose cosignatures (cosignature/v1) verify
satisfy the quorum. Per signed-note, lines by unknown keys are ignored and a
known key's line that fails rejects the note.

Pure: no IO.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import FormatError, SignatureError, VerificationError
from .note import COSIGNATURE, ED25519, Checkpoint, Note, NoteVerifier, open_note

__all__ = ["AcceptedCheckpoint", "Policy"]

_MAX_POLICY_BYTES = 64 * 1024
_FIELD = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class AcceptedCheckpoint:
    """A checkpoint the policy accepted: the note, its contents, who cosigned it."""

    note: Note
    checkpoint: Checkpoint
    witnesses: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """Known logs, known witnesses (by policy name), groups and the quorum."""

    logs: tuple[NoteVerifier, ...]
    witnesses: Mapping[str, NoteVerifier] = field(default_factory=dict)
    groups: Mapping[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    quorum: str = "none"
    urls: Mapping[str, str] = field(default_factory=dict)  # witness name: submission prefix

    @classmethod
    def parse(cls, text: str) -> Policy:
        """Parse a policy file.

        Raises:
            FormatError: an unknown line, a bad vkey or threshold, a name used
                before it is defined or twice, a duplicate key, no quorum line.
        """
        if len(text) > _MAX_POLICY_BYTES:
            raise FormatError(f"a policy is at most {_MAX_POLICY_BYTES} bytes")
        if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text):
            raise FormatError("a policy holds a control character other than tab and newline")
        builder = _Builder()
        for number, line in enumerate(text.split("\n"), start=1):
            words = _FIELD.split(line.strip())
            if words == [""] or words[0].startswith("#"):
                continue
            try:
                builder.add(words)
            except FormatError as e:
                raise FormatError(f"policy line {number}: {e}") from e
        return builder.build()

    def accept(self, data: bytes) -> AcceptedCheckpoint:
        """Verify a checkpoint note under this policy.

        Raises:
            FormatError: not a signed checkpoint.
            SignatureError: no known log signed it, its origin is not that log's
                name, or a known key's signature fails.
            VerificationError: (code ``quorum``) too few witnesses cosigned it.
        """
        known = [*self.logs, *self.witnesses.values()]
        note, verified = open_note(data, known)
        logs = [v for v in verified if v in self.logs]
        if not logs:
            raise SignatureError("the checkpoint is not signed by a known log", code="unknown-key")
        checkpoint = Checkpoint.parse(note.text)
        if checkpoint.origin not in {v.name for v in logs}:
            raise SignatureError(
                f"the checkpoint's origin {checkpoint.origin!r} is not the name of the log "
                "that signed it",
                code="unknown-key",
            )
        cosigned = tuple(n for n, v in self.witnesses.items() if v in verified)
        if not self._witnessed(self.quorum, set(cosigned)):
            raise VerificationError(
                f"the checkpoint is cosigned by {len(cosigned)} known witnesses "
                f"({', '.join(cosigned) or 'none'}), which does not meet quorum {self.quorum}",
                code="quorum",
            )
        return AcceptedCheckpoint(note, checkpoint, cosigned)

    def _witnessed(self, name: str, cosigned: set[str]) -> bool:
        if name == "none":
            return True
        if name in self.witnesses:
            return name in cosigned
        threshold, members = self.groups[name]
        return sum(self._witnessed(m, cosigned) for m in members) >= threshold


class _Builder:
    def __init__(self) -> None:
        self.logs: list[NoteVerifier] = []
        self.witnesses: dict[str, NoteVerifier] = {}
        self.groups: dict[str, tuple[int, tuple[str, ...]]] = {}
        self.quorum: str | None = None
        self.urls: dict[str, str] = {}
        self._keys: set[bytes] = set()

    def _key(self, vkey: str, kind: int, what: str) -> NoteVerifier:
        verifier = NoteVerifier.parse(vkey)
        if verifier.kind != kind:
            raise FormatError(
                f"a {what} key has signature type {kind:#04x}, not {verifier.kind:#04x}"
            )
        if verifier.key.raw in self._keys:
            raise FormatError(f"the {what} key {verifier.name} is listed twice")
        self._keys.add(verifier.key.raw)
        return verifier

    def _new_name(self, name: str) -> str:
        if name == "none" or name in self.witnesses or name in self.groups:
            raise FormatError(f"the name {name!r} is reserved or already defined")
        return name

    def add(self, words: Sequence[str]) -> None:
        keyword, args = words[0], words[1:]
        if keyword == "log" and len(args) in (1, 2):
            self.logs.append(self._key(args[0], ED25519, "log"))
        elif keyword == "witness" and len(args) in (2, 3):
            self.witnesses[self._new_name(args[0])] = self._key(args[1], COSIGNATURE, "witness")
            if len(args) == 3:
                self.urls[args[0]] = args[2]
        elif keyword == "group" and len(args) >= 3:
            self._group(args[0], args[1], args[2:])
        elif keyword == "quorum" and len(args) == 1:
            if self.quorum is not None:
                raise FormatError("a policy has exactly one quorum line")
            if args[0] != "none" and args[0] not in self.witnesses | self.groups:
                raise FormatError(f"the quorum names {args[0]!r}, defined nowhere before")
            self.quorum = args[0]
        else:
            raise FormatError(f"not a policy line: {' '.join(words)[:80]!r}")

    def _group(self, name: str, rule: str, members: Sequence[str]) -> None:
        undefined = [m for m in members if m not in self.witnesses and m not in self.groups]
        if undefined or len(set(members)) != len(members):
            raise FormatError(f"group {name!r} names undefined or repeated members")
        threshold = {"all": len(members), "any": 1}.get(rule)
        if threshold is None:
            if not re.fullmatch(r"[1-9][0-9]*", rule) or int(rule) > len(members):
                raise FormatError(f"group {name!r}: {rule!r} is not all, any or 1..{len(members)}")
            threshold = int(rule)
        self.groups[self._new_name(name)] = (threshold, tuple(members))

    def build(self) -> Policy:
        if self.quorum is None:
            raise FormatError("a policy needs a quorum line (quorum none for no witnesses)")
        return Policy(tuple(self.logs), self.witnesses, self.groups, self.quorum, self.urls)
