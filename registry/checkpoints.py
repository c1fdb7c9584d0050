"""The log signer: checkpoints of the audit log, signed only if consistent with the last one.

The signer keeps its own state outside the database (a JSON file beside the
log key, written atomically, 0600): the log's origin and vkey, its cadence,
and the last checkpoint it signed. Before signing a new tree it rebuilds it
from that checkpoint alone:

* the right edge of the last signed tree is read from the tiles and must
  hash to the root it signed (else the history it signed was rewritten);
* the events after it are read and hashed one by one onto that edge (not
  trusting the tiles for them), and the result must equal the tiles' root.

So whoever writes the database but does not hold the log key cannot get an
edited, truncated, reordered or rebuilt history signed: the signer refuses.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from vtreg.verifier.errors import LogError, NotFoundError, UsageError, VtregError
from vtreg.verifier.files import atomic_write, read_bounded
from vtreg.verifier.keyrefs import Signer
from vtreg.verifier.merkle import CompactRange
from vtreg.verifier.note import (
    ED25519,
    Checkpoint,
    Note,
    NoteSignature,
    NoteVerifier,
    open_note,
    parse_note,
    sign_note,
)
from vtreg.verifier.policy import Policy

from .db import vtreg_home
from .service import Registry
from .tlog import TreeReader, event_leaves

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_INTERVAL",
    "SignerState",
    "default_state_path",
    "gather_cosignatures",
    "init_log",
    "sign_checkpoint",
]

_FORMAT = "vtreg-log-signer-v1"
DEFAULT_EVERY = 256  # events, as Tessera's default batch
DEFAULT_INTERVAL = timedelta(seconds=10)
_MAX_STATE_BYTES = 256 * 1024


def default_state_path() -> Path:
    """``$VTREG_HOME/log-signer.json``."""
    return vtreg_home() / "log-signer.json"


@dataclass(frozen=True)
class SignerState:
    """What the signer remembers: the log, its cadence, the last checkpoint it signed."""

    origin: str
    vkey: str
    every: int = DEFAULT_EVERY
    interval_s: float = DEFAULT_INTERVAL.total_seconds()
    size: int = 0
    root: str = base64.b64encode(b"").decode()  # set with the first checkpoint
    note: str | None = None
    signed_at: str | None = None

    @classmethod
    def read(cls, path: Path) -> SignerState:
        """Read the state file.

        Raises:
            NotFoundError: there is none (run ``vtreg audit init``).
            VtregError: it is not a signer state.
        """
        try:
            data = read_bounded(path, _MAX_STATE_BYTES, f"log signer state {path}")
        except NotFoundError as e:
            raise NotFoundError(
                f"no log signer state at {path}: run `vtreg audit init` (with --resume-from "
                "the last checkpoint signed, if this log was checkpointed before)"
            ) from e
        not_state = VtregError(f"{path} is not a vtreg log signer state")
        try:
            fields = json.loads(data)
        except ValueError as e:
            raise not_state from e
        if not isinstance(fields, dict) or fields.pop("format", None) != _FORMAT:
            raise not_state
        try:
            return cls(**fields)
        except TypeError as e:
            raise not_state from e

    def write(self, path: Path) -> None:
        """Replace the state file atomically (readers see the old state or the new one)."""
        document: dict[str, Any] = {"format": _FORMAT, **asdict(self)}
        atomic_write(path, (json.dumps(document, indent=2) + "\n").encode(), 0o600)

    def due(self, size: int, at: datetime) -> bool:
        """Whether the cadence asks for a checkpoint of ``size`` events at ``at``."""
        if size <= self.size:
            return False
        if size - self.size >= self.every or self.signed_at is None:
            return True
        last = datetime.fromisoformat(self.signed_at)
        return at - last >= timedelta(seconds=self.interval_s)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One signer at a time per state file (a lock file beside it)."""
    try:
        fd = os.open(f"{path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
    except FileNotFoundError as e:
        raise NotFoundError(f"no log signer state at {path}: run `vtreg audit init`") from e
    except OSError as e:
        raise VtregError(f"cannot lock {path}: {e.strerror}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def init_log(
    registry: Registry,
    key: Signer,
    origin: str,
    state_path: Path,
    *,
    every: int = DEFAULT_EVERY,
    interval: timedelta = DEFAULT_INTERVAL,
    resume_from: bytes | None = None,
    new_log: bool = False,
) -> tuple[str, bool]:
    """Name the log and its key in the registry and start the signer's state; its vkey.

    Returns the vkey and whether anything was new. Running it again with the
    same key and origin changes nothing but the cadence.

    A state is started only for an empty log, or from ``resume_from`` (the
    last checkpoint the operator trusts, signed by this key: the signer then
    demands that the log extends it), or with ``new_log`` (the operator says
    no checkpoint of this log was ever published). A database that holds
    events cannot tell whether a lost state once signed them.

    Raises:
        UsageError: a bad origin or cadence, a publisher key, a log (or a
            state file) that already has another origin or key, or no state
            for a log that holds events and neither ``resume_from`` nor ``new_log``.
        SignatureError: ``resume_from`` is not signed by this log key.
    """
    if every < 1 or interval.total_seconds() <= 0:
        raise UsageError("a checkpoint cadence needs --every 1 or more and an --interval above 0")
    if resume_from is not None and new_log:
        raise UsageError("--resume-from and --new-log exclude each other")
    verifier = NoteVerifier(origin, ED25519, key.public_key)
    try:  # the state may live apart from the registry, in a directory not made yet
        state_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise VtregError(f"cannot create {state_path.parent}: {e.strerror}") from e
    with _locked(state_path):
        try:
            state = SignerState.read(state_path)
        except NotFoundError:
            state = _start(registry, verifier, state_path, resume_from, new_log)
        else:
            if resume_from is not None or (new_log and state.note is not None):
                raise UsageError(
                    f"{state_path} already holds this signer's state ({state.size} events "
                    "signed): --resume-from and --new-log are for a state that was lost"
                )
        if (state.origin, state.vkey) != (origin, verifier.vkey):
            raise UsageError(f"{state_path} signs for the log {state.origin!r}, key {state.vkey}")
        created = registry.name_log(origin, verifier.vkey)
        replace(state, every=every, interval_s=interval.total_seconds()).write(state_path)
    return verifier.vkey, created


def _start(
    registry: Registry,
    verifier: NoteVerifier,
    state_path: Path,
    resume_from: bytes | None,
    new_log: bool,
) -> SignerState:
    """A first state for a signer that has none: see :func:`init_log`."""
    if resume_from is not None:
        note, _ = open_note(resume_from, [verifier])
        checkpoint = Checkpoint.parse(note.text)
        if checkpoint.origin != verifier.name:
            raise UsageError(
                f"--resume-from is a checkpoint of {checkpoint.origin!r}, not of {verifier.name!r}"
            )
        root = base64.b64encode(checkpoint.root).decode()
        text = note.to_bytes().decode()
        return SignerState(verifier.name, verifier.vkey, size=checkpoint.size, root=root, note=text)
    with registry.snapshot() as connection:
        size = TreeReader(connection).size()
    if not new_log and (size or registry.log_identity() or registry.checkpoint()):
        raise UsageError(
            f"no log signer state at {state_path}, but the audit log already holds {size} "
            "events: if it was ever checkpointed, the state was lost; give --resume-from "
            "the last checkpoint you trust (a witness, a verifier or a fleet host keeps one), "
            "or --new-log if no checkpoint of this log was ever published"
        )
    return SignerState(verifier.name, verifier.vkey)


def sign_checkpoint(
    registry: Registry, key: Signer, state_path: Path, *, at: datetime, if_due: bool = False
) -> Note | None:
    """Sign a checkpoint of the whole log, if it is consistent with the last one signed.

    Returns the note (the last one again if the log has not grown), or None
    when ``if_due`` and the cadence does not ask for one yet.

    Raises:
        LogError: the log is not an extension of the last signed checkpoint
            (rewritten, truncated), or its tiles disagree with its events.
        UsageError: ``key`` is not this state's log key.
    """
    with _locked(state_path):
        state = SignerState.read(state_path)
        if NoteVerifier(state.origin, ED25519, key.public_key).vkey != state.vkey:
            raise UsageError(f"the key given is not the log key of {state.origin!r} ({state.vkey})")
        with registry.snapshot() as connection:
            size = TreeReader(connection).size()
            if if_due and not state.due(size, at):
                return None
            root = _extend(connection, state, size)
        if state.note is not None and size == state.size:
            return parse_note(state.note.encode())
        text = Checkpoint(state.origin, size, root).text()
        note = Note(text, (sign_note(text, key, state.origin),))
        signed = note.to_bytes().decode()
        root_text = base64.b64encode(root).decode()
        replace(
            state, size=size, root=root_text, note=signed, signed_at=at.astimezone(UTC).isoformat()
        ).write(state_path)
    registry.store_checkpoint(size, signed)
    return note


def _extend(connection: Connection, state: SignerState, size: int) -> bytes:
    """The root of the log's ``size`` events, rebuilt from the state's last checkpoint."""
    if size < state.size:
        raise LogError(
            f"the audit log holds {size} events, fewer than the {state.size} of the last "
            "checkpoint signed: truncated; refusing to sign"
        )
    tree = TreeReader(connection)
    edge = tree.edge(state.size) if state.size else CompactRange()
    if state.note is not None and base64.b64encode(edge.root()).decode() != state.root:
        raise LogError(
            f"the first {state.size} events are not those of the last checkpoint signed "
            "(the history was rewritten); refusing to sign"
        )
    for leaf in event_leaves(connection, state.size, size):
        edge.append(leaf)
    root = edge.root()
    if tree.root(size) != root:
        raise LogError(
            "the audit log's Merkle tiles disagree with its events (edited?); refusing to sign"
        )
    return root


def gather_cosignatures(registry: Registry, note: Note, policy: Policy) -> tuple[Note, list[str]]:
    """Ask each witness of ``policy`` with a URL to cosign ``note``; the note with the
    cosignatures that verify, and what went wrong with the others.

    A witness that is behind gets the consistency proof it asks for (from its
    size to the note's). A returned line that does not verify for this very
    checkpoint (stale, for another checkpoint, or forged) is dropped.
    """
    from .witness import submit

    checkpoint = Checkpoint.parse(note.text)
    data, text = note.to_bytes(), note.text.encode()
    lines: list[NoteSignature] = []
    problems: list[str] = []
    with registry.snapshot() as connection:
        tree = TreeReader(connection)

        def proof_from(old: int) -> list[bytes]:
            if old > checkpoint.size:
                raise VtregError(f"the witness has seen {old} events, more than this checkpoint")
            return tree.consistency(old, checkpoint.size)

        for name, url in policy.urls.items():
            verifier = policy.witnesses[name]
            try:
                returned = submit(url, data, proof_from)
            except VtregError as e:
                problems.append(str(e))
                continue
            good = [
                line
                for line in returned
                if (line.name, line.key_id) == (verifier.name, verifier.key_id)
                and verifier.verifies(text, line.signature)
            ]
            if not good:
                problems.append(
                    f"witness {name} ({url}) returned no valid cosignature of this checkpoint "
                    "(stale or forged): ignored"
                )
            lines += good
    return note.with_signatures(lines), problems
