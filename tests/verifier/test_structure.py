"""validate_plugin_structure says what VT Code's says; check_plugin_structure adds vtreg's own.

The expected lists are VT Code's ``validate_plugin_structure``
(crates/codegen/vtcode-skills/src/native_plugin.rs) read line by line: its
messages, in its order, for the same directory.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from vtreg.verifier.structure import check_plugin_structure, validate_plugin_structure

PluginFactory = Callable[..., Path]
NO_LIBRARY = "No dynamic library found (.dylib, .so, or .dll)"
GOOD_JSON = '{"name": "test", "description": "test", "version": "1.0.0"}'


def _nested(levels: int) -> str:
    """A complete plugin.json of ``levels`` nested containers: the object, then lists."""
    lists = levels - 1
    return f'{{"name": "t", "description": "d", "version": "1", "x": {"[" * lists}{"]" * lists}}}'


MISSING_ALL = [
    "plugin.json missing required 'name' field",
    "plugin.json missing required 'description' field",
    "plugin.json missing required 'version' field",
]


def _dir(tmp_path: Path, files: dict[str, bytes | str]) -> Path:
    plugin = tmp_path / "p"
    plugin.mkdir()
    for name, data in files.items():
        path = plugin / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return plugin


# VT Code's own fixtures (its tests' names), then the shapes a review compared.
CASES: dict[str, tuple[dict[str, bytes | str], list[str]]] = {
    "vtcode-complete": ({"plugin.json": GOOD_JSON, "libtest.so": b"fake"}, []),
    "vtcode-missing-metadata": ({}, ["Missing plugin.json", NO_LIBRARY]),
    "vtcode-missing-library": ({"plugin.json": GOOD_JSON}, [NO_LIBRARY]),
    "only-name": (
        {"plugin.json": '{"name": "test"}', "x.so": b""},
        [
            "plugin.json missing required 'description' field",
            "plugin.json missing required 'version' field",
        ],
    ),
    "not-an-object": (
        {"plugin.json": "[1, 2]", "x.dll": b""},
        [
            "plugin.json missing required 'name' field",
            "plugin.json missing required 'description' field",
            "plugin.json missing required 'version' field",
        ],
    ),
    "number-version": (
        {"plugin.json": '{"name": "t", "description": "d", "version": 1}', "a.dylib": b""},
        ["plugin.json missing required 'version' field"],
    ),
    # serde_json reads null as Value::Null, whose fields are all missing.
    "null": ({"plugin.json": "null", "libx.so": b""}, MISSING_ALL),
    "null-among-whitespace": ({"plugin.json": " \n null \t", "libx.so": b""}, MISSING_ALL),
    "invalid-json": ({"plugin.json": "{", "libx.so": b""}, ["Invalid JSON in plugin.json"]),
    "nan": (
        {"plugin.json": '{"name": "t", "description": "d", "version": "1", "x": NaN}',
         "libx.so": b""},
        ["Invalid JSON in plugin.json"],
    ),
    "lone-surrogate": (
        {"plugin.json": '{"name": "\\ud800", "description": "d", "version": "1"}',
         "libx.so": b""},
        ["Invalid JSON in plugin.json"],
    ),
    "too-deep-for-serde": (
        {"plugin.json": '{"name": "t", "description": "d", "version": "1", "x": '
         + "[" * 130 + "]" * 130 + "}", "libx.so": b""},
        ["Invalid JSON in plugin.json"],
    ),
    # serde_json counts its remaining depth down from 128 and fails when it reaches 0.
    "serde-deepest-127-levels": ({"plugin.json": _nested(127), "libx.so": b""}, []),
    "serde-refuses-128-levels": (
        {"plugin.json": _nested(128), "libx.so": b""}, ["Invalid JSON in plugin.json"]
    ),
    "serde-refuses-128-lists": (
        {"plugin.json": "[" * 128 + "]" * 128, "libx.so": b""}, ["Invalid JSON in plugin.json"]
    ),
    "serde-deepest-127-lists": ({"plugin.json": "[" * 127 + "]" * 127, "libx.so": b""},
                                MISSING_ALL),
    "not-utf8": ({"plugin.json": b'{"name": "\xff"}', "libx.so": b""}, []),  # unread: no check
    "duplicate-keys-last-wins": (
        {"plugin.json": '{"name": 1, "name": "t", "description": "d", "version": "1"}',
         "libx.so": b""},
        [],
    ),
    "versioned-so-is-not-so": ({"plugin.json": GOOD_JSON, "libx.so.1": b""}, [NO_LIBRARY]),
    "hidden-dot-so": ({"plugin.json": GOOD_JSON, ".so": b""}, [NO_LIBRARY]),
    "any-so-counts": ({"plugin.json": GOOD_JSON, "README.so": b"not a library"}, []),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_findings_are_vtcodes(tmp_path: Path, case: str) -> None:
    files, expected = CASES[case]
    assert validate_plugin_structure(_dir(tmp_path, files)) == expected


def test_a_library_directory_counts_as_vtcode_counts_it(tmp_path: Path) -> None:
    plugin = _dir(tmp_path, {"plugin.json": GOOD_JSON})
    (plugin / "lib.so").mkdir()  # read_dir lists directories too
    assert validate_plugin_structure(plugin) == []


def test_a_missing_directory(tmp_path: Path) -> None:
    assert validate_plugin_structure(tmp_path / "nope") == ["Missing plugin.json", NO_LIBRARY]


# --- vtreg's own findings, kept apart ---


def test_a_good_plugin_has_no_findings(plugin_factory: PluginFactory) -> None:
    report = check_plugin_structure(plugin_factory())
    assert report.ok
    assert report.vtcode == ()
    assert report.vtreg == ()


def test_vtcodes_complete_fixture_has_only_vtreg_findings(tmp_path: Path) -> None:
    report = check_plugin_structure(_dir(tmp_path, {"plugin.json": GOOD_JSON, "libtest.so": b"x"}))
    assert report.vtcode == ()
    assert report.vtreg == ("libtest.so is not a shared library for a known platform",)


def test_library_must_be_named_for_the_plugin(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    (plugin / "libbasic.so").rename(plugin / "libother.so")
    report = check_plugin_structure(plugin)
    assert report.vtcode == ()
    assert report.vtreg == (
        "No library for plugin 'basic' (expected libbasic.so or basic.so or libbasic.dylib"
        " or basic.dylib or basic.dll or libbasic.dll)",
    )


def test_special_files_are_vtreg_findings(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    os.mkfifo(plugin / "pipe")
    report = check_plugin_structure(plugin)
    assert report.vtcode == ()
    [finding] = report.vtreg
    assert "pipe is a FIFO" in finding
    (plugin / "pipe").unlink()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(plugin / "sock"))
        [finding] = check_plugin_structure(plugin).vtreg
        assert "sock is a socket" in finding
    finally:
        sock.close()


def test_a_version_without_an_order_is_a_vtreg_finding(plugin_factory: PluginFactory) -> None:
    plugin = plugin_factory()
    (plugin / "plugin.json").write_text('{"name": "basic", "description": "d", "version": "v1"}')
    report = check_plugin_structure(plugin)
    assert report.vtcode == ()
    [finding] = report.vtreg
    assert finding.startswith("plugin.json field 'version'")
