"""The dynamic section of an ELF shared object: its name, what it needs, where it looks.

A small reader of exactly what dependency resolution needs (the ELF header, the
program headers, ``PT_DYNAMIC`` and the strings it points at), reading with
``pread`` from a descriptor, every offset and size checked against the file.
32- and 64-bit, either byte order. ``tests/loader/test_elf.py`` checks it
against pyelftools, an independent implementation.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from dataclasses import dataclass

__all__ = ["DynamicInfo", "ElfError", "loaded_sonames", "read_dynamic", "soname_loaded"]

_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ = 0, 1, 5, 10
_DT_SONAME, _DT_RPATH, _DT_RUNPATH = 14, 15, 29
_DT_AUXILIARY, _DT_FILTER = 0x7FFFFFFD, 0x7FFFFFFF
_MAX_PROGRAM_HEADERS = 4096
_MAX_DYNAMIC_BYTES = 1 << 20  # glibc's own objects have a few hundred bytes of it
_MAX_NAME_BYTES = 4096
# Read at once: a plugin library's headers, dynamic section and strings usually lie in
# its first pages, so one pread serves them all (what lies past it is read as needed).
_FIRST_BYTES = 64 << 10


class ElfError(ValueError):
    """Not an ELF shared object whose dynamic section can be read."""


@dataclass(frozen=True)
class DynamicInfo:
    """What the dynamic loader reads of an object to find its dependencies.

    ``kind`` is (class, byte order, machine): objects of different kinds cannot
    be loaded together. ``rpath`` and ``runpath`` are the colon-separated
    entries of ``DT_RPATH`` and ``DT_RUNPATH``, unexpanded. ``filters`` are the
    objects named by ``DT_AUXILIARY`` and ``DT_FILTER``, which the dynamic loader
    loads (searching for them) as it does what ``DT_NEEDED`` names.
    """

    kind: tuple[int, int, int]
    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    filters: tuple[str, ...] = ()


def read_dynamic(fd: int) -> DynamicInfo:
    """The dynamic section of the ELF object open at ``fd`` (read with pread, offset kept).

    Raises:
        ElfError: not ELF, no dynamic section, or a header or string outside the file.
        OSError: the descriptor cannot be read.
    """
    size = os.fstat(fd).st_size
    first = os.pread(fd, min(size, _FIRST_BYTES), 0)

    def read(offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > size:
            raise ElfError(f"a header points outside the file ({offset}+{length} > {size})")
        if offset + length <= len(first):
            return first[offset : offset + length]
        data = os.pread(fd, length, offset)
        if len(data) != length:  # pragma: no cover - the file shrank under a sealed copy
            raise ElfError("the file is shorter than its headers say")
        return data

    ident = read(0, 16)
    if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
        raise ElfError("not an ELF file")
    wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
    if wide:
        machine, phoff, phentsize, phnum = struct.unpack_from(order + "18xH12xQ14xHH", read(0, 64))
        header = order + "qQ"  # d_tag, d_val
    else:
        machine, phoff, phentsize, phnum = struct.unpack_from(order + "18xH8xI10xHH", read(0, 52))
        header = order + "iI"
    kind = (ident[4], ident[5], machine)
    if phentsize != struct.calcsize(_program_header(wide, order)) or phnum > _MAX_PROGRAM_HEADERS:
        raise ElfError(f"odd program headers ({phnum} of {phentsize} bytes)")
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: tuple[int, int] | None = None
    table = read(phoff, phentsize * phnum)
    for i in range(phnum):
        p_type, p_offset, p_vaddr, p_filesz = _segment(wide, order, table, i * phentsize)
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        raise ElfError("no dynamic section (not a shared object)")
    offset, length = dynamic
    if length > _MAX_DYNAMIC_BYTES:
        raise ElfError(f"a dynamic section of {length} bytes")
    step = struct.calcsize(header)
    entries: list[tuple[int, int]] = []
    data = read(offset, length - length % step)
    for tag, value in struct.iter_unpack(header, data):
        if tag == _DT_NULL:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == _DT_STRTAB), None)
    strsz = next((v for t, v in entries if t == _DT_STRSZ), 0)
    named = (_DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_RUNPATH, _DT_AUXILIARY, _DT_FILTER)
    names = [(t, v) for t, v in entries if t in named]
    if names and strtab is None:
        raise ElfError("dynamic entries name strings but there is no string table")
    strings = read(_file_offset(loads, strtab), strsz) if names and strtab is not None else b""

    def string(at: int) -> str:
        end = strings.find(b"\0", at, at + _MAX_NAME_BYTES)
        if at >= len(strings) or end < 0:
            raise ElfError(f"a dynamic string at {at} lies outside the string table")
        return os.fsdecode(strings[at:end])

    def every(tag: int) -> list[str]:
        return [string(v) for t, v in names if t == tag]

    sonames = every(_DT_SONAME)
    return DynamicInfo(
        kind=kind,
        soname=sonames[0] if sonames else None,
        needed=tuple(every(_DT_NEEDED)),
        rpath=tuple(p for value in every(_DT_RPATH) for p in value.split(":")),
        runpath=tuple(p for value in every(_DT_RUNPATH) for p in value.split(":")),
        filters=tuple(every(_DT_AUXILIARY) + every(_DT_FILTER)),
    )


def _program_header(wide: bool, order: str) -> str:
    # 64-bit: type, flags, offset, vaddr, paddr, filesz, memsz, align.
    # 32-bit: type, offset, vaddr, paddr, filesz, memsz, flags, align.
    return order + ("IIQQQQQQ" if wide else "IIIIIIII")


def _segment(wide: bool, order: str, table: bytes, at: int) -> tuple[int, int, int, int]:
    """(p_type, p_offset, p_vaddr, p_filesz) of the program header at ``at``."""
    fields = struct.unpack_from(_program_header(wide, order), table, at)
    if wide:
        return fields[0], fields[2], fields[3], fields[5]
    return fields[0], fields[1], fields[2], fields[4]


def _file_offset(loads: list[tuple[int, int, int]], address: int) -> int:
    """Where the byte loaded at virtual ``address`` lies in the file."""
    for vaddr, offset, filesz in loads:
        if vaddr <= address < vaddr + filesz:
            return offset + (address - vaddr)
    raise ElfError(f"the string table's address {address:#x} is in no loaded segment")


class _PhdrInfo(ctypes.Structure):
    # struct dl_phdr_info up to dlpi_subs, as dl_iterate_phdr(3) documents it.
    _fields_ = [
        ("addr", ctypes.c_size_t),
        ("name", ctypes.c_char_p),
        ("phdr", ctypes.c_void_p),
        ("phnum", ctypes.c_uint16),
        ("adds", ctypes.c_ulonglong),
        ("subs", ctypes.c_ulonglong),
    ]


_EACH_OBJECT = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(_PhdrInfo), ctypes.c_size_t, ctypes.c_void_p
)
_dl_iterate_phdr = ctypes.CDLL(None).dl_iterate_phdr
# (base address, program headers) of each object seen -> its DT_SONAME; emptied
# whenever an object has been unloaded since, as another may now lie there.
_seen: dict[tuple[int, int], str | None] = {}
# The loader's (loads, unloads) counters when the last answer was read, and that answer.
_counted: list[tuple[int, int] | None] = [None]
_answer: list[frozenset[str]] = [frozenset()]


def _counters() -> tuple[int, int] | None:
    """The dynamic loader's (loads, unloads) counters, or None if it keeps none."""
    counters: list[tuple[int, int] | None] = [None]

    def first(info: ctypes._Pointer[_PhdrInfo], size: int, data: int | None) -> int:
        del data
        if size >= ctypes.sizeof(_PhdrInfo):
            counters[0] = (info.contents.adds, info.contents.subs)
        return 1  # the counters are the same in every object's record

    _dl_iterate_phdr(_EACH_OBJECT(first), None)
    return counters[0]


