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
from _ctypes import dlopen as _ctypes_dlopen
from typing import Any

from vtreg.loader._elf import soname_loaded
from vtreg.verifier.errors import VerificationError, VtregError

__all__ = [
    "DLOPEN_MODE",
    "PLUGIN_ABI_VERSION",
    "AbiError",
    "Library",
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
# The ABI's functions, typed once: a ctypes.CDLL defines a function class of its own for
# every library it opens, which costs as much as any class does.
_PROTOTYPES: dict[str, Any] = {
    "vtcode_plugin_version": ctypes.CFUNCTYPE(ctypes.c_uint32),
    "vtcode_plugin_metadata": ctypes.CFUNCTYPE(ctypes.c_void_p),
    "vtcode_plugin_execute": ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p),
    "vtcode_plugin_free_string": ctypes.CFUNCTYPE(None, ctypes.c_void_p),
}


class PluginCallError(VtregError):
    """A call into a loaded plugin failed: NULL, invalid UTF-8/JSON, wrong shape, crash, timeout."""


class LoadError(VtregError):
    """Could not decide: the loader lacked what it needs to load a plugin (a file
    descriptor, a worker process that could start and set its limits)."""


class AbiError(VerificationError):
    """Refused: not VT Code ABI v1 (missing symbol, other version), or metadata that
    contradicts what was signed."""

    default_code = "abi-mismatch"


class Library:
    """A library the dynamic loader opened: its ``dlopen`` handle, as ``ctypes.CDLL``
    keeps it (``_handle``), without the class of its own a CDLL makes."""

    __slots__ = ("_handle", "path")

    def __init__(self, path: str, mode: int) -> None:
        """``dlopen(path, mode)``.

        Raises:
            OSError: the dynamic loader refused it (with its message), as for a CDLL.
        """
        self.path = path
        self._handle: int = _ctypes_dlopen(path, mode)


class RawLibrary:
    """An opened plugin library and its ABI functions; bytes in, bytes out.

    Raises:
        AbiError: a required symbol is missing.
    """

    def __init__(self, handle: Library | ctypes.CDLL, label: str) -> None:
        self.label = label
        self._handle = handle
        found = {name: _function(handle, name) for name in _PROTOTYPES}
        missing = [name for name in _REQUIRED if found[name] is None]
        if missing:
            raise AbiError(f"{label} does not export {', '.join(missing)} (VT Code ABI v1)")
        self._version, self._metadata, self._execute = (found[name] for name in _REQUIRED)
        self._free = found["vtcode_plugin_free_string"]

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


def _function(handle: Library | ctypes.CDLL, name: str) -> Any:
    """The exported function ``name``, typed as the ABI says, or None if it is not exported."""
    try:
        return _PROTOTYPES[name]((name, handle))
    except AttributeError:
        return None


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


def unload(handle: Library | ctypes.CDLL) -> None:
    """``dlclose`` a library opened here or by ctypes (ctypes itself never closes one)."""
    _dlclose(handle._handle)
