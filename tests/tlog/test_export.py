"""vtreg audit export: a static tlog-tiles log that a client reads over plain HTTP."""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pymerkle import InmemoryTree

from tests.helpers import ok, one_line_error
from tests.tlog.conftest import Log
from vtreg.registry.db import connect
from vtreg.verifier import merkle
from vtreg.verifier.note import NoteVerifier
from vtreg.verifier.policy import Policy
from vtreg.verifier.tiles import index_path, tile_path, tiles_of_size, unbundle


def test_paths_and_tiles_are_the_specs() -> None:
    assert index_path(1234067) == "x001/x234/067"
    assert index_path(5) == "005"
    assert tile_path(0, 1234067, 256) == "tile/0/x001/x234/067"
    assert tile_path("entries", 3, 7) == "tile/entries/003.p/7"
    # tlog-tiles: "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
    # partial level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of
    # width 17, and one partial level 2 tile of width 1."
    tiles = list(tiles_of_size(70_000))
    assert [t for t in tiles if t[2] != 256] == [(0, 273, 112), (1, 1, 17), (2, 0, 1)]
    assert len([t for t in tiles if t[2] == 256]) == 273 + 1
    assert list(tiles_of_size(256)) == [(0, 0, 256), (1, 0, 1)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback server
        data: bytes = response.read()
        return data


def test_an_export_is_a_tlog_tiles_log_any_client_reads(log: Log, served: tuple[Path, str]) -> None:
    directory, prefix = served
    log.record(599)
    ok(log.checkpoint())
    log.record(5)  # after the checkpoint: not exported
    result = ok(log.cli("audit", "export", directory, "--json")).json()
    # A client: the checkpoint, under the log's key; then the tiles and the entries it names.
    accepted = Policy((NoteVerifier.parse(log.vkey),)).accept(_get(f"{prefix}/checkpoint"))
    size = accepted.checkpoint.size
    assert size == 600
    tiles = {(lv, n): _get(f"{prefix}/{tile_path(lv, n, w)}") for lv, n, w in tiles_of_size(size)}
    assert (
        result["files"] == 2 * 3 + 1 + 1
    )  # 3 level-0 tiles and bundles, 1 level-1 tile, checkpoint
    read = merkle.tile_hash_reader(lambda lv, n: tiles[lv, n])
    assert merkle.subtree_hash(read, 0, size) == accepted.checkpoint.root
    entries = []
    for _, n, width in (t for t in tiles_of_size(size) if t[0] == 0):
        bundle = unbundle(_get(f"{prefix}/{tile_path('entries', n, width)}"))
        assert b"".join(map(merkle.leaf_hash, bundle)) == tiles[0, n]
        entries += bundle
    reference = InmemoryTree(algorithm="sha256")
    for entry in entries:
        reference.append_entry(entry)
    assert reference.get_root(size) == accepted.checkpoint.root
    proof = merkle.inclusion_proof(read, 300, size)
    merkle.verify_inclusion(
        300, size, merkle.leaf_hash(entries[300]), proof, accepted.checkpoint.root
    )


def test_nothing_is_exported_from_a_log_that_does_not_hold_the_checkpoint(
    log: Log, tmp_path: Path
) -> None:
    log.record(3)
    ok(log.checkpoint())
    engine = connect(log.url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE audit_events SET plugin = 'x' WHERE seq = 2"))
    engine.dispose()
    out = tmp_path / "export"
    one_line_error(log.cli("audit", "export", out), 1, "do not hash to it")
    assert not out.exists()


def test_an_export_needs_a_checkpoint(log: Log, tmp_path: Path) -> None:
    one_line_error(log.cli("audit", "export", tmp_path / "x"), 3, "no signed checkpoint exists")