def loaded_sonames() -> frozenset[str]:
    """The ``DT_SONAME`` of every object loaded in this process, read from memory.

    ``dlopen(name, RTLD_NOLOAD)`` would answer too, but for a name it does not
    hold it searches the path (``LD_LIBRARY_PATH`` included) and opens what it
    finds there: a FIFO planted under that name blocks it for good, and a link
    to a loaded library makes it answer "held" and give that library the name.
    ``dl_iterate_phdr`` reads only what is mapped already.
    """
    return _sonames(_counters())


def _sonames(now: tuple[int, int] | None) -> frozenset[str]:
    """:func:`loaded_sonames`, given the loader's counters as they are now."""
    known = _counted[0]
    if now is not None and now == known:
        return _answer[0]  # nothing loaded or unloaded since the last answer
    if now is None or known is None or now[1] != known[1]:
        _seen.clear()
    names: set[str] = set()

    def each(info: ctypes._Pointer[_PhdrInfo], size: int, data: int | None) -> int:
        del size, data
        this = info.contents
        key = (this.addr, this.phdr or 0)
        if key not in _seen:
            _seen[key] = _soname_of(this)
        if (soname := _seen[key]) is not None:
            names.add(soname)
        return 0

    _dl_iterate_phdr(_EACH_OBJECT(each), None)
    _answer[0], _counted[0] = frozenset(names), now
    return _answer[0]


