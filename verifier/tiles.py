"""C2SP tlog-tiles: which tiles and entry bundles a tree has, and where each is served.

    <prefix>/checkpoint
    <prefix>/tile/<L>/<N>[.p/<W>]         hashes, 256 to a full tile
    <prefix>/tile/entries/<N>[.p/<W>]     entries, each a big-endian uint16 length and bytes

``<N>`` is written in 3-digit path elements, all but the last prefixed by
``x`` (1234067 -> ``x001/x234/067``); ``.p/<W>`` marks a partial tile of
``W`` (1-255) entries. Pure: no IO.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .merkle import TILE_HEIGHT, TILE_WIDTH

__all__ = ["bundle", "index_path", "tile_path", "tiles_of_size", "unbundle"]

_MAX_ENTRY = 0xFFFF


def index_path(n: int) -> str:
    """``n`` as tlog-tiles path elements: ``x001/x234/067``."""
    digits = f"{n:d}"
    digits = digits.zfill(-(-len(digits) // 3) * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int | str, n: int, width: int) -> str:
    """The path of a tile (``level`` ``"entries"`` for an entry bundle) of ``width`` entries."""
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{index_path(n)}{suffix}"


def tiles_of_size(size: int) -> Iterator[tuple[int, int, int]]:
    """Every (level, index, width) tile of the tree of ``size`` leaves, full and partial."""
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)  # hashes at this tile level
        for n in range(hashes // TILE_WIDTH):
            yield level, n, TILE_WIDTH
        if hashes % TILE_WIDTH:
            yield level, hashes // TILE_WIDTH, hashes % TILE_WIDTH
        level += 1


def bundle(entries: Iterable[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length, then its bytes.

    Raises:
        ValueError: an entry longer than 65,535 bytes.
    """
    out = bytearray()
    for entry in entries:
        if len(entry) > _MAX_ENTRY:
            raise ValueError(f"an entry of {len(entry)} bytes does not fit a tlog-tiles bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def unbundle(data: bytes) -> list[bytes]:
    """The entries of a bundle.

    Raises:
        ValueError: a length runs past the end.
    """
    entries, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            raise ValueError("an entry bundle ends inside a length")
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise ValueError("an entry bundle ends inside an entry")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    return entries
