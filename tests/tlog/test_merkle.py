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


# The RFC 6962 reference set used by Certificate Transparency's merkle tree tests and
# carried on by github.com/transparency-dev/merkle: leaf inputs and roots from
# testonly/constants.go (LeafInputs, RootHashes), proofs from proof/verify_test.go
# (inclusionProofs, whose leaf numbers are 1-based, and consistencyProofs). Copied as
# published, not computed here. pymerkle's own consistency proofs are not RFC 6962's
# SUBPROOF (they hold other hashes), so they are not compared; these vectors are.
_CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]  # fmt: skip
_CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]  # sizes 1 to 8
_CT_INCLUSION = [  # (leaf index, 0-based; tree size; path)
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
_CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
_CT_TILES = merkle.tiles_of(merkle.leaf_hash(leaf) for leaf in _CT_LEAVES)
_CT_READ = merkle.tile_hash_reader(lambda level, n: _CT_TILES[level, n])


@pytest.mark.parametrize("size", range(1, 9))
def test_the_rfc6962_roots(size: int) -> None:
    edge = merkle.CompactRange()
    for leaf in _CT_LEAVES[:size]:
        edge.append(merkle.leaf_hash(leaf))
    assert merkle.subtree_hash(_CT_READ, 0, size).hex() == _CT_ROOTS[size - 1]
    assert edge.root().hex() == _CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), _CT_INCLUSION)
def test_the_rfc6962_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(_CT_READ, index, size)
    assert [h.hex() for h in proof] == path
    root = bytes.fromhex(_CT_ROOTS[size - 1])
    merkle.verify_inclusion(index, size, merkle.leaf_hash(_CT_LEAVES[index]), proof, root)


@pytest.mark.parametrize(("old", "new", "path"), _CT_CONSISTENCY)
def test_the_rfc6962_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    proof = merkle.consistency_proof(_CT_READ, old, new)
    assert [h.hex() for h in proof] == path
    roots = bytes.fromhex(_CT_ROOTS[old - 1]), bytes.fromhex(_CT_ROOTS[new - 1])
    merkle.verify_consistency(old, new, *roots, proof)
    if proof:  # and the published proof, damaged, no longer verifies
        with pytest.raises(LogError):
            merkle.verify_consistency(old, new, *roots, _flip(proof, len(proof) - 1))
