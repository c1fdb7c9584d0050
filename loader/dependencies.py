"""Where a verified library's dependencies come from, decided before any of it is opened.

The dynamic loader opens the sealed copy as ``/proc/self/fd/N``: ``$ORIGIN``
then means ``/proc/self/fd``, and every dependency the library names
(``DT_NEEDED``) would be looked up on the ordinary search path, where an empty
element of ``LD_LIBRARY_PATH`` means the working directory. So each one is
resolved here, from the library's dynamic section (:mod:`loader._elf`), to one
of:

- a **signed file of the plugin** found through the library's ``$ORIGIN`` run
  path (``DT_RUNPATH``, or ``DT_RPATH`` as glibc reads it): loaded from a sealed
  copy of exactly its signed bytes, before the library, so that glibc matches
  the library's ``DT_NEEDED`` to it by ``DT_SONAME`` and searches nothing;
- an object the host process **already holds** under that name (libc, say):
  glibc uses it as it is, as it would for VT Code;
- a file in the **system's library directories** (``/etc/ld.so.conf`` and the
  defaults) that only root can change, with that ``DT_SONAME``: loaded first,
  by absolute path, its own dependencies resolved the same way.

Anything else (a relative path, a run path outside the plugin, a directory
another user can write, a name found nowhere) is refused with the code
``dependency-untrusted`` before the decision is recorded and before any code
runs. The resulting :class:`Plan` lists what to open, dependencies first; the
isolation worker follows the same plan.
"""

from __future__ import annotations

import functools
import os
import posixpath
import stat
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vtreg.verifier.errors import PolicyError

from ._elf import DynamicInfo, ElfError, read_dynamic
from .abi import AbiError

__all__ = ["Bundled", "Plan", "SystemLibrary", "plan_dependencies", "system_library_dirs"]

_ORIGIN = ("$ORIGIN", "${ORIGIN}")
_LD_SO_CONF = "/etc/ld.so.conf"
_MAX_DEPENDENCIES = 256  # objects in one plugin's closure; glibc's own programs need a few


@dataclass(frozen=True)
class Bundled:
    """A signed file of the plugin that the library (or another bundled file) needs."""

    rel: str
    soname: str


@dataclass(frozen=True)
class SystemLibrary:
    """A root-owned library in a system directory, opened by absolute path."""

    path: str
    soname: str


Step = Bundled | SystemLibrary


@dataclass(frozen=True)
class Plan:
    """What to open before the plugin's library, in order (dependencies first)."""

    steps: tuple[Step, ...]

    @property
    def bundled(self) -> tuple[Bundled, ...]:
        """The plugin's own files among the steps."""
        return tuple(s for s in self.steps if isinstance(s, Bundled))


Opener = Callable[[str], int]  # a signed file's relative path -> a readable descriptor


def plan_dependencies(
    library: str,
    open_signed: Opener,
    signed_files: frozenset[str],
    *,
    loaded: Callable[[str], bool],
) -> Plan:
    """Resolve every dependency of the signed ``library`` (see the module docstring).

    Args:
        library: the library's path inside the plugin.
        open_signed: opens a signed file of the plugin for reading its headers
            (the sealed copy for the library; the caller closes nothing).
        signed_files: every file the statement signed.
        loaded: whether the process that will load the plugin already holds an
            object under a given name (always False: resolve every name).

    Raises:
        PolicyError: ``dependency-untrusted``.
        AbiError: the library or a bundled file is not a readable ELF shared object.
        VerificationError: a bundled file is no longer what was signed (``open_signed``).
    """
    resolver = _Resolver(open_signed, signed_files, loaded)
    resolver.bundled(library, _dynamic(open_signed(library), library), inherited=())
    return Plan(tuple(resolver.steps))


