"""loader._elf reads the dynamic section as pyelftools (an independent reader) does."""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import PLUGIN_SOURCES, Compiler
from vtreg.loader._elf import DynamicInfo, ElfError, loaded_sonames, read_dynamic
from vtreg.loader.dependencies import system_library_dirs


def _theirs(path: Path) -> DynamicInfo:
    with path.open("rb") as f:
        elf = ELFFile(f)
        section = next(s for s in elf.iter_sections() if isinstance(s, DynamicSection))
        tags = list(section.iter_tags())

        def every(kind: str, attr: str) -> list[str]:
            return [getattr(t, attr) for t in tags if t.entry.d_tag == kind]

        sonames = every("DT_SONAME", "soname")
        return DynamicInfo(
            kind=(1 if elf.elfclass == 32 else 2, 1 if elf.little_endian else 2, 0),
            soname=sonames[0] if sonames else None,
            needed=tuple(every("DT_NEEDED", "needed")),
            rpath=tuple(p for v in every("DT_RPATH", "rpath") for p in v.split(":")),
            runpath=tuple(p for v in every("DT_RUNPATH", "runpath") for p in v.split(":")),
        )  # fmt: skip


def _ours(path: Path) -> DynamicInfo:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_dynamic(fd)
    finally:
        os.close(fd)


def _same(path: Path) -> None:
    ours, theirs = _ours(path), _theirs(path)
    assert (ours.kind[:2], ours.soname, ours.needed, ours.rpath, ours.runpath) == (
        theirs.kind[:2], theirs.soname, theirs.needed, theirs.rpath, theirs.runpath,
    ), path  # fmt: skip


def _system_libraries() -> list[Path]:
    found = []
    for name in ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"):
        for directory in system_library_dirs():
            if (Path(directory) / name).is_file():
                found.append((Path(directory) / name).resolve())
                break
    return found


def test_system_libraries_read_alike() -> None:
    libraries = _system_libraries()
    assert len(libraries) >= 2  # libc and libm at least, on any glibc system
    for library in libraries:
        _same(library)


@pytest.mark.parametrize(
    "flags",
    [
        ("-Wl,-soname,libone.so.1",),
        ("-Wl,-rpath,$ORIGIN/lib:/opt/x", "-Wl,--enable-new-dtags"),
        ("-Wl,-rpath,$ORIGIN", "-Wl,--disable-new-dtags", "-Wl,-soname,libtwo.so"),
        ("-Wl,--no-as-needed", "-lm", "-lpthread", "-ldl"),
    ],
)
def test_built_libraries_read_alike(compiler: Compiler, flags: tuple[str, ...]) -> None:
    _same(compiler.build(PLUGIN_SOURCES / "dependency.c", flags=flags))


def test_rpath_and_runpath_are_told_apart(compiler: Compiler) -> None:
    old = _ours(compiler.build(
        PLUGIN_SOURCES / "dependency.c", flags=("-Wl,-rpath,$ORIGIN", "-Wl,--disable-new-dtags")
    ))  # fmt: skip
    new = _ours(compiler.build(
        PLUGIN_SOURCES / "dependency.c", flags=("-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags")
    ))  # fmt: skip
    assert (old.rpath, old.runpath) == (("$ORIGIN",), ())
    assert (new.rpath, new.runpath) == ((), ("$ORIGIN",))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mangled_headers_give_elf_errors_only(
    data: st.DataObject, compiler: Compiler, tmp_path: Path
) -> None:
    whole = bytearray(compiler.build(PLUGIN_SOURCES / "dependency.c",
                                     flags=("-Wl,-soname,libm1.so",)).read_bytes())  # fmt: skip
    cut = data.draw(st.integers(0, len(whole)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8))
    for at, value in flips:
        if at < len(whole):
            whole[at] = value
    path = tmp_path / "mangled.so"
    path.write_bytes(bytes(whole[:cut]))
    with contextlib.suppress(ElfError):
        _ours(path)


def test_filters_are_read(compiler: Compiler) -> None:
    info = _ours(compiler.build(
        PLUGIN_SOURCES / "dependency.c", flags=("-Wl,-f,libaux.so.1", "-Wl,-F,libfilter.so.2")
    ))  # fmt: skip
    assert info.filters == ("libaux.so.1", "libfilter.so.2")
    assert _ours(compiler.build(PLUGIN_SOURCES / "dependency.c")).filters == ()


def test_loaded_sonames_are_read_from_memory(compiler: Compiler) -> None:
    soname = f"libloaded{os.getpid()}.so"
    built = compiler.build(PLUGIN_SOURCES / "dependency.c", flags=(f"-Wl,-soname,{soname}",))
    before = loaded_sonames()
    assert "libc.so.6" in before
    assert soname not in before
    ctypes.CDLL(str(built))
    assert loaded_sonames() == before | {soname}