def _soname_of(this: _PhdrInfo) -> str | None:
    wide = ctypes.sizeof(ctypes.c_void_p) == 8
    order = "<" if sys.byteorder == "little" else ">"
    phsize = struct.calcsize(_program_header(wide, order))
    table = ctypes.string_at(this.phdr, phsize * this.phnum)
    segments = [_segment(wide, order, table, i * phsize) for i in range(this.phnum)]
    loads = [(this.addr + v, this.addr + v + n) for t, _, v, n in segments if t == _PT_LOAD]
    start, length = next(
        ((this.addr + v, n) for t, _, v, n in segments if t == _PT_DYNAMIC), (0, 0)
    )
    end = next((hi for lo, hi in loads if lo <= start < hi), None)  # read only what is mapped
    if end is None or length <= 0:
        return None
    dynamic = ctypes.string_at(start, min(length, end - start, _MAX_DYNAMIC_BYTES))
    return _soname_in_memory(dynamic, order + ("qQ" if wide else "iI"), this.addr, loads)


def _soname_in_memory(
    dynamic: bytes, entry: str, base: int, loads: list[tuple[int, int]]
) -> str | None:
    """DT_SONAME of an object mapped at ``base``, from its dynamic section's bytes.

    The dynamic loader may have relocated DT_STRTAB in place (glibc does where
    the section is writable) or not: whichever of the two addresses lies in the
    object's loaded segments is the string table.
    """
    step = struct.calcsize(entry)
    tags: dict[int, int] = {}
    for tag, value in struct.iter_unpack(entry, dynamic[: len(dynamic) - len(dynamic) % step]):
        if tag == _DT_NULL:
            break
        tags.setdefault(tag, value)
    if _DT_SONAME not in tags or _DT_STRTAB not in tags:
        return None
    for strtab in (tags[_DT_STRTAB], base + tags[_DT_STRTAB]):
        at = strtab + tags[_DT_SONAME]
        end = next((hi for lo, hi in loads if lo <= strtab < hi and lo <= at < hi), None)
        if end is not None:
            raw = ctypes.string_at(at, min(end - at, _MAX_NAME_BYTES))
            return os.fsdecode(raw.split(b"\0", 1)[0]) if b"\0" in raw else None
    return None


def soname_loaded(name: str) -> bool:
    """Whether an object with ``DT_SONAME`` ``name`` is loaded (:func:`loaded_sonames`).

    Loading only adds objects: while nothing has been unloaded since the last
    full answer, a name in it is still loaded, and only a name missing from it
    needs the objects read again.
    """
    now, known = _counters(), _counted[0]
    if now is not None and known is not None and now[1] == known[1] and name in _answer[0]:
        return True
    return name in _sonames(now)
