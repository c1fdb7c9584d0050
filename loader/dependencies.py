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
another user can write, a name found nowhere) is refused, and so is what glibc
would search its path for even then: filter libraries (``DT_FILTER``,
``DT_AUXILIARY``) and libraries that need each other (a cycle). All with the code
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
    """What to open before the plugin's library, in order (dependencies first), and the
    library's own ``DT_SONAME``."""

    steps: tuple[Step, ...]
    soname: str | None = None

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
    info = _dynamic(open_signed(library), library)
    resolver.bundled(library, info, inherited=())
    return Plan(tuple(resolver.steps), info.soname)


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
        self.done: set[str] = set()  # names resolved, or being resolved (pending)
        self.pending: set[str] = set()  # names whose own needs are being resolved
        self.opening: set[str] = set()  # the plugin's files whose needs are being resolved
        self.kind: tuple[int, int, int] | None = None

    def bundled(self, rel: str, info: DynamicInfo, *, inherited: tuple[str, ...]) -> None:
        """Resolve what the plugin's own file ``rel`` needs, then nothing more (the caller
        adds ``rel`` itself)."""
        if self.kind is None:
            self.kind = info.kind
        _check_no_filters(info, rel)
        self.opening.add(rel)
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
            if not self._first_need(name, info, rel):
                continue
            found = next((p for d in search if (p := _join(d, name)) in self.signed_files), None)
            if "/" not in name and found is not None:
                if found in self.opening:
                    raise _cycle(rel, name)
                dep = _dynamic(self.open_signed(found), found)
                self._check_kind(dep, found)
                if dep.soname != name:
                    raise _refusal(
                        f"{rel} needs {name}, and the signed {found} is called "
                        f"{dep.soname or 'nothing'} (DT_SONAME): only a file called {name} "
                        f"can stand in for it; link it with -Wl,-soname,{name}"
                    )
                self.pending.add(name)
                self.bundled(found, dep, inherited=passed)
                self.pending.discard(name)
                self.steps.append(Bundled(found, name))
            elif "/" not in name and self.loaded(name):
                continue  # the host's own: glibc matches it by name, as it would anywhere
            else:
                self.system(name, needed_by=rel, bundled_nearby=name in _basenames(self))
        self.opening.discard(rel)

    def system(self, name: str, *, needed_by: str, bundled_nearby: bool = False) -> None:
        found = _find_system(name, self.kind) if "/" not in name else _trusted_path(name)
        if found is None:
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
        path, info = found
        self._check_kind(info, path)
        _check_no_filters(info, path)
        if "/" not in name and info.soname != name:  # pragma: no cover - _find_system checks
            raise _refusal(f"{needed_by} needs {name}; {path} is called {info.soname}")
        self.pending.add(name)
        for dep in info.needed:
            if not self._first_need(dep, info, path):
                continue
            if "/" not in dep and self.loaded(dep):
                continue
            self.system(dep, needed_by=path)
        self.pending.discard(name)
        self.steps.append(SystemLibrary(path, info.soname or name))

    def _first_need(self, name: str, info: DynamicInfo, needed_by: str) -> bool:
        """Whether ``name``, needed by ``needed_by``, is still to be resolved.

        An object's need of its own name is met by the object itself. A need of a
        library that is still being resolved is a cycle: whichever of the two is
        opened first, the dynamic loader would search for the other.
        """
        if name == info.soname:
            return False
        if name in self.pending:
            raise _cycle(needed_by, name)
        if name in self.done:
            return False
        self.done.add(name)
        self._count()
        return True

    def _check_kind(self, info: DynamicInfo, what: str) -> None:
        if self.kind is not None and info.kind != self.kind:
            raise _refusal(f"{what} is built for another machine or word size than the plugin")

    def _count(self) -> None:
        if len(self.done) > _MAX_DEPENDENCIES:
            raise _refusal(f"the plugin needs more than {_MAX_DEPENDENCIES} libraries")


