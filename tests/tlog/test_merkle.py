"""RFC 6962 trees, proofs and tiles, checked against pymerkle, an independent implementation."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InmemoryTree

from vtreg.verifier import merkle
from vtreg.verifier.errors import LogError

_MAX = 600  # past two full tiles, so that level-1 tiles take part


def _trees(count: int) -> tuple[list[bytes], InmemoryTree, merkle.HashReader]:
    entries = [f"event {i}".encode() for i in range(count)]
    reference = InmemoryTree(algorithm="sha256")
    for entry in entries:
        reference.append_entry(entry)
    tiles = merkle.tiles_of(merkle.leaf_hash(e) for e in entries)
    return entries, reference, merkle.tile_hash_reader(lambda level, n: tiles[level, n])


ENTRIES, REFERENCE, READ = _trees(_MAX)


def _root(size: int) -> bytes:
    return merkle.subtree_hash(READ, 0, size) if size else merkle.EMPTY_ROOT


def test_hashes_are_rfc6962() -> None:
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        merkle.node_hash(b"l" * 32, b"r" * 32)
        == hashlib.sha256(b"\x01" + b"l" * 32 + b"r" * 32).digest()
    )
    assert (
        merkle.EMPTY_ROOT.hex()
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert REFERENCE.hash_empty() == merkle.EMPTY_ROOT


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 255, 256, 257, 511, 512, 513, _MAX])
def test_roots_match_pymerkle_and_the_compact_range(size: int) -> None:
    edge = merkle.CompactRange()
    for entry in ENTRIES[:size]:
        edge.append(merkle.leaf_hash(entry))
    assert _root(size) == REFERENCE.get_root(size) == edge.root()
    assert merkle.CompactRange.of(READ, size).root() == edge.root()


def test_tiles_have_the_tlog_tiles_layout() -> None:
    tiles = merkle.tiles_of(merkle.leaf_hash(e) for e in ENTRIES)
    # 600 leaves: two full level-0 tiles, one of 88; a level-1 tile of 2 hashes.
    assert sorted((k, len(v) // 32) for k, v in tiles.items()) == [
        ((0, 0), 256),
        ((0, 1), 256),
        ((0, 2), 88),
        ((1, 0), 2),
    ]
    assert tiles[1, 0][:32] == REFERENCE.get_root(256)
    assert merkle.tile_root(tiles[1, 0]) == REFERENCE.get_root(512)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_inclusion_proofs_match_pymerkle(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, _MAX))
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(READ, index, size)
    theirs = REFERENCE.prove_inclusion(index + 1, size).serialize()["path"]
    assert [h.hex() for h in proof] == theirs[1:]  # pymerkle's path starts with the leaf
    merkle.verify_inclusion(index, size, merkle.leaf_hash(ENTRIES[index]), proof, _root(size))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_consistency_proofs_verify_between_pymerkle_roots(data: st.DataObject) -> None:
    new = data.draw(st.integers(1, _MAX))
    old = data.draw(st.integers(1, new))
    proof = merkle.consistency_proof(READ, old, new)
    merkle.verify_consistency(old, new, REFERENCE.get_root(old), REFERENCE.get_root(new), proof)


def _flip(proof: list[bytes], i: int) -> list[bytes]:
    return [bytes([h[0] ^ 1]) + h[1:] if j == i else h for j, h in enumerate(proof)]


@pytest.mark.parametrize(("old", "new"), [(1, 2), (3, 7), (4, 8), (6, 600), (256, 513), (300, 301)])
def test_every_damaged_consistency_proof_is_refused(old: int, new: int) -> None:
    proof = merkle.consistency_proof(READ, old, new)
    good = (_root(old), _root(new))
    merkle.verify_consistency(old, new, *good, proof)
    cases = [_flip(proof, i) for i in range(len(proof))]
    cases += [proof[:-1], [*proof, proof[-1]], [], proof[1:]]
    for bad in cases:
        with pytest.raises(LogError):
            merkle.verify_consistency(old, new, *good, bad)


@pytest.mark.parametrize(("old", "new"), [(3, 7), (4, 8), (6, 300), (256, 257), (5, 6)])
def test_a_consistency_proof_must_consume_the_second_tree_size(old: int, new: int) -> None:
    # The bug class: a verifier that stops when the proof runs out, without checking it
    # reached the top of the second tree, takes a proof (and root) of a smaller tree for
    # a larger one, whose extra leaves nothing then covers.
    proof = merkle.consistency_proof(READ, old, new)
    with pytest.raises(LogError, match="too short"):
        merkle.verify_consistency(old, 2 * new, _root(old), _root(new), proof)


@pytest.mark.parametrize(("index", "size"), [(0, 1), (5, 7), (256, 300)])
def test_an_inclusion_proof_must_consume_the_tree_size(index: int, size: int) -> None:
    proof = merkle.inclusion_proof(READ, index, size)
    with pytest.raises(LogError, match="shorter"):
        merkle.verify_inclusion(
            index, 2 * size, merkle.leaf_hash(ENTRIES[index]), proof, _root(size)
        )


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (5, 7), (255, 256), (256, 600)])
def test_every_damaged_inclusion_proof_is_refused(index: int, size: int) -> None:
    proof = merkle.inclusion_proof(READ, index, size)
    leaf, root = merkle.leaf_hash(ENTRIES[index]), _root(size)
    cases: list[tuple[int, int, list[bytes]]] = [
        (index, size, _flip(proof, i)) for i in range(len(proof))
    ]
    cases += [(index, size, [*proof, root]), (index ^ 1, size, proof), (size, size, proof)]
    if proof:
        cases.append((index, size, proof[:-1]))
    for i, n, bad in cases:
        with pytest.raises(LogError):
            merkle.verify_inclusion(i, n, leaf, bad, root)


def test_same_size_needs_the_same_root_and_an_empty_proof() -> None:
    merkle.verify_consistency(5, 5, _root(5), _root(5), [])
    merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, _root(5), [])
    with pytest.raises(LogError, match="fork"):
        merkle.verify_consistency(5, 5, _root(5), _root(4), [])
    with pytest.raises(LogError, match="must be empty"):
        merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, _root(5), [_root(1)])
    with pytest.raises(LogError, match="cannot extend"):
        merkle.verify_consistency(6, 5, _root(6), _root(5), [])
    with pytest.raises(LogError, match="at most 63"):
        merkle.verify_consistency(1, 2, _root(1), _root(2), [b"short"])


def test_a_missing_tile_is_a_log_error() -> None:
    read = merkle.tile_hash_reader(lambda level, n: b"")
    with pytest.raises(LogError, match="lacks"):
        merkle.inclusion_proof(read, 0, 2)
