"""``validate_plugin_structure``: VT Code's structure check, with vtreg's rules added."""

from __future__ import annotations

import os

import pydantic

from ._json import load_json_object
from .errors import VtregError
from .layout import MANIFEST_FILE
from .manifest import PluginManifest
from .platforms import UNKNOWN_PLATFORM, detect_library_platform, library_candidates
from .tree import capture

__all__ = ["validate_plugin_structure"]

_LIBRARY_SUFFIXES = (".so", ".dylib", ".dll")


def validate_plugin_structure(plugin_dir: str | os.PathLike[str]) -> list[str]:
    """List what is wrong with a plugin directory, as VT Code does; empty means fine.

    Beyond VT Code's checks (plugin.json present, valid JSON, required fields,
    a dynamic library present) this reports an unsafe name or non-semver
    version, a library not named for the plugin or not a shared library, and
    symlinks, devices or FIFOs anywhere in the directory. Signatures are not
    checked here; that is :func:`verifier.signatures`'s job.

    Returns:
        One message per problem found; nothing is raised for a bad directory.
    """
    try:
        tree = capture(plugin_dir, algorithms=())
    except VtregError as e:
        return [str(e)]
    problems: list[str] = []
    top_level = [p for p in tree.files if "/" not in p]
    if not any(p.endswith(_LIBRARY_SUFFIXES) for p in top_level):
        problems.append("No dynamic library found (.dylib, .so, or .dll)")
    if tree.manifest is None:
        problems.append(f"Missing {MANIFEST_FILE}")
        return problems
    try:
        obj = load_json_object(tree.manifest, MANIFEST_FILE)
    except VtregError as e:
        problems.append(f"Invalid JSON in {MANIFEST_FILE}: {e}")
        return problems
    if not isinstance(obj.get("description"), str):
        # Optional when loading (VT Code's loader reads only the name), but VT Code's
        # structure check asks for it, and so does this one.
        problems.append(f"{MANIFEST_FILE} missing required 'description' field")
    try:
        manifest = PluginManifest.model_validate(obj)
    except pydantic.ValidationError as e:
        for error in e.errors(include_url=False):
            where = ".".join(str(p) for p in error["loc"])
            if error["type"] == "missing":
                problems.append(f"{MANIFEST_FILE} missing required '{where}' field")
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{MANIFEST_FILE} field '{where}': {message}")
        return problems
    libraries = [c for c in library_candidates(manifest.name) if c in tree.files]
    if not libraries:
        expected = " or ".join(library_candidates(manifest.name))
        problems.append(f"No library for plugin '{manifest.name}' (expected {expected})")
    for library in libraries:
        if detect_library_platform(tree.files[library].head) == UNKNOWN_PLATFORM:
            problems.append(f"{library} is not a shared library for a known platform")
    return problems