class _Resolver:
    def __init__(
        self,
        open_signed: Opener,
        signed_files: frozenset[str],
        loaded: Callable[[str], bool],
    ) -> None:
        self.open_signed = open_signed
        self.signed_files = signed_files
        self.loaded = loaded
        self.steps: list[Step] = []
        self.done: set[str] = set()  # names resolved (or being resolved: cycles end here)
        self.kind: tuple[int, int, int] | None = None

    def bundled(self, rel: str, info: DynamicInfo, *, inherited: tuple[str, ...]) -> None:
        """Resolve what the plugin's own file ``rel`` needs, then nothing more (the caller
        adds ``rel`` itself)."""
        if self.kind is None:
            self.kind = info.kind
        # glibc: DT_RUNPATH alone if there is one; otherwise DT_RPATH, then the
        # DT_RPATH of whatever loaded this object.
        here = posixpath.dirname(rel)
        search = (
            _origin_dirs(info.runpath, here)
            if info.runpath
            else (_origin_dirs(info.rpath, here) + inherited)
        )
        passed = () if info.runpath else search
        for name in info.needed:
            if name in self.done:
                continue
            self.done.add(name)
            self._count()
            found = next((p for d in search if (p := _join(d, name)) in self.signed_files), None)
            if "/" not in name and found is not None:
                dep = _dynamic(self.open_signed(found), found)
                self._check_kind(dep, found)
                if dep.soname != name:
                    raise _refusal(
                        f"{rel} needs {name}, and the signed {found} is called "
                        f"{dep.soname or 'nothing'} (DT_SONAME): only a file called {name} "
                        f"can stand in for it; link it with -Wl,-soname,{name}"
                    )
                self.bundled(found, dep, inherited=passed)
                self.steps.append(Bundled(found, name))
            elif "/" not in name and self.loaded(name):
                continue  # the host's own: glibc matches it by name, as it would anywhere
            else:
                self.system(name, needed_by=rel, bundled_nearby=name in _basenames(self))

    def system(self, name: str, *, needed_by: str, bundled_nearby: bool = False) -> None:
        path = _find_system(name) if "/" not in name else _trusted_path(name)
        if path is None:
            where = ", ".join(system_library_dirs())
            hint = (
                f" (the plugin signs a file {name}, but {needed_by} has no run path "
                "$ORIGIN that leads to it: link it with -Wl,-rpath,'$ORIGIN')"
                if bundled_nearby
                else ""
            )
            what = (
                "a path the dynamic loader would open as given"
                if "/" in name
                else (
                    "neither a signed file of the plugin (through an $ORIGIN run path) nor a "
                    f"library in a system directory only root can change ({where})"
                )
            )
            raise _refusal(f"{needed_by} needs {name}: {what}{hint}")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            info = _dynamic(fd, path)
        finally:
            os.close(fd)
        self._check_kind(info, path)
        if "/" not in name and info.soname != name:  # pragma: no cover - _find_system checks
            raise _refusal(f"{needed_by} needs {name}; {path} is called {info.soname}")
        for dep in info.needed:
            if dep in self.done:
                continue
            self.done.add(dep)
            self._count()
            if "/" not in dep and self.loaded(dep):
                continue
            self.system(dep, needed_by=path)
        self.steps.append(SystemLibrary(path, info.soname or name))

    def _check_kind(self, info: DynamicInfo, what: str) -> None:
        if self.kind is not None and info.kind != self.kind:
            raise _refusal(f"{what} is built for another machine or word size than the plugin")

    def _count(self) -> None:
        if len(self.done) > _MAX_DEPENDENCIES:
            raise _refusal(f"the plugin needs more than {_MAX_DEPENDENCIES} libraries")


def _refusal(message: str) -> PolicyError:
    return PolicyError(message, code="dependency-untrusted")


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _basenames(resolver: _Resolver) -> set[str]:
    return {posixpath.basename(f) for f in resolver.signed_files}


def _origin_dirs(entries: tuple[str, ...], here: str) -> tuple[str, ...]:
    """The plugin directories (relative) that ``$ORIGIN`` entries name; others are dropped."""
    dirs: list[str] = []
    for entry in entries:
        origin = next((o for o in _ORIGIN if entry == o or entry.startswith(o + "/")), None)
        if origin is None:
            continue  # absolute or other: the system directories are searched anyway
        path = posixpath.normpath(posixpath.join(here or ".", entry[len(origin) + 1 :]))
        if path == ".." or path.startswith("../") or path.startswith("/"):
            continue  # outside the plugin: nothing signed is there
        dirs.append("" if path == "." else path)
    return tuple(dirs)


def _dynamic(fd: int, what: str) -> DynamicInfo:
    try:
        return read_dynamic(fd)
    except ElfError as e:
        raise AbiError(f"{what} is not an ELF shared object the loader can read: {e}") from e


@functools.cache
def system_library_dirs() -> tuple[str, ...]:
    """The directories the dynamic loader's cache and defaults search, as they exist here.

    ``/etc/ld.so.conf`` (with its ``include`` globs) first, as ``ldconfig``
    builds the cache from it, then glibc's defaults for this machine.
    """
    dirs: list[Path] = []
    _read_ld_so_conf(Path(_LD_SO_CONF), dirs, depth=0)
    multiarch = sysconfig.get_config_var("MULTIARCH")
    defaults = [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"] if multiarch else []
    dirs += map(Path, [*defaults, "/lib64", "/usr/lib64", "/lib", "/usr/lib"])
    found: list[str] = []
    for d in dirs:
        if d.is_absolute() and d.is_dir() and str(d) not in found:
            found.append(str(d))
    return tuple(found)


def _read_ld_so_conf(path: Path, dirs: list[Path], *, depth: int) -> None:
    if depth > 8:
        return
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.startswith("include "):
            pattern = line[len("include ") :].strip()
            base = Path(pattern).parent if Path(pattern).is_absolute() else path.parent
            for included in sorted(base.glob(Path(pattern).name)):
                _read_ld_so_conf(included, dirs, depth=depth + 1)
        elif line:
            dirs.append(Path(line.split("=", 1)[0].strip()))  # "dir=TYPE" in old files


def _root_only(path: Path) -> bool:
    """Whether root alone can change ``path`` and every directory above it."""
    for current in (path, *path.parents):
        try:
            info = current.stat()
        except OSError:
            return False
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return True


def _trusted_path(path: str) -> str | None:
    """An absolute dependency path, if it lies (resolved) in a system library directory."""
    if not Path(path).is_absolute():
        return None
    real = Path(path).resolve()
    trusted = {Path(d).resolve() for d in system_library_dirs()}
    if real.parent in trusted and real.is_file() and _root_only(real):
        return str(real)
    return None


def _find_system(name: str) -> str | None:
    """The first file ``name`` in the system directories that root alone can change and
    that calls itself ``name``."""
    for directory in system_library_dirs():
        candidate = Path(directory) / name
        real = candidate.resolve()
        if not (real.is_file() and _root_only(real) and _root_only(Path(directory))):
            continue
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            soname = read_dynamic(fd).soname
        except (ElfError, OSError):
            continue
        finally:
            os.close(fd)
        if soname == name:
            return str(candidate)
    return None
