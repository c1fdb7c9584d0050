"""VT Code native plugin ABI v1: the four C functions, over ctypes, bytes in and bytes out.

Returned strings are declared ``c_void_p`` (not ``c_char_p``) so that we keep
the pointer: each string is copied out and then freed exactly once with
``vtcode_plugin_free_string`` when the plugin exports it.

This module uses only the standard library (and vtreg's error classes): the
isolation worker, a separate small process, runs it too.
"""

from __future__ import annotations

import ctypes
import os

from vtreg.loader._elf import soname_loaded
from vtreg.verifier.errors import VerificationError, VtregError

__all__ = [
    "DLOPEN_MODE",
    "PLUGIN_ABI_VERSION",
    "AbiError",
    "LoadError",
    "PluginCallError",
    "RawLibrary",
    "held_by_process",
    "unload",
]

PLUGIN_ABI_VERSION = 1
# VT Code opens plugins with libloading's default, RTLD_LAZY | RTLD_LOCAL: a function
# the plugin never calls need not resolve (one it does call and cannot resolve ends
# the process, in VT Code as here). Both the loader and the isolation worker use it.
DLOPEN_MODE = os.RTLD_LAZY | os.RTLD_LOCAL

_REQUIRED = ("vtcode_plugin_version", "vtcode_plugin_metadata", "vtcode_plugin_execute")


class PluginCallError(VtregError):
    """A call into a loaded plugin failed: NULL, invalid UTF-8/JSON, wrong shape, crash, timeout."""


class LoadError(VtregError):
    """Could not decide: the loader lacked what it needs to load a plugin (a file
    descriptor, a worker process that could start and set its limits)."""


class AbiError(VerificationError):
    """Refused: not VT Code ABI v1 (missing symbol, other version), or metadata that
    contradicts what was signed."""

    default_code = "abi-mismatch"


class RawLibrary:
    """An opened plugin library and its ABI functions; bytes in, bytes out.

    Raises:
        AbiError: a required symbol is missing.
    """

    def __init__(self, handle: ctypes.CDLL, label: str) -> None:
        self.label = label
        self._handle = handle
        missing = [name for name in _REQUIRED if not _exports(handle, name)]
        if missing:
            raise AbiError(f"{label} does not export {', '.join(missing)} (VT Code ABI v1)")
        self._version = handle.vtcode_plugin_version
        self._version.restype = ctypes.c_uint32
        self._version.argtypes = []
        self._metadata = handle.vtcode_plugin_metadata
        self._metadata.restype = ctypes.c_void_p
        self._metadata.argtypes = []
        self._execute = handle.vtcode_plugin_execute
        self._execute.restype = ctypes.c_void_p
        self._execute.argtypes = [ctypes.c_char_p]
        self._free = (
            handle.vtcode_plugin_free_string
            if _exports(handle, "vtcode_plugin_free_string")
            else None
        )
        if self._free is not None:
            self._free.restype = None
            self._free.argtypes = [ctypes.c_void_p]

    def version(self) -> int:
        """What ``vtcode_plugin_version()`` returns."""
        return int(self._version())

    def _take(self, pointer: int | None, what: str) -> bytes:
        if not pointer:
            raise PluginCallError(f"{self.label}: {what} returned NULL")
        try:
            return ctypes.string_at(pointer)
        finally:
            if self._free is not None:
                self._free(pointer)  # exactly once, after copying, whatever the bytes are

    def metadata_bytes(self) -> bytes:
        """The bytes ``vtcode_plugin_metadata()`` returns, copied out (and freed if it can be)."""
        return self._take(self._metadata(), "vtcode_plugin_metadata")

    def execute_bytes(self, context_json: bytes) -> bytes:
        """Call ``vtcode_plugin_execute`` with ``context_json``; return the bytes it answers."""
        if b"\0" in context_json:
            raise PluginCallError(f"{self.label}: the context contains a NUL byte")
        return self._take(self._execute(context_json), "vtcode_plugin_execute")


def _exports(handle: ctypes.CDLL, name: str) -> bool:
    try:
        getattr(handle, name)
    except AttributeError:
        return False
    return True


_libdl = ctypes.CDLL(None)  # dlopen/dlclose of the process itself (glibc, musl, macOS)
_dlopen = _libdl.dlopen
_dlopen.restype = ctypes.c_void_p
_dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
_dlclose = _libdl.dlclose
_dlclose.restype = ctypes.c_int
_dlclose.argtypes = [ctypes.c_void_p]


def held_by_process(name: str) -> bool:
    """Whether the dynamic loader already holds an object known as ``name`` (a path, or a
    ``DT_SONAME``). Nothing is mapped or run to find out, and a name without a slash is
    looked for only among the loaded objects (:func:`loader._elf.loaded_sonames`): never
    on the search path.

    dlopen matches a path against the names of loaded objects before opening
    anything, so "/proc/self/fd/N" names whatever was loaded through fd N
    earlier, even if N has since been closed and now refers to another file.
    """
    if "/" not in name:
        return soname_loaded(name)
    # The load's own flags: glibc finds a lazily loaded library with RTLD_NOW too,
    # but the probe should not depend on how a loader treats a binding upgrade.
    handle = _dlopen(os.fsencode(name), DLOPEN_MODE | os.RTLD_NOLOAD)
    if not handle:
        return False
    _dlclose(handle)  # RTLD_NOLOAD took a reference; give it back
    return True


def unload(handle: ctypes.CDLL) -> None:
    """``dlclose`` a library ctypes opened (ctypes itself never does)."""
    _dlclose(handle._handle)
