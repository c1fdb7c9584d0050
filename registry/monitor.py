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

from vtreg.verifier.errors import LogError, NotFoundError
from vtreg.verifier.files import atomic_write, read_bounded
from vtreg.verifier.fork import ForkError, ForkEvidence
from vtreg.verifier.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_proof,
    subtree_hash,
    verify_consistency,
)
from vtreg.verifier.note import MAX_NOTE_BYTES, Checkpoint, parse_note
from vtreg.verifier.policy import AcceptedCheckpoint, Policy

from .audit import ChainReport, verify_chain
from .db import vtreg_home
from .service import Registry
from .tlog import TreeReader

__all__ = ["LogWalk", "MonitorReport", "default_state_dir", "verify_checkpoint", "walk_log"]


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
    """The tree recomputed from the events, fed each event's bytes by the chain walk:
    every complete subtree's hash, level by level, so any root or proof is at hand."""

    def __init__(self) -> None:
        self._leaves = bytearray()
        self._levels: list[bytes] = []
        self.size = 0  # leaves, once built

    def add(self, event: bytes) -> None:
        """The next event's canonical bytes (as :func:`~vtreg.verifier.merkle.leaf_hash`)."""
        self._leaves += hashlib.sha256(b"\x00" + event).digest()

    def build(self) -> None:
        """Hash the levels above the leaves (each complete pair of a level, once)."""
        level, sha256, pair = bytes(self._leaves), hashlib.sha256, 2 * HASH_SIZE
        self._levels, self.size = [level], len(level) // HASH_SIZE
        while len(level) >= pair:
            ends = range(pair, len(level) + 1, pair)
            level = b"".join([sha256(b"\x01" + level[end - pair : end]).digest() for end in ends])
            self._levels.append(level)
        self._leaves = bytearray()

    def _read(self, level: int, index: int) -> bytes:
        return self._levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE]

    def root(self, size: int) -> bytes | None:
        """The root of the first ``size`` events; None if the log holds fewer."""
        if size > self.size:
            return None
        return subtree_hash(self._read, 0, size) if size else EMPTY_ROOT

    def proof(self, old: int, new: int) -> tuple[bytes, ...]:
        return tuple(consistency_proof(self._read, old, new))


@dataclass(frozen=True)
class LogWalk:
    """The audit log walked once for a checkpoint: the chain's report, then :meth:`judge`."""

    chain: ChainReport
    _tree: _Tree
    _data: bytes
    _accepted: AcceptedCheckpoint
    _before: tuple[bytes, Checkpoint] | None
    _state_dir: Path

    def judge(self) -> MonitorReport:
        """The checkpoint against the log and the one accepted before; the new latest kept.

        Raises:
            ForkError: the checkpoint and the latest one accepted before disagree
                about the same leaves, with evidence.
            LogError: the chain is broken, or the log does not hold what a checkpoint
                signed (rewritten, truncated).
        """
        if not self.chain.ok:
            raise LogError(
                f"the audit chain is broken at event {self.chain.broken_at}: {self.chain.problem}"
            )
        tree, data, given, before = self._tree, self._data, self._accepted.checkpoint, self._before
        if tree.root(given.size) != given.root:
            _refuse_other_history(tree, data, given, before)
        if before is not None:
            _check_consistent(tree, data, given, before)
            if before[1].size > given.size:
                return MonitorReport(self._accepted, before[1], before[1])
        self._state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(_state_file(self._state_dir, given.origin), data, 0o600)
        return MonitorReport(self._accepted, before[1] if before else None, given)


def walk_log(
    registry: Registry,
    data: bytes,
    policy: Policy,
    state_dir: Path,
    *,
    anchor: tuple[int, str] | None = None,
) -> LogWalk:
    """Verify the audit chain (see :func:`registry.audit.verify_chain`) and recompute the
    tree from the same events, in one snapshot and one pass, for the checkpoint ``data``.

    Raises:
        VerificationError: the checkpoint is refused by ``policy`` (see :meth:`Policy.accept`).
        LogError: the chain is intact but shorter than the checkpoint, or the tiles
            disagree with the events.
    """
    accepted = policy.accept(data)
    given = accepted.checkpoint
    before = _latest(state_dir, given.origin)
    tree = _Tree()
    with registry.snapshot() as connection:
        chain = verify_chain(connection, anchor=anchor, leaves=tree.add)
        if chain.ok:
            if chain.events < given.size:
                raise LogError(
                    f"the audit log holds {chain.events} events, the checkpoint signed "
                    f"{given.size}: truncated?"
                )
            tree.build()
            if TreeReader(connection).root(chain.events) != tree.root(chain.events):
                raise LogError("the audit log's Merkle tiles disagree with its events (edited?)")
    return LogWalk(chain, tree, data, accepted, before, state_dir)


def verify_checkpoint(
    registry: Registry, data: bytes, policy: Policy, state_dir: Path
) -> MonitorReport:
    """Accept ``data`` (a signed checkpoint) for this registry's audit log, or refuse it.

    Raises:
        VerificationError: see :meth:`Policy.accept`.
        ForkError, LogError: see :func:`walk_log` and :meth:`LogWalk.judge`.
    """
    return walk_log(registry, data, policy, state_dir).judge()


def _refuse_other_history(
    tree: _Tree, data: bytes, given: Checkpoint, before: tuple[bytes, Checkpoint] | None
) -> None:
    """The log's events are not what ``given`` signed: a fork if the log matches ``before``."""
    if before is not None and given.size <= before[1].size:
        old_note, old = before
        if tree.root(old.size) == old.root:
            proof = tree.proof(given.size, old.size)
            evidence = ForkEvidence(data, old_note, proof, _held(tree, given.size))
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
        if tree.root(old.size) != old.root:
            raise LogError(
                f"the audit log no longer holds the {old.size} events of the checkpoint "
                "accepted before (rewritten or truncated?)"
            )
        return
    root = _held(tree, old.size)
    proof = tree.proof(old.size, given.size)
    verify_consistency(old.size, given.size, root, given.root, proof)
    if root != old.root:
        raise ForkError(
            f"the checkpoint of {given.size} events does not extend the one of {old.size} "
            "accepted before: the log forked",
            ForkEvidence(old_note, data, proof, root),
        )


def _held(tree: _Tree, size: int) -> bytes:
    """The root of ``size`` events, which the log is known to hold."""
    root = tree.root(size)
    assert root is not None  # noqa: S101 - size is at most the checkpoint's, which the log holds
    return root