def _refusal(message: str) -> PolicyError:
    return PolicyError(message, code="dependency-untrusted")


def _cycle(needed_by: str, name: str) -> PolicyError:
    return _refusal(
        f"{needed_by} needs {name}, which needs {needed_by} in turn: whichever of them is "
        "opened first, the dynamic loader would search its path for the other"
    )


def _check_no_filters(info: DynamicInfo, what: str) -> None:
    if info.filters:
        raise _refusal(
            f"{what} names filter libraries ({', '.join(info.filters)}: DT_FILTER or "
            "DT_AUXILIARY), which the dynamic loader searches its path for and loads"
        )


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
    dirs = _ld_so_conf_dirs(Path(_LD_SO_CONF))
    multiarch = sysconfig.get_config_var("MULTIARCH")
    defaults = [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"] if multiarch else []
    dirs += map(Path, [*defaults, "/lib64", "/usr/lib64", "/lib", "/usr/lib"])
    found: list[str] = []
    for d in dirs:
        if d.is_absolute() and d.is_dir() and str(d) not in found:
            found.append(str(d))
    return tuple(found)


def _ld_so_conf_dirs(path: Path) -> list[Path]:
    """The directories ``path`` (an ``ld.so.conf``) lists, its ``include`` globs followed
    as ``ldconfig`` follows them: a relative pattern from the including file's directory,
    each file once (a file that includes itself, or a glob matching its includer, is not a
    loop)."""
    dirs: list[Path] = []
    seen: set[Path] = set()

    def read(conf: Path) -> None:
        if (real := Path(os.path.realpath(conf))) in seen:
            return
        seen.add(real)
        try:
            lines = conf.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            line = line.split("#", 1)[0].strip()
            keyword, _, pattern = line.partition(" ") if " " in line else line.partition("\t")
            if keyword == "include" and pattern.strip():
                pattern = pattern.strip()
                base = Path("/") if pattern.startswith("/") else conf.parent
                for included in sorted(base.glob(pattern.lstrip("/"))):
                    read(included)
            elif line:
                dirs.append(Path(line.split("=", 1)[0].strip()))  # "dir=TYPE" in old files

    read(path)
    return dirs


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


def _dynamic_of(path: Path) -> DynamicInfo:
    """The dynamic section of the file at ``path`` (ElfError, OSError as they come)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_dynamic(fd)
    finally:
        os.close(fd)


def _trusted_path(path: str) -> tuple[str, DynamicInfo] | None:
    """An absolute dependency path, if it lies (resolved) in a system library directory,
    and its dynamic section.

    Raises:
        AbiError: it does, but is not an ELF shared object the loader can read.
    """
    if not Path(path).is_absolute():
        return None
    trusted = {Path(d).resolve() for d in system_library_dirs()}
    try:
        real = Path(path).resolve()
        if not (real.parent in trusted and real.is_file() and _root_only(real)):
            return None
        return str(real), _dynamic_of(real)
    except ElfError as e:
        raise AbiError(f"{path} is not an ELF shared object the loader can read: {e}") from e
    except OSError:  # a name too long for a file, say: nothing is there
        return None


def _find_system(name: str, kind: tuple[int, int, int] | None) -> tuple[str, DynamicInfo] | None:
    """The first file ``name`` in the system directories that root alone can change, that
    calls itself ``name`` and is built for ``kind`` (glibc skips the others: a multiarch
    host lists /lib/i386-linux-gnu before /lib/x86_64-linux-gnu), and its dynamic section."""
    for directory in system_library_dirs():
        candidate = Path(directory) / name
        try:
            real = candidate.resolve()
            if not (real.is_file() and _root_only(real) and _root_only(Path(directory))):
                continue
            info = _dynamic_of(real)
        except (ElfError, OSError):  # a name too long for a file, say: not here
            continue
        if info.soname == name and info.kind == (kind or info.kind):
            return str(candidate), info
    return None
