"""Process isolation: run a verified plugin in a child process, fed the same verified bytes.

A crash (SIGSEGV, abort), a hang (per-call timeout) or a memory blow-up
(``RLIMIT_AS`` growth limit) in the plugin fails that one call with a
:class:`~loader.abi.PluginCallError`; the host goes on, and the next call
starts a fresh child from the same sealed bytes. Loading (constructors,
``vtcode_plugin_metadata``) runs under the same timeout and memory limit.

The worker leads its own session, so that everything the plugin forks can be
killed with it (on a timeout, a crash, ``close``); it is killed with the host
(``PR_SET_PDEATHSIG``); its exit is watched through a pidfd, so a crash is
seen at once even when a forked child still holds the reply pipe open; and it
gets only an allow-listed environment (:data:`WORKER_ENVIRONMENT`), so the
host's secrets (``VTREG_PASSPHRASE``, ``VTREG_DATABASE_URL``) never reach it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import vtreg

from . import _wire
from .abi import AbiError, LoadError, PluginCallError
from .capture import SealedFile

__all__ = ["DEFAULT_MEMORY_LIMIT", "DEFAULT_TIMEOUT", "WORKER_ENVIRONMENT", "IsolatedLibrary"]

DEFAULT_TIMEOUT = 30.0
DEFAULT_MEMORY_LIMIT = 512 << 20
# Starting the interpreter and importing the worker is our code, not the plugin's:
# a generous wait of its own. The plugin's constructors and metadata() then get
# the configured timeout.
_INTERPRETER_TIMEOUT = 60.0
# The variables a worker keeps (plus every LC_*): enough for a plugin to find
# programs, its locale, time zone, home and temporary directory. Nothing else:
# not VTREG_* (database URL, passphrase), not LD_* (libraries beyond the verified set).
WORKER_ENVIRONMENT = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
# The worker imports vtreg from wherever this process found it: the folder holding
# the ``vtreg`` package (site-packages, or a checkout), never the current directory.
_PACKAGE_ROOT = str(Path(vtreg.__file__).resolve().parent.parent)
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
    "from vtreg.loader._worker import main; sys.exit(main(sys.argv))"
)


def _environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name in WORKER_ENVIRONMENT or name.startswith("LC_")
    }


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # pragma: no cover - older kernels, other systems
        return None


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
        dependencies: Sequence[tuple[str, SealedFile | str]] = (),
    ) -> None:
        images = [image, *(d for _, d in dependencies if isinstance(d, SealedFile))]
        if any(i.fd < 0 or not i.sealed for i in images):
            raise ValueError("isolation needs the sealed images of the verified libraries")
        self._image = image
        # What the worker opens before the library, in order, by DT_SONAME: sealed
        # images of the plugin's own libraries, and system libraries by absolute path.
        self._dependencies = tuple(dependencies)
        self.label = label
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._lock = threading.Lock()

    def start(self) -> tuple[int, bytes]:
        """Start the worker; return the ABI version and metadata bytes it reports."""
        with self._lock:
            return self._start()

    def _start(self) -> tuple[int, bytes]:
        # -I: ignore PYTHON* variables, the user site and the current directory,
        # so nothing from wherever the host happens to run can shadow our code;
        # the worker imports loader and verifier from where this process did.
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-I", "-c", _BOOTSTRAP, _PACKAGE_ROOT, str(self._image.fd),
                 str(self.memory_limit), self.label, str(os.getpid()), self._plan()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=(self._image.fd, *self._dependency_fds()),
                cwd="/",
                env=_environment(),
                start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            raise LoadError(f"{self.label}: cannot start the plugin process: {e}") from e
        self._pidfd = _pidfd(self._proc.pid)
        try:
            tag, payload = self._receive(_INTERPRETER_TIMEOUT, "while starting")
            if tag == _wire.HELLO:
                tag, payload = self._receive(self.timeout, "while loading")
        except PluginCallError:
            self._stop()
            raise
        if tag == _wire.FAILED:
            self._stop()
            raise LoadError(payload.decode(errors="replace"))
        if tag != _wire.READY or len(payload) < 4:
            self._stop()
            detail = payload.decode(errors="replace") if tag == _wire.ERROR else "no greeting"
            raise AbiError(f"{self.label}: {detail}")
        (version,) = struct.unpack(">I", payload[:4])
        return version, payload[4:]

    def _dependency_fds(self) -> tuple[int, ...]:
        return tuple(d.fd for _, d in self._dependencies if isinstance(d, SealedFile))

    def _plan(self) -> str:
        """The dependencies as the worker reads them: JSON, ``[[SONAME, FD | PATH], ...]``."""
        return json.dumps(
            [[name, d.fd if isinstance(d, SealedFile) else d] for name, d in self._dependencies]
        )

    def _receive(self, timeout: float | None, when: str = "") -> tuple[bytes, bytes]:
        proc = self._proc
        if proc is None or proc.stdout is None:  # pragma: no cover - started by the caller
            raise PluginCallError(f"{self.label}: the plugin process is not running")
        try:
            return _wire.recv(proc.stdout.fileno(), timeout, self._pidfd)
        except _wire.WireTimeout:
            self._stop()
            when = f" {when}" if when else ""
            raise PluginCallError(
                f"{self.label}: no answer within {timeout:g} s{when}; stopped it"
            ) from None
        except _wire.WireClosed:
            status = self._stop()
            when = f" {when}" if when else ""
            raise PluginCallError(
                f"{self.label}: the plugin process {_describe(status)}{when}"
            ) from None

    def _exited(self) -> bool:
        """Whether the worker has ended, without reaping it (its pid stays its group's)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # reaped by someone else
            return True

    def call(self, context_json: bytes, timeout: float | None) -> bytes:
        """Run one execute call in the child (restarting one that died); return its answer."""
        with self._lock:
            if self._image.fd < 0:  # closed, perhaps by another thread since the caller checked
                raise PluginCallError(f"{self.label}: the plugin was closed")
            if self._exited():
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
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            os.close(pidfd)
        if proc is None:
            return None
        if proc.returncode is None:
            # The whole session, before the worker is reaped: until then its pid,
            # and so the group's id, cannot be another process's.
            with contextlib.suppress(ProcessLookupError, PermissionError):  # reaped elsewhere
                os.killpg(proc.pid, signal.SIGKILL)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        return proc.wait()

    def close(self) -> None:
        """Stop the worker and release the sealed image."""
        with self._lock:
            self._stop()
            self._image.close()
            for _, dependency in self._dependencies:
                if isinstance(dependency, SealedFile):
                    dependency.close()
