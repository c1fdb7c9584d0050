"""Every syncing host a witness of the registry's transparency log.

A fleet timestamp carries the audit log's latest signed checkpoint. A host
that syncs with ``--log VKEY`` accepts it only if the log key signed it and
it extends the checkpoint the host accepted before (kept in its state), as
Go's sumdb client keeps ``latest``. With ``--policy FILE`` (C2SP tlog-policy)
it also needs the cosignatures of the policy's quorum of witnesses.

The consistency proof between the two sizes is not carried by the
repository: the host computes it from the hash tiles the publisher serves
under ``log/`` (C2SP tlog-tiles), which are immutable files, so the proof
fits whatever size each host last saw. Tiles
are not trusted: the proof they give must verify against the new signed
root, and only then can the old size's root in it contradict the old
checkpoint, which is a fork anyone can check from the evidence.

Pure: the caller hands in a function that reads one tile.
"""

from __future__ import annotations

from collections.abc import Callable

from vtreg.verifier.errors import LogError, VerificationError
from vtreg.verifier.fork import ForkError, ForkEvidence
from vtreg.verifier.merkle import (
    HASH_SIZE,
    TILE_HEIGHT,
    TILE_WIDTH,
    consistency_proof,
    subtree_hash,
    tile_hash_reader,
    verify_consistency,
)
from vtreg.verifier.note import Checkpoint, NoteVerifier, parse_note
from vtreg.verifier.policy import Policy
from vtreg.verifier.tiles import tile_path

__all__ = ["TileFetcher", "checkpoint_size", "log_policy", "witness_checkpoint"]

TileFetcher = Callable[[str, int], bytes]  # (path under log/, its length) -> its bytes


def checkpoint_size(note: str) -> int:
    """The tree size of a checkpoint the host accepted (its state's)."""
    return Checkpoint.parse(parse_note(note.encode("utf-8")).text).size


def log_policy(log: str) -> Policy:
    """How a host accepts the log's checkpoints, from what its state keeps: a vkey (the
    log's signature alone) or the text of a tlog-policy (logs, witnesses, a quorum).

    Raises:
        FormatError: neither a vkey nor a policy.
    """
    if "\n" in log:  # a policy has a log line and a quorum line; a vkey is one word
        return Policy.parse(log)
    return Policy((NoteVerifier.parse(log),))


def _accept(note: bytes | None, policy: Policy) -> Checkpoint:
    names = ", ".join(v.name for v in policy.logs)
    if note is None:
        raise LogError(
            f"the fleet timestamp carries no checkpoint of the log {names}, and this host "
            "witnesses it",
            code="log-checkpoint-missing",
        )
    try:
        return policy.accept(note).checkpoint
    except VerificationError as e:
        if e.code == "quorum":
            raise LogError(
                f"the fleet timestamp's checkpoint lacks the witnesses this host requires: {e}",
                code="log-quorum",
            ) from e
        raise LogError(
            f"the fleet timestamp's checkpoint is not one the log key {names} signed: {e}",
            code="log-signature",
        ) from e


def _tiles(size: int, fetch: TileFetcher) -> Callable[[int, int], bytes]:
    """Read tile (level, n) of the tree of ``size`` leaves, full or partial, by its path."""

    def read(level: int, n: int) -> bytes:
        width = min(TILE_WIDTH, (size >> (TILE_HEIGHT * level)) - n * TILE_WIDTH)
        if width <= 0:
            raise LogError(f"tile {level}/{n} is not in a tree of {size} leaves")
        data = fetch(tile_path(level, n, width), width * HASH_SIZE)
        if len(data) != width * HASH_SIZE:
            raise LogError(f"tile {level}/{n} of the published log is not {width} hashes")
        return data

    return read


def witness_checkpoint(
    note: bytes | None, previous: bytes | None, policy: Policy, fetch: TileFetcher
) -> bytes:
    """Accept the checkpoint ``note`` a fleet timestamp carries, after ``previous``.

    Args:
        note: the signed checkpoint the timestamp carries (None: it carries none).
        previous: the checkpoint this host accepted before (None: the first).
        policy: the log's key and the witnesses it needs (see :func:`log_policy`).
        fetch: reads a tile of the published log (only when the tree grew).

    Returns:
        The checkpoint the host now holds (``note``).

    Raises:
        LogError: ``log-checkpoint-missing``, ``log-signature``, ``log-quorum``
            (too few witnesses cosigned it), ``log-rollback``,
            ``log-fork`` (a :class:`ForkError` with evidence), or
            ``log-inconsistent`` (the published tiles do not prove the new root).
    """
    given = _accept(note, policy)
    assert note is not None  # noqa: S101 - _accept refused a missing one
    if previous is None:
        return note
    old = Checkpoint.parse(parse_note(previous).text)
    if given.size < old.size:
        raise LogError(
            f"the timestamp's checkpoint is of {given.size} events, fewer than the {old.size} "
            "this host accepted before: a rollback of the log",
            code="log-rollback",
        )
    if given.size == old.size:
        proof: tuple[bytes, ...] = ()
        in_new = given.root
    else:
        read = tile_hash_reader(_tiles(given.size, fetch))
        proof = tuple(consistency_proof(read, old.size, given.size))
        in_new = subtree_hash(read, 0, old.size)
        verify_consistency(old.size, given.size, in_new, given.root, proof)
    if in_new != old.root:
        raise ForkError(
            f"the checkpoint of {given.size} events contradicts the one of {old.size} this "
            "host accepted before: the log forked",
            ForkEvidence(previous, note, proof, in_new),
            code="log-fork",
        )
    return note
