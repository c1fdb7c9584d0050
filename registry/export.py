"""``vtreg audit export DIR``: the audit log as static C2SP tlog-tiles files.

Any web server can serve the directory and any tlog-tiles client can read
it: ``checkpoint`` (a signed checkpoint), the Merkle tiles of its tree and
the entry bundles (the events' canonical bytes). Everything is checked
before it is written (the tiles hash to the checkpoint's root, the entries
to the level-0 tiles), each file is replaced atomically, and the checkpoint
is written last, so a reader never finds a checkpoint whose tiles are not
there yet.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from sqlalchemy.engine import Connection

from vtreg.verifier.errors import LogError, VtregError, WriteError
from vtreg.verifier.files import atomic_write
from vtreg.verifier.merkle import HASH_SIZE, TILE_WIDTH, leaf_hash, subtree_hash, tile_hash_reader
from vtreg.verifier.note import Checkpoint, parse_note
from vtreg.verifier.tiles import bundle, tile_path, tiles_of_size

from .tlog import TreeReader, event_bytes

__all__ = ["export_log", "export_tiles"]


def export_log(connection: Connection, note: bytes, directory: Path) -> int:
    """Write the tree ``note`` (a signed checkpoint) names into ``directory``; the files written.

    Raises:
        LogError: the log does not hold what the checkpoint signed.
        VtregError: an event too large for an entry bundle (64 KiB).
        WriteError: the directory cannot be written.
    """
    checkpoint = Checkpoint.parse(parse_note(note).text)
    size, tree = checkpoint.size, TreeReader(connection)
    if tree.size() < size:
        raise LogError(f"the audit log holds {tree.size()} events, the checkpoint {size}")
    files: dict[str, bytes] = {}
    tiles: dict[tuple[int, int], bytes] = {}
    for level, n, width in tiles_of_size(size):
        data = tree.tile(level, n)[: width * HASH_SIZE]
        if len(data) != width * HASH_SIZE:
            raise LogError(f"the audit log's Merkle tile {level}/{n} is short (edited?)")
        tiles[level, n] = data
        files[tile_path(level, n, width)] = data
    if (
        size
        and subtree_hash(tile_hash_reader(lambda lv, n: tiles[lv, n]), 0, size) != checkpoint.root
    ):
        raise LogError("the audit log's tiles do not hash to the checkpoint's root (rewritten?)")
    events = event_bytes(connection, 0, size)
    for n in itertools.count():
        entries = list(itertools.islice(events, TILE_WIDTH))
        if not entries:
            break
        if b"".join(map(leaf_hash, entries)) != tiles[0, n]:
            raise LogError(f"the events of tile 0/{n} do not hash to it (edited?)")
        try:
            files[tile_path("entries", n, len(entries))] = bundle(entries)
        except ValueError as e:
            raise VtregError(f"events {n * TILE_WIDTH + 1}-: {e}") from e
    for name, data in files.items():
        _write(directory / name, data)
    _write(directory / "checkpoint", note)
    return len(files) + 1


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot create {path.parent}: {e.strerror}") from e
    atomic_write(path, data, 0o644)


def export_tiles(connection: Connection, note: bytes, directory: Path) -> int:
    """Write ``note`` as ``directory/checkpoint`` and the hash tiles of its tree not there yet.

    Every tile path names its width, so a tile once written never changes:
    an export after an append writes only the new tiles (O(new events / 256
    + log n)), which is what a fleet publish needs to stay fast. The tree's
    root is checked against the checkpoint before anything is written; entry
    bundles are not written (a host checks consistency from the hashes alone).

    Raises:
        LogError: the log does not hold what the checkpoint signed.
        WriteError: the directory cannot be written.
    """
    checkpoint = Checkpoint.parse(parse_note(note).text)
    size, tree = checkpoint.size, TreeReader(connection)
    if tree.size() < size or (size and tree.root(size) != checkpoint.root):
        raise LogError(f"the audit log does not hold the {size} events its checkpoint signed")
    written = 0
    for level, n, width in tiles_of_size(size):
        path = directory / tile_path(level, n, width)
        if path.exists():
            continue
        data = tree.tile(level, n)[: width * HASH_SIZE]
        if len(data) != width * HASH_SIZE:
            raise LogError(f"the audit log's Merkle tile {level}/{n} is short (edited?)")
        _write(path, data)
        written += 1
    _write(directory / "checkpoint", note)
    return written + 1
