"""A plugin directory with several platforms' libraries loads this host's, in-process and
isolated; none for this host, a swapped one, or excluded paths change nothing else."""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import foreign_library
from tests.loader.conftest import Build, RecordingAudit, key_loader
from tests.loader.test_dependencies import MakeBundle, bundle  # noqa: F401 - a fixture
from tests.signing import sign_edited_statement
from vtreg.verifier.errors import ContentError, FormatError, PolicyError, VerificationError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.platforms import host_platform
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

ISOLATIONS = pytest.mark.parametrize("isolation", ["none", "process"])


def _sign(plugin: Path, key: SigningKey, now: datetime, exclude: tuple[str, ...] = ()) -> None:
    tree = capture(plugin, exclude=exclude)
    (plugin / "plugin.sig").write_bytes(sign(tree, key, at=now, fresh=True).envelope)


def _with_foreign(plugin: Path, key: SigningKey, now: datetime) -> Path:
    """``plugin`` with a macOS and a Windows library beside its own, signed again."""
    name = plugin.name
    (plugin / f"lib{name}.dylib").write_bytes(foreign_library("macos-arm64"))
    (plugin / f"{name}.dll").write_bytes(foreign_library("windows-x86_64"))
    _sign(plugin, key, now)
    return plugin


@ISOLATIONS
def test_this_hosts_library_is_loaded_of_several(
    build: Build,
    key: SigningKey,
    now: datetime,
    trusted: Path,
    audit_log: RecordingAudit,
    isolation: str,
) -> None:
    plugin = _with_foreign(build("multi"), key, now)
    loaded = key_loader(key, trusted, isolation, audit_log).load_plugin(plugin)
    try:
        assert loaded.execute().output is not None
        assert loaded.verified.platform == host_platform()
        assert loaded.verified.library == "libmulti.so"
        assert loaded.verified.platforms == ("linux-x86_64", "macos-arm64", "windows-x86_64")
    finally:
        loaded.close()
    assert [e.outcome for e in audit_log.events] == ["allowed"]


@ISOLATIONS
def test_a_plugin_without_a_library_for_this_host_is_refused_naming_its_platforms(
    build: Build,
    key: SigningKey,
    now: datetime,
    trusted: Path,
    audit_log: RecordingAudit,
    isolation: str,
) -> None:
    plugin = build("mac")
    (plugin / "libmac.so").unlink()
    (plugin / "libmac.dylib").write_bytes(foreign_library("macos-arm64"))
    (plugin / "mac.dll").write_bytes(foreign_library("windows-x86_64"))
    _sign(plugin, key, now)

    loader = key_loader(key, trusted, isolation, audit_log)
    with pytest.raises(
        PolicyError, match=r"its signed libraries are for macos-arm64, windows-x86_64$"
    ) as e:
        loader.load_plugin(plugin)
    assert e.value.code == "wrong-platform"
    assert [(ev.outcome, ev.details["code"]) for ev in audit_log.events] == [
        ("refused", "wrong-platform")
    ]


@ISOLATIONS
def test_the_library_swapped_for_another_platforms_signed_one_is_refused(
    build: Build,
    key: SigningKey,
    now: datetime,
    trusted: Path,
    audit_log: RecordingAudit,
    isolation: str,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "constructor-ran"
    plugin = _with_foreign(build("swap", marker=marker), key, now)
    evil = build("evil", marker=marker, parent=tmp_path)
    # The other platform's slot now holds a real ELF library for this host: a loader that
    # took any signed library, or the one its name looks for, would run it.
    shutil.copyfile(evil / "libevil.so", plugin / "swap.dll")

    loader = key_loader(key, trusted, isolation, audit_log)
    with pytest.raises(ContentError) as e:
        loader.load_plugin(plugin)
    assert e.value.code in {"digest-mismatch", "file-added"}
    assert not marker.exists()


def _misname(plugin: Path, key: SigningKey, edit: dict[str, object], dylib: bytes) -> None:
    """Sign the statement with ``edit`` in its predicate, its macOS library now ``dylib``."""
    name = f"lib{plugin.name}.dylib"

    def change(statement: dict[str, Any]) -> None:
        statement["predicate"].update(edit)
        statement["predicate"]["lengths"][name] = len(dylib)
        for subject in statement["subject"]:
            if subject["name"] == name:
                subject["digest"] = {"sha256": hashlib.sha256(dylib).hexdigest()}

    sign_edited_statement(plugin, key, change)


def test_a_signed_statement_naming_the_dylib_for_linux_is_refused(
    build: Build, key: SigningKey, now: datetime, trusted: Path, audit_log: RecordingAudit
) -> None:
    # Our signer refuses an ELF library under a macOS name; a statement signed elsewhere
    # names it, with its digest, as the linux library.
    plugin = _with_foreign(build("named"), key, now)
    elf = (plugin / "libnamed.so").read_bytes()
    (plugin / "libnamed.dylib").write_bytes(elf)
    libraries = {"linux-x86_64": "libnamed.dylib", "windows-x86_64": "named.dll"}
    _misname(plugin, key, {"library": "libnamed.dylib", "libraries": libraries}, elf)

    with pytest.raises(FormatError, match=r"linux-x86_64 expects 'libnamed\.so'") as e:
        key_loader(key, trusted, "none", audit_log).load_plugin(plugin)
    assert e.value.code == "malformed"


@ISOLATIONS
def test_excluded_paths_are_never_opened_at_load(
    build: Build,
    key: SigningKey,
    now: datetime,
    trusted: Path,
    audit_log: RecordingAudit,
    isolation: str,
) -> None:
    plugin = build("leftovers")
    (plugin / "build").mkdir()
    (plugin / "build" / "x.o").write_bytes(b"object")
    _sign(plugin, key, now, exclude=("build", "*.swp"))
    os.mkfifo(plugin / "build" / "fifo")  # would block an open for reading
    (plugin / ".notes.swp").write_bytes(b"swap")

    loaded = key_loader(key, trusted, isolation, audit_log).load_plugin(plugin)
    try:
        assert loaded.verified.exclude == ("build", "*.swp")
        assert "build/x.o" not in loaded.verified.files
    finally:
        loaded.close()
    (plugin / ".notes.swpx").write_bytes(b"resembles a pattern")
    with pytest.raises(VerificationError, match="not covered by the signature") as e:
        key_loader(key, trusted, isolation, audit_log).load_plugin(plugin)
    assert e.value.code == "file-added"


@ISOLATIONS
def test_a_bundled_dependency_left_out_by_a_hostile_statement_is_never_loaded(
    bundle: MakeBundle,  # noqa: F811 - the fixture
    key: SigningKey,
    now: datetime,
    trusted: Path,
    audit_log: RecordingAudit,
    isolation: str,
) -> None:
    # Our signer refuses to leave a library out; a statement signed elsewhere can try.
    made = bundle(value=7)

    def leave_out_the_dependency(statement: dict[str, Any]) -> None:
        statement["subject"] = [s for s in statement["subject"] if s["name"] != made.soname]
        del statement["predicate"]["lengths"][made.soname]
        statement["predicate"]["exclude"] = ["libdep*"]

    sign_edited_statement(made.plugin, key, leave_out_the_dependency)

    loader = key_loader(key, trusted, isolation, audit_log)
    with pytest.raises(PolicyError, match="neither a signed file") as e:
        loader.load_plugin(made.plugin)
    assert e.value.code == "dependency-untrusted"
