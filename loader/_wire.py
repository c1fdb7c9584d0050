"""Framing between the loader and its isolation worker: tag byte, 4-byte length, payload."""

from __future__ import annotations

import os
import select
import struct
import time

__all__ = ["ERROR", "EXECUTE", "OK", "READY", "WireClosed", "WireTimeout", "recv", "send"]

READY, OK, ERROR, EXECUTE = b"R", b"O", b"E", b"X"
_HEADER = struct.Struct(">cI")
MAX_FRAME = 64 << 20  # a plugin result larger than this is refused


class WireClosed(Exception):
    """The other side closed the pipe (it exited or crashed)."""


class WireTimeout(Exception):
    """No complete frame arrived in time."""


def send(fd: int, tag: bytes, payload: bytes = b"") -> None:
    """Write one frame (tag, length, payload) to ``fd``, all of it."""
    data = memoryview(_HEADER.pack(tag, len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise WireTimeout
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise WireClosed
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv(fd: int, timeout: float | None = None) -> tuple[bytes, bytes]:
    """The next frame as (tag, payload); raises WireClosed or WireTimeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    tag, size = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))
    if size > MAX_FRAME:
        raise WireClosed
    return tag, _read_exactly(fd, size, deadline)
