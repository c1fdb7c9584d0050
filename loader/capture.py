"""Private, immutable copies of the bytes that were verified.

While the plugin directory is hashed, the signed library is also written, byte
for byte as hashed, into a :class:`SealedFile` (and each signed library it needs,
re-hashed as it is copied, into one of its own): an anonymous
memfd (Linux), sealed against any further change once complete, or elsewhere a
0500 copy in a fresh 0700 directory. The dynamic loader then opens that copy
(``/proc/self/fd/N``), never the original path, which may change after the
check.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["LIBRARY_SUFFIXES", "SealedFile"]

LIBRARY_SUFFIXES = (".so", ".dylib", ".dll")

_HAS_MEMFD = hasattr(os, "memfd_create") and sys.platform.startswith("linux")


class SealedFile:
    """One file's bytes in a private copy that nobody can change once sealed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.size = 0
        self._sealed = False
        self._tempdir: str | None = None
        if _HAS_MEMFD:
            self.fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            self.path = f"/proc/self/fd/{self.fd}"
        else:  # pragma: no cover - exercised on platforms without memfd
            self._tempdir = tempfile.mkdtemp(prefix="vtreg-")  # 0700
            self.path = str(Path(self._tempdir) / name)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def write(self, data: memoryview) -> int:
        """Append ``data`` to the image (a :class:`~verifier.tree.Sink`); refused once sealed."""
        if self._sealed:
            raise ValueError("sealed")
        view = data
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(data)
        return len(data)

    def move_fd(self, minimum: int = 0) -> None:
        """Give the image another descriptor, at least ``minimum`` (so another /proc path).

        The previous descriptor is closed once the new one exists; if none can
        be had (OSError), the image keeps the one it had, and :meth:`close`
        still closes each descriptor once.
        """
        import fcntl

        moved = fcntl.fcntl(self.fd, fcntl.F_DUPFD_CLOEXEC, minimum)
        os.close(self.fd)
        self.fd = moved
        if _HAS_MEMFD:
            self.path = f"/proc/self/fd/{self.fd}"

    def seal(self) -> None:
        """Forbid any further change: no write, no shrink, no growth (memfd seals)."""
        if self._sealed:
            return
        if _HAS_MEMFD:
            import fcntl

            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, seals)
        else:  # pragma: no cover
            os.fchmod(self.fd, 0o500)
        self._sealed = True

    @property
    def sealed(self) -> bool:
        """Whether :meth:`seal` has run."""
        return self._sealed

    def close(self) -> None:
        """Close every descriptor of the image (and remove its temporary file, if any)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._tempdir is not None:  # pragma: no cover
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            self.close()
