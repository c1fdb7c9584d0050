"""The isolation worker: loads one verified library in its own process and serves calls.

    python -m vtreg.loader._worker LIBRARY_FD MEMORY_LIMIT LABEL

LIBRARY_FD is the sealed memfd holding exactly the verified bytes (inherited
from the loader). Requests arrive on stdin and replies leave on stdout, framed
by loader._wire; the plugin's own stdout is sent to stderr so that it cannot
corrupt the channel. Once loaded, the address space may grow by at most
MEMORY_LIMIT bytes (0: no limit). Only the standard library and loader.abi are
imported here.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

from vtreg.loader import _wire
from vtreg.loader.abi import PluginCallError, RawLibrary
from vtreg.verifier.errors import VtregError


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit_memory(extra: int) -> None:
    import resource

    limit = _address_space() + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> int:
    """Open the sealed library named by ``argv`` and serve execute calls until the parent hangs up.

    Returns:
        0 once the parent closes the channel, 1 if the library cannot be opened,
        2 on a request other than execute.
    """
    library_fd, memory_limit, label = int(argv[1]), int(argv[2]), argv[3]
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # whatever the plugin prints goes to stderr, not into the channel
    try:
        handle = ctypes.CDLL(f"/proc/self/fd/{library_fd}", mode=os.RTLD_NOW | os.RTLD_LOCAL)
        raw = RawLibrary(handle, label)
        version = raw.version()
        metadata = raw.metadata_bytes()
    except (OSError, VtregError) as e:
        _wire.send(replies, _wire.ERROR, f"{type(e).__name__}: {e}".encode())
        return 1
    if memory_limit > 0:
        _limit_memory(memory_limit)
    _wire.send(replies, _wire.READY, struct.pack(">I", version) + metadata)
    while True:
        try:
            tag, payload = _wire.recv(requests)
        except _wire.WireClosed:
            return 0
        if tag != _wire.EXECUTE:
            return 2
        try:
            result = raw.execute_bytes(payload)
        except PluginCallError as e:
            _wire.send(replies, _wire.ERROR, str(e).encode())
            continue
        except MemoryError:
            _wire.send(replies, _wire.ERROR, f"{label}: out of memory".encode())
            continue
        _wire.send(replies, _wire.OK, result)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
