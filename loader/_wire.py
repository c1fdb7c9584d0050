"""Framing between the loader and its isolation worker: tag byte, 4-byte length, payload."""

from __future__ import annotations

import os
import select
import struct
import time

__all__ = [
    "ERROR",
    "EXECUTE",
    "FAILED",
    "HELLO",
    "OK",
    "READY",
    "WireClosed",
    "WireTimeout",
    "recv",
    "send",
]

# HELLO: the worker is up, before any plugin code runs; FAILED: it could not set
# itself up (limits), which says nothing about the plugin.
HELLO, READY, OK, ERROR, FAILED, EXECUTE = b"H", b"R", b"O", b"E", b"F", b"X"
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


def _wait(fd: int, deadline: float | None, watch: int | None) -> None:
    """Until ``fd`` is readable; WireClosed once ``watch`` (a pidfd) says the writer
    exited and nothing is left to read, though another process may hold the pipe open."""
    if deadline is None and watch is None:
        return  # a blocking read waits
    fds = [fd] if watch is None else [fd, watch]
    left = None if deadline is None else max(deadline - time.monotonic(), 0)
    ready = select.select(fds, [], [], left)[0]
    if fd in ready:
        return
    if not ready:
        raise WireTimeout
    if not select.select([fd], [], [], 0)[0]:  # what it wrote before it went is still read
        raise WireClosed


def _read_exactly(fd: int, size: int, deadline: float | None, watch: int | None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        _wait(fd, deadline, watch)
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise WireClosed
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv(fd: int, timeout: float | None = None, watch: int | None = None) -> tuple[bytes, bytes]:
    """The next frame as (tag, payload); raises WireClosed or WireTimeout.

    ``watch``: a descriptor (pidfd) that becomes readable when the writer exits.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    tag, size = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline, watch))
    if size > MAX_FRAME:
        raise WireClosed
    return tag, _read_exactly(fd, size, deadline, watch)
