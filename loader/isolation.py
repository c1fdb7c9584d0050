"""Process isolation: run a verified plugin in a child process, fed the same verified bytes.

A crash (SIGSEGV, abort), a hang (per-call timeout) or a memory blow-up
(``RLIMIT_AS`` growth limit) in the plugin fails that one call with a
:class:`~loader.abi.PluginCallError`; the host goes on, and the next call
starts a fresh child from the same sealed bytes.
"""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import vtreg

from . import _wire
from .abi import AbiError, PluginCallError
from .capture import SealedFile

__all__ = ["DEFAULT_MEMORY_LIMIT", "DEFAULT_TIMEOUT", "IsolatedLibrary"]

DEFAULT_TIMEOUT = 30.0
DEFAULT_MEMORY_LIMIT = 512 << 20
_STARTUP_TIMEOUT = 60.0
# The worker imports vtreg from wherever this process found it: the folder holding
# the ``vtreg`` package (site-packages, or a checkout), never the current directory.
_PACKAGE_ROOT = str(Path(vtreg.__file__).resolve().parent.parent)
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
    "from vtreg.loader._worker import main; sys.exit(main(sys.argv))"
)


def _describe(status: int | None) -> str:
    if status is None:
        return "stopped"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


class IsolatedLibrary:
    """The parent side of one plugin's isolation worker (one call at a time)."""

    isolated = True

    def __init__(
        self,
        image: SealedFile,
        label: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        if image.fd < 0 or not image.sealed:
            raise ValueError("isolation needs the sealed image of the verified library")
        self._image = image
        self.label = label
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> tuple[int, bytes]:
        """Start the worker; return the ABI version and metadata bytes it reports."""
        with self._lock:
            return self._start()

    def _start(self) -> tuple[int, bytes]:
        # -I: ignore PYTHON* variables, the user site and the current directory,
        # so nothing from wherever the host happens to run can shadow our code;
        # the worker imports loader and verifier from where this process did.
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-I", "-c", _BOOTSTRAP, _PACKAGE_ROOT, str(self._image.fd),
             str(self.memory_limit), self.label],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(self._image.fd,),
            cwd="/",
        )  # fmt: skip
        try:
            tag, payload = self._receive(_STARTUP_TIMEOUT)
        except PluginCallError:
            self._stop()
            raise
        if tag != _wire.READY or len(payload) < 4:
            self._stop()
            detail = payload.decode(errors="replace") if tag == _wire.ERROR else "no greeting"
            raise AbiError(f"{self.label}: {detail}")
        (version,) = struct.unpack(">I", payload[:4])
        return version, payload[4:]

    def _receive(self, timeout: float | None) -> tuple[bytes, bytes]:
        proc = self._proc
        if proc is None or proc.stdout is None:  # pragma: no cover - started by the caller
            raise PluginCallError(f"{self.label}: the plugin process is not running")
        try:
            return _wire.recv(proc.stdout.fileno(), timeout)
        except _wire.WireTimeout:
            self._stop()
            raise PluginCallError(
                f"{self.label}: no answer within {timeout:g} s; stopped it"
            ) from None
        except _wire.WireClosed:
            status = self._stop()
            raise PluginCallError(f"{self.label}: the plugin process {_describe(status)}") from None

    def call(self, context_json: bytes, timeout: float | None) -> bytes:
        """Run one execute call in the child (restarting one that died); return its answer."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._stop()  # reap a worker that died between calls
                self._start()  # a fresh child from the same sealed bytes
            proc = self._proc
            if proc is None or proc.stdin is None:  # pragma: no cover - just started
                raise PluginCallError(f"{self.label}: the plugin process is not running")
            try:
                _wire.send(proc.stdin.fileno(), _wire.EXECUTE, context_json)
            except BrokenPipeError:
                status = self._stop()
                raise PluginCallError(
                    f"{self.label}: the plugin process {_describe(status)}"
                ) from None
            tag, payload = self._receive(self.timeout if timeout is None else timeout)
            if tag == _wire.ERROR:
                raise PluginCallError(payload.decode(errors="replace"))
            return payload

    def _stop(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        return proc.wait()

    def close(self) -> None:
        """Stop the worker and release the sealed image."""
        with self._lock:
            self._stop()
            self._image.close()
