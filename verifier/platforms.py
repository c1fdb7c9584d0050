"""Platforms: which OS/CPU a library was built for, and how libraries are named.

The signer records the platform read from the library's own header, so the
loader can refuse a library built for another machine before the dynamic
loader ever sees it.
"""

from __future__ import annotations

import functools
import platform as _platform
import struct
from collections.abc import Iterable, Mapping

__all__ = [
    "LIBRARY_FAMILIES",
    "UNKNOWN_PLATFORM",
    "detect_library_platform",
    "host_platform",
    "library_candidates",
    "library_filename",
    "library_for",
    "library_names",
    "library_names_by_family",
    "platform_label",
]

UNKNOWN_PLATFORM = "unknown"

_ELF_MACHINES = {
    3: "i686",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "arm",
    62: "x86_64",
    183: "aarch64",
    243: "riscv64",
}
_MACHO_CPUS = {0x01000007: "x86_64", 0x0100000C: "arm64", 7: "i686"}
_PE_MACHINES = {0x8664: "x86_64", 0xAA64: "aarch64", 0x14C: "i686"}

# The names VT Code's loader tries, in its order: library_filename, then the same
# without (or with) the "lib" prefix. (Its further guesses, such as lib<name>.so.so,
# come from appending a suffix twice and are not followed.)
_LIBRARY_PATTERNS = {
    "linux": ("lib{}.so", "{}.so"),
    "macos": ("lib{}.dylib", "{}.dylib"),
    "windows": ("{}.dll", "lib{}.dll"),
}
LIBRARY_FAMILIES = tuple(_LIBRARY_PATTERNS)


def detect_library_platform(header: bytes) -> str:
    """Return ``os-cpu`` for a shared library's first bytes, or ``"unknown"``.

    Args:
        header: at least the first 64 bytes of the file (4 KiB covers PE).
    """
    if header[:4] == b"\x7fELF" and len(header) >= 20:
        byteorder = "<" if header[5] == 1 else ">"
        (machine,) = struct.unpack_from(byteorder + "H", header, 18)
        cpu = _ELF_MACHINES.get(machine)
        if cpu == "ppc64" and byteorder == "<":
            cpu = "ppc64le"
        return f"linux-{cpu}" if cpu else UNKNOWN_PLATFORM
    if header[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe") and len(header) >= 8:
        (cputype,) = struct.unpack_from("<I", header, 4)
        cpu = _MACHO_CPUS.get(cputype)
        return f"macos-{cpu}" if cpu else UNKNOWN_PLATFORM
    if header[:4] == b"\xca\xfe\xba\xbe":
        return "macos-universal"
    if header[:2] == b"MZ" and len(header) >= 0x40:
        (pe_offset,) = struct.unpack_from("<I", header, 0x3C)
        if header[pe_offset : pe_offset + 4] == b"PE\0\0" and len(header) >= pe_offset + 6:
            (machine,) = struct.unpack_from("<H", header, pe_offset + 4)
            cpu = _PE_MACHINES.get(machine)
            return f"windows-{cpu}" if cpu else UNKNOWN_PLATFORM
    return UNKNOWN_PLATFORM


@functools.cache  # a process does not move to another host; a load asks more than once
def host_platform() -> str:
    """The ``os-cpu`` string of the running interpreter, in the same vocabulary."""
    system = _platform.system().lower()
    machine = _platform.machine().lower()
    os_name = {"darwin": "macos"}.get(system, system)
    cpu = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686"}.get(
        machine, machine
    )
    if os_name == "macos" and cpu == "aarch64":
        cpu = "arm64"
    return f"{os_name}-{cpu}"


def library_names(name: str, platform: str | None = None) -> tuple[str, ...]:
    """The library files VT Code looks for on ``platform`` (this host's by default), in its
    order: ``lib<name>.so`` then ``<name>.so``; ``.dylib`` alike; ``<name>.dll`` then
    ``lib<name>.dll``."""
    os_name = (platform or host_platform()).split("-", 1)[0]
    patterns = _LIBRARY_PATTERNS.get(os_name, _LIBRARY_PATTERNS["linux"])
    return tuple(p.format(name) for p in patterns)


def library_filename(name: str, platform: str | None = None) -> str:
    """The library file VT Code looks for first: ``lib<name>.so`` / ``.dylib`` / ``<name>.dll``."""
    return library_names(name, platform)[0]


def library_names_by_family(name: str) -> dict[str, tuple[str, ...]]:
    """Each OS family's library names for plugin ``name`` (linux, macos, windows), in
    VT Code's order: in one directory, VT Code loads the first present of its family."""
    return {
        os_name: tuple(p.format(name) for p in pats) for os_name, pats in _LIBRARY_PATTERNS.items()
    }


def library_candidates(name: str) -> tuple[str, ...]:
    """Every file name a library of plugin ``name`` may have, on any platform."""
    return tuple(p.format(name) for patterns in _LIBRARY_PATTERNS.values() for p in patterns)


def library_for(libraries: Mapping[str, str], host: str) -> tuple[str, str] | None:
    """The ``(platform, library)`` of ``libraries`` ({platform: file}) a ``host`` loads:
    its own platform's, else on macOS a universal library; None if there is none."""
    if host in libraries:
        return host, libraries[host]
    universal = "macos-universal"
    if host.startswith("macos-") and universal in libraries:
        return universal, libraries[universal]
    return None


def platform_label(platforms: Iterable[str]) -> str:
    """Platforms as people read them: sorted and ``+``-joined (``linux-x86_64+macos-arm64``)."""
    return "+".join(sorted(platforms))
