"""Checking the audit log against signed checkpoints, as any verifier of the log does.

A verifier (``vtreg audit verify --checkpoint FILE``) accepts a checkpoint
only under its policy, only if the log's events hash to the checkpoint's
root (recomputed from the events, not read from the tiles), and only if it
is consistent with the latest checkpoint this verifier accepted before. It
keeps that latest checkpoint in its own state directory, outside the
database, one file per log origin (as Go's sumdb client keeps ``latest``).
On a fork it raises :class:`~vtreg.verifier.fork.ForkError` with evidence
anyone can check.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from vtreg.verifier.errors import LogError, NotFoundError
from vtreg.verifier.files import atomic_write, read_bounded
from vtreg.verifier.fork import ForkError, ForkEvidence
from vtreg.verifier.merkle import (
    CompactRange,
    consistency_proof,
    tile_hash_reader,
    tiles_of,
    verify_consistency,
)
from vtreg.verifier.note import MAX_NOTE_BYTES, Checkpoint, parse_note
from vtreg.verifier.policy import AcceptedCheckpoint, Policy

from .db import vtreg_home
from .service import Registry
from .tlog import TreeReader, event_leaves

__all__ = ["MonitorReport", "default_state_dir", "verify_checkpoint"]


def default_state_dir() -> Path:
    """``$VTREG_HOME/log-verifier``: the latest checkpoint accepted, per log."""
    return vtreg_home() / "log-verifier"


@dataclass(frozen=True)
class MonitorReport:
    """What :func:`verify_checkpoint` found: the checkpoint, and the one accepted before."""

    accepted: AcceptedCheckpoint
    previous: Checkpoint | None
    latest: Checkpoint  # what the state holds now


def _state_file(state_dir: Path, origin: str) -> Path:
    return state_dir / (hashlib.sha256(origin.encode()).hexdigest() + ".checkpoint")


def _latest(state_dir: Path, origin: str) -> tuple[bytes, Checkpoint] | None:
    try:
        data = read_bounded(_state_file(state_dir, origin), MAX_NOTE_BYTES, "latest checkpoint")
    except NotFoundError:
        return None
    return data, Checkpoint.parse(parse_note(data).text)


class _Tree:
    """The tree recomputed from the events: roots at the sizes asked, and its tiles."""

    def __init__(self, connection: Connection, size: int, wanted: set[int]) -> None:
        edge, leaves, self.roots = CompactRange(), bytearray(), {0: CompactRange().root()}
        for leaf in event_leaves(connection, 0, size):
            edge.append(leaf)
            leaves += leaf
            if edge.size in wanted:
                self.roots[edge.size] = edge.root()
        if TreeReader(connection).root(size) != edge.root():
            raise LogError("the audit log's Merkle tiles disagree with its events (edited?)")
        self._leaves = bytes(leaves)

    def proof(self, old: int, new: int) -> tuple[bytes, ...]:
        data = self._leaves[: new * 32]
        tiles = tiles_of(data[i : i + 32] for i in range(0, len(data), 32))
        return tuple(consistency_proof(tile_hash_reader(lambda lv, n: tiles[lv, n]), old, new))


def verify_checkpoint(
    registry: Registry, data: bytes, policy: Policy, state_dir: Path
) -> MonitorReport:
    """Accept ``data`` (a signed checkpoint) for this registry's audit log, or refuse it.

    Raises:
        VerificationError: see :meth:`Policy.accept`.
        ForkError: the checkpoint and the latest one accepted before disagree
            about the same leaves, with evidence.
        LogError: the log does not hold what a checkpoint signed (rewritten,
            truncated), or its tiles disagree with its events.
    """
    accepted = policy.accept(data)
    given = accepted.checkpoint
    before = _latest(state_dir, given.origin)
    sizes = {given.size} | ({before[1].size} if before else set())
    with registry.snapshot() as connection:
        size = TreeReader(connection).size()
        if size < given.size:
            raise LogError(
                f"the audit log holds {size} events, the checkpoint signed {given.size}: truncated?"
            )
        tree = _Tree(connection, min(size, max(sizes)), sizes)
    if tree.roots[given.size] != given.root:
        _refuse_other_history(tree, data, given, before)
    if before is not None:
        _check_consistent(tree, data, given, before)
        if before[1].size > given.size:
            return MonitorReport(accepted, before[1], before[1])
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(_state_file(state_dir, given.origin), data, 0o600)
    return MonitorReport(accepted, before[1] if before else None, given)


def _refuse_other_history(
    tree: _Tree, data: bytes, given: Checkpoint, before: tuple[bytes, Checkpoint] | None
) -> None:
    """The log's events are not what ``given`` signed: a fork if the log matches ``before``."""
    if before is not None and given.size <= before[1].size:
        old_note, old = before
        if tree.roots.get(old.size) == old.root:
            proof = tree.proof(given.size, old.size)
            evidence = ForkEvidence(data, old_note, proof, tree.roots[given.size])
            raise ForkError(
                f"the checkpoint of {given.size} events contradicts the one of {old.size} "
                "accepted before: the log forked",
                evidence,
            )
    raise LogError(
        f"the audit log's first {given.size} events are not those the checkpoint signed "
        "(rewritten?)"
    )


def _check_consistent(
    tree: _Tree, data: bytes, given: Checkpoint, before: tuple[bytes, Checkpoint]
) -> None:
    """``given`` (which the log matches) must extend, or be a prefix of, ``before``."""
    old_note, old = before
    if old.size > given.size:
        if tree.roots.get(old.size) != old.root:
            raise LogError(
                f"the audit log no longer holds the {old.size} events of the checkpoint "
                "accepted before (rewritten or truncated?)"
            )
        return
    root = tree.roots[old.size]
    proof = tree.proof(old.size, given.size)
    verify_consistency(old.size, given.size, root, given.root, proof)
    if root != old.root:
        raise ForkError(
            f"the checkpoint of {given.size} events does not extend the one of {old.size} "
            "accepted before: the log forked",
            ForkEvidence(old_note, data, proof, root),
        )
