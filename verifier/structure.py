"""``validate_plugin_structure``: VT Code's structure check, and vtreg's own findings apart.

:func:`validate_plugin_structure` reports exactly what VT Code's function of
that name reports (``native_plugin.rs``), message for message and in its
order. :func:`check_plugin_structure` adds, separately, what vtreg would
refuse to sign or load (names, versions, library naming, special files).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pydantic

from ._json import load_json_object, no_constants
from .errors import VtregError
from .layout import MANIFEST_FILE
from .manifest import PluginManifest
from .platforms import (
    UNKNOWN_PLATFORM,
    detect_library_platform,
    library_candidates,
    library_names_by_family,
)
from .tree import capture

__all__ = ["StructureReport", "check_plugin_structure", "validate_plugin_structure"]

_LIBRARY_EXTENSIONS = ("dylib", "so", "dll")
# serde_json's recursion limit: its remaining depth starts at 128 and is counted down as a
# container opens, and reaching 0 is the error, so 127 nested containers are its deepest.
_SERDE_DEPTH = 128
_INVALID = object()  # what serde_json refuses (None is a valid document: JSON null)


def _extension(name: str) -> str | None:
    """Rust's ``Path::extension``: after the last dot, unless the only dot leads the name."""
    dot = name.rfind(".")
    return name[dot + 1 :] if dot > 0 else None


def _serde_value(text: str) -> object:
    """``serde_json::from_str::<Value>``: the document (``null`` is None), or ``_INVALID``
    where serde_json refuses it (NaN and infinities, numbers beyond a double, lone
    surrogates, 128 or more nested containers)."""

    def finite(literal: str) -> float:
        value = float(literal)
        if value in (float("inf"), float("-inf")):
            raise ValueError("number out of range")
        return value

    try:
        document = json.loads(text, parse_constant=no_constants, parse_float=finite)
    except (ValueError, RecursionError):
        return _INVALID
    return document if _serde_accepts(document, 1) else _INVALID


def _serde_accepts(value: object, depth: int) -> bool:
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**64 or _fits_a_double(value)
    if isinstance(value, dict | list):
        children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        return depth < _SERDE_DEPTH and all(_serde_accepts(c, depth + 1) for c in children)
    return True


def _fits_a_double(value: int) -> bool:
    """serde_json reads an integer beyond 64 bits as a double, if it is not out of range."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


def validate_plugin_structure(plugin_dir: str | os.PathLike[str]) -> list[str]:
    """What VT Code's ``validate_plugin_structure`` reports for ``plugin_dir``; empty: fine.

    Its checks, as it makes them: plugin.json exists; some entry at the top
    level has the extension ``dylib``, ``so`` or ``dll``; plugin.json, if it
    reads as UTF-8 text, is JSON whose ``name``, ``description`` and
    ``version`` are strings. Nothing else is looked at, nothing is raised.
    """
    directory = Path(plugin_dir)
    manifest = directory / MANIFEST_FILE
    problems: list[str] = []
    if not manifest.exists():
        problems.append(f"Missing {MANIFEST_FILE}")
    try:
        with os.scandir(directory) as entries:
            has_library = any(_extension(e.name) in _LIBRARY_EXTENSIONS for e in entries)
    except OSError:
        has_library = False
    if not has_library:
        problems.append("No dynamic library found (.dylib, .so, or .dll)")
    try:
        text = manifest.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return problems  # read_to_string failed: VT Code checks nothing more
    document = _serde_value(text)
    if document is _INVALID:
        problems.append(f"Invalid JSON in {MANIFEST_FILE}")
        return problems
    # serde_json's Value::get of a field in anything but an object (null, a list, a
    # number) is None, as it is of a missing field: VT Code reports all three missing.
    fields = document if isinstance(document, dict) else {}
    for field in ("name", "description", "version"):
        if not isinstance(fields.get(field), str):
            problems.append(f"{MANIFEST_FILE} missing required '{field}' field")
    return problems


@dataclass(frozen=True)
class StructureReport:
    """VT Code's findings (:func:`validate_plugin_structure`) and vtreg's, kept apart."""

    vtcode: tuple[str, ...]
    vtreg: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether neither VT Code nor vtreg found anything."""
        return not self.vtcode and not self.vtreg


def check_plugin_structure(plugin_dir: str | os.PathLike[str]) -> StructureReport:
    """VT Code's findings, and apart from them what vtreg would refuse to sign or load:
    symlinks, devices or FIFOs anywhere; an unsafe name or a version without an order;
    no library named for the plugin, or one that is not a shared library.
    Signatures are not checked here (that is :mod:`verifier.signatures`' job).
    """
    return StructureReport(
        vtcode=tuple(validate_plugin_structure(plugin_dir)),
        vtreg=tuple(_vtreg_findings(plugin_dir)),
    )


def _vtreg_findings(plugin_dir: str | os.PathLike[str]) -> list[str]:
    try:
        tree = capture(plugin_dir, algorithms=())
    except VtregError as e:
        return [str(e)]
    if tree.manifest is None:
        return []  # VT Code's findings say so
    try:
        manifest = PluginManifest.model_validate(load_json_object(tree.manifest, MANIFEST_FILE))
    except VtregError as e:
        return [str(e)]
    except pydantic.ValidationError as e:
        return [
            f"{MANIFEST_FILE} field '{'.'.join(map(str, error['loc']))}': "
            + str(error["msg"]).removeprefix("Value error, ")
            for error in e.errors(include_url=False)
            if error["type"] != "missing"  # VT Code's findings name missing fields
        ]
    libraries = [c for c in library_candidates(manifest.name) if c in tree.files]
    if not libraries:
        expected = " or ".join(library_candidates(manifest.name))
        return [f"No library for plugin '{manifest.name}' (expected {expected})"]
    return [
        f"{library} is not a shared library for a known platform"
        for library in libraries
        if detect_library_platform(tree.files[library].head) == UNKNOWN_PLATFORM
    ] + _second_libraries(manifest.name, set(tree.files))


def _second_libraries(name: str, files: set[str]) -> list[str]:
    """A family's libraries after the first present: VT Code, and vtreg, never load them."""
    findings = []
    for family, names in library_names_by_family(name).items():
        present = [n for n in names if n in files]
        for other in present[1:]:
            findings.append(
                f"{present[0]} and {other} are both {family} libraries of {name}: VT Code and "
                f"vtreg load {present[0]} ({other} is signed as an ordinary file)"
            )
    return findings
