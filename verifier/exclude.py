"""Paths a signature leaves out (``vtreg sign --exclude GLOB``), and how they match.

The patterns are part of the signed predicate, so a verifier knows which paths
may exist without being covered; every other file not signed is still refused.
A pattern is an ``fnmatch`` glob matched case-sensitively against a path
relative to the plugin directory, ``/``-separated, where ``*`` also matches
``/`` (``*.o`` leaves out every ``.o`` file, however deep). A directory whose
path matches is left out with everything below it, without being entered.

Excluded paths are never opened, read, hashed, copied or loaded, whatever they
are (a symlink or FIFO among them is not followed or opened either): the
loader takes a library and its bundled dependencies only from signed files, so
an excluded file can never be one. Signing refuses patterns that would leave
out plugin.json or a library of the plugin (see :func:`check_not_hiding`).

Standard library only: the capture (:mod:`verifier.tree`) imports this on the
start-up path.
"""

from __future__ import annotations

import fnmatch

__all__ = [
    "MAX_EXCLUDES",
    "check_exclude_pattern",
    "check_not_hiding",
    "excluded_paths",
    "is_excluded",
]

MAX_EXCLUDES = 64
_MAX_PATTERN = 256
# Names a shared library may have (libdep.so.1 included): never excluded, so that
# nothing the dynamic loader could be asked for is left unsigned beside the plugin.
_LIBRARY_GLOBS = ("*.so", "*.so.*", "*.dylib", "*.dll")


def check_exclude_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a relative glob a statement may carry, else raise.

    Raises:
        ValueError: empty, too long, absolute, with an empty, ``.`` or ``..``
            component (``build/``: give ``build``), a backslash or a control character.
    """
    parts = pattern.split("/")
    if (
        not pattern
        or len(pattern) > _MAX_PATTERN
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in pattern
        or not pattern.isprintable()
    ):
        raise ValueError(
            f"{pattern!r} is not an exclude pattern (a relative glob such as '*.o' or "
            f"'build', at most {_MAX_PATTERN} characters, no empty, '.' or '..' component, "
            "no backslash)"
        )
    return pattern


def is_excluded(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether ``path`` (or a directory above it) matches one of ``patterns``."""
    if not patterns:
        return False
    parts = path.split("/")
    prefixes = ("/".join(parts[: i + 1]) for i in range(len(parts)))
    return any(fnmatch.fnmatchcase(p, pattern) for p in prefixes for pattern in patterns)


def excluded_paths(patterns: tuple[str, ...] | list[str], paths: list[str]) -> list[str]:
    """The ``paths`` that ``patterns`` leave out, in their order."""
    return [p for p in paths if is_excluded(p, patterns)]


def check_not_hiding(
    patterns: tuple[str, ...] | list[str], must_sign: tuple[str, ...], excluded: list[str]
) -> None:
    """Refuse patterns that leave out a file that must be signed, or a library.

    Args:
        patterns: the exclude patterns.
        must_sign: paths that can never be left out (plugin.json, every name
            the plugin's library may have on any platform), present or not.
        excluded: the paths the capture left out.

    Raises:
        ValueError: saying which pattern hides what.
    """
    for path in must_sign:
        hit = next((p for p in patterns if is_excluded(path, [p])), None)
        if hit is not None:
            raise ValueError(f"--exclude {hit!r} would leave out {path}, which must be signed")
    for path in excluded:
        name = path.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatchcase(name, glob) for glob in _LIBRARY_GLOBS):
            raise ValueError(
                f"--exclude would leave out {path}, a shared library: a library or bundled "
                "dependency is always signed"
            )
