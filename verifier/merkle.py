"""RFC 6962 Merkle trees: leaf and node hashes, inclusion and consistency proofs.

The audit log is a Merkle tree over its canonical event bytes (leaf index =
seq - 1): a leaf is ``SHA-256(0x00 || event)``, a node ``SHA-256(0x01 ||
left || right)``, the empty tree ``SHA-256("")``. Proofs are generated as RFC
6962 section 2.1 defines them and verified with the RFC 9162 algorithms
(section 2.1.3.2 and 2.1.4.2), which consume every proof hash and the whole
second tree size: a proof that leaves either unused is refused.

Proof generation reads the tree through a :data:`HashReader`, the hash of one
complete, aligned subtree (``2**level`` leaves starting at ``index *
2**level``), so that a store of tiles (C2SP tlog-tiles, see
:func:`tile_hash_reader`) answers each proof in O(log n) reads.

Pure: no IO, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from .errors import LogError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "CompactRange",
    "HashReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "subtree_hash",
    "tile_hash_reader",
    "tile_root",
    "tiles_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes in a full tile
EMPTY_ROOT = hashlib.sha256(b"").digest()
_MAX_PROOF = 63  # a tree of at most 2**63 leaves never needs more

HashReader = Callable[[int, int], bytes]
"""``read(level, index)``: the hash of leaves ``[index << level, (index + 1) << level)``."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The right edge of a growing tree: one hash per complete subtree, O(log n) memory.

    Appending leaf hashes one at a time and asking for :meth:`root` gives the
    tree hash without keeping the leaves (the audit walk, the signer).
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        # hashes[i] covers a complete subtree, largest first, as the set bits of size.
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} edge hashes")
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def of(cls, read: HashReader, size: int) -> CompactRange:
        """The right edge of the tree of ``size`` leaves, read from a store."""
        hashes, start = [], 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                hashes.append(read(level, start >> level))
                start += 1 << level
        return cls(size, hashes)

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash."""
        hashes, value, size = self.hashes, leaf, self.size
        while size & 1:  # merge with each complete subtree of equal height
            value = node_hash(hashes.pop(), value)
            size >>= 1
        hashes.append(value)
        self.size += 1

    def root(self) -> bytes:
        """The tree hash of the leaves so far."""
        if not self.hashes:
            return EMPTY_ROOT
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = node_hash(left, value)
        return value


def subtree_hash(read: HashReader, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range that starts aligned (as every range in a proof does)."""
    n = end - start
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return read(level, start >> level)
    k = _split(n)
    return node_hash(read(k.bit_length() - 1, start // k), subtree_hash(read, start + k, end))


def inclusion_proof(read: HashReader, index: int, size: int) -> list[bytes]:
    """RFC 6962 PATH(index, D[0:size]): from the leaf's sibling up to the root's child.

    Raises:
        ValueError: ``index`` is not a leaf of a tree of ``size`` leaves.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            proof.append(subtree_hash(read, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(read, start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof(read: HashReader, old: int, new: int) -> list[bytes]:
    """RFC 6962 PROOF(old, D[0:new]); empty when ``old`` is 0 or equals ``new``.

    Raises:
        ValueError: ``old`` is not between 0 and ``new``.
    """
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from a tree of {old} to one of {new} leaves")
    if old in (0, new):
        return []
    proof: list[bytes] = []
    start, end, whole = 0, new, True  # SUBPROOF(m, D[start:end], whole)
    m = old
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree_hash(read, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(read, start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(subtree_hash(read, start, end))
    proof.reverse()
    return proof


def _check_hashes(proof: Sequence[bytes]) -> None:
    if len(proof) > _MAX_PROOF or any(len(h) != HASH_SIZE for h in proof):
        raise LogError("a proof holds something other than at most 63 SHA-256 hashes")


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    Raises:
        LogError: the proof does not verify, or is longer or shorter than the tree needs.
    """
    _check_hashes(proof)
    if not 0 <= index < size:
        raise LogError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn, value = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise LogError(f"the inclusion proof of leaf {index} is longer than the tree")
        if fn & 1 or fn == sn:
            value = node_hash(sibling, value)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            value = node_hash(value, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise LogError(f"the inclusion proof of leaf {index} is shorter than the tree")
    if value != root:
        raise LogError(f"leaf {index} is not in the tree of {size} leaves with that root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new`` leaves with ``new_root`` extends ``old_root``.

    Raises:
        LogError: the proof does not verify, leaves a hash or the second size
            unused, or the sizes go backwards.
    """
    _check_hashes(proof)
    if not 0 <= old <= new:
        raise LogError(f"a tree of {new} leaves cannot extend one of {old}")
    if old == 0 or old == new:
        if proof:
            raise LogError(f"a consistency proof from {old} to {new} leaves must be empty")
        if old == new and old_root != new_root:
            raise LogError(f"two different roots for the same tree size {old}: a fork")
        return
    if not proof:
        raise LogError(f"an empty consistency proof from {old} to {new} leaves")
    path = [old_root, *proof] if old & (old - 1) == 0 else list(proof)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first = second = path[0]
    for value in path[1:]:
        if sn == 0:
            raise LogError(f"the consistency proof from {old} to {new} leaves is too long")
        if fn & 1 or fn == sn:
            first, second = node_hash(value, first), node_hash(value, second)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            second = node_hash(second, value)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise LogError(f"the consistency proof from {old} to {new} leaves is too short")
    if first != old_root or second != new_root:
        raise LogError(f"the tree of {new} leaves is not consistent with the tree of {old}")


def tile_root(hashes: bytes) -> bytes:
    """The hash of a complete subtree whose level hashes are ``hashes`` (2**k of them)."""
    level = [hashes[i : i + HASH_SIZE] for i in range(0, len(hashes), HASH_SIZE)]
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def tile_hash_reader(read_tile: Callable[[int, int], bytes]) -> HashReader:
    """A :data:`HashReader` over tiles: ``read_tile(tile_level, tile_index)`` gives its bytes.

    A hash at level ``8 * L + r`` is rebuilt from ``2**r`` hashes of one tile at
    level ``L`` (tlog-tiles); each tile is read once per reader.

    Raises (from the reader):
        LogError: a tile is missing or too short for the hash asked.
    """
    cache: dict[tuple[int, int], bytes] = {}

    def read(level: int, index: int) -> bytes:
        tile_level, rest = divmod(level, TILE_HEIGHT)
        first = index << rest
        key = (tile_level, first >> TILE_HEIGHT)
        if key not in cache:
            cache[key] = read_tile(*key)
        low = (first % TILE_WIDTH) * HASH_SIZE
        chunk = cache[key][low : low + (HASH_SIZE << rest)]
        if len(chunk) != HASH_SIZE << rest:
            raise LogError(f"tile {key[0]}/{key[1]} lacks the hashes of level {level}, {index}")
        return tile_root(chunk)

    return read


def tiles_of(leaves: Iterable[bytes]) -> dict[tuple[int, int], bytes]:
    """Every tile (full or partial) of the tree over ``leaves``, by (level, index)."""
    tiles: dict[tuple[int, int], bytearray] = {}
    for n, leaf in enumerate(leaves):
        level, value = 0, leaf
        while True:
            index, position = divmod(n, TILE_WIDTH)
            tile = tiles.setdefault((level, index), bytearray())
            tile += value
            if position != TILE_WIDTH - 1:
                break
            level, n, value = level + 1, index, tile_root(bytes(tile))
    return {key: bytes(value) for key, value in tiles.items()}
