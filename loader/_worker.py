"""The isolation worker: loads one verified library in its own process and serves calls.

    python -m vtreg.loader._worker LIBRARY_FD MEMORY_LIMIT LABEL PARENT_PID DEPENDENCIES

LIBRARY_FD is the sealed memfd holding exactly the verified bytes (inherited
from the loader). DEPENDENCIES is what to open first, in order, as JSON
(``[[SONAME, FD | PATH], ...]``: inherited sealed copies of the plugin's own
libraries, and system libraries by absolute path; see loader.dependencies),
each unless the worker already holds an object called SONAME.

Requests arrive on stdin and replies leave on stdout, framed by loader._wire;
the plugin's own stdout is sent to stderr so that it cannot corrupt the channel.
From before the libraries are opened (constructors included), the address space
may grow by at most MEMORY_LIMIT bytes (0: no limit). The worker dies with
PARENT_PID (``PR_SET_PDEATHSIG``). Only the standard library and loader.abi are
imported here.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import struct
import sys

from vtreg.loader import _wire
from vtreg.loader.abi import DLOPEN_MODE, PluginCallError, RawLibrary, held_by_process
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
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError) as e:
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        allowed = "unlimited" if hard == resource.RLIM_INFINITY else f"{hard >> 20} MiB"
        raise OSError(
            f"cannot limit the plugin's address space to {limit >> 20} MiB "
            f"(this process may have at most {allowed}): {e}"
        ) from e


def _die_with(parent: int) -> None:
    """Be killed when the host goes, however it goes (Linux), and not outlive it meanwhile."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "cannot ask to die with the host (prctl)")
    if os.getppid() != parent:
        os._exit(1)  # the host went before the request took effect


def _open_dependencies(plan: list[tuple[str, int | str]]) -> None:
    for soname, where in plan:
        if not held_by_process(soname):
            ctypes.CDLL(f"/proc/self/fd/{where}" if isinstance(where, int) else where, DLOPEN_MODE)


# What glibc's dlopen says when mmap fails, which under RLIMIT_AS is ENOMEM: the sealed
# image is a memfd (or /proc/self/fd), so no noexec mount or missing file explains it.
_NO_MEMORY = ("failed to map segment", "cannot map zero-fill pages", "cannot allocate memory")


def _out_of_memory(error: OSError) -> bool:
    return error.errno == errno.ENOMEM or any(m in str(error).lower() for m in _NO_MEMORY)


def _no_memory(label: str, memory_limit: int) -> bytes:
    limit = f"{memory_limit >> 20} MiB" if memory_limit > 0 else "no limit"
    return f"{label}: out of memory while loading (memory limit {limit})".encode()


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
        _die_with(int(argv[4]))
        if memory_limit > 0:
            _limit_memory(memory_limit)  # constructors and metadata() included
    except OSError as e:
        _wire.send(replies, _wire.FAILED, f"{label}: {e}".encode())
        return 1
    _wire.send(replies, _wire.HELLO)  # from here on, the plugin's code runs
    try:
        _open_dependencies(json.loads(argv[5]))
        handle = ctypes.CDLL(f"/proc/self/fd/{library_fd}", mode=DLOPEN_MODE)
        raw = RawLibrary(handle, label)
        version = raw.version()
        metadata = raw.metadata_bytes()
    except OSError as e:
        if memory_limit > 0 and _out_of_memory(e):
            _wire.send(replies, _wire.FAILED, _no_memory(label, memory_limit))
        else:
            _wire.send(replies, _wire.ERROR, f"{type(e).__name__}: {e}".encode())
        return 1
    except VtregError as e:
        _wire.send(replies, _wire.ERROR, f"{type(e).__name__}: {e}".encode())
        return 1
    except MemoryError:
        # Like a crash while loading: nothing says the plugin is not what was signed.
        _wire.send(replies, _wire.FAILED, _no_memory(label, memory_limit))
        return 1
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
