"""Several platforms' libraries in one plugin directory: signed, named, checked, judged per platform."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import foreign_library
from tests.signing import sign_edited_statement
from vtreg.verifier.decision import decide
from vtreg.verifier.errors import ContentError, FormatError, PolicyError, VerificationError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signatures import verify, verify_directory
from vtreg.verifier.signing import sign
from vtreg.verifier.structure import check_plugin_structure
from vtreg.verifier.tree import capture
from vtreg.verifier.trust import TrustedContent, TrustState

HOST = "linux-x86_64"


@pytest.fixture
def multi(plugin_factory: Callable[..., Path]) -> Path:
    """A real linux library beside a macOS and a Windows one (files, never loaded)."""
    plugin = plugin_factory("hello")
    (plugin / "libhello.dylib").write_bytes(foreign_library("macos-arm64"))
    (plugin / "hello.dll").write_bytes(foreign_library("windows-x86_64"))
    return plugin


def _predicate(plugin: Path) -> dict[str, Any]:
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    predicate: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    return predicate


def _sign(plugin: Path, key: SigningKey, now: datetime) -> None:
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)


def test_every_platforms_library_is_signed_and_named(
    multi: Path, key: SigningKey, now: datetime
) -> None:
    _sign(multi, key, now)

    predicate = _predicate(multi)
    assert predicate["libraries"] == {
        "linux-x86_64": "libhello.so",
        "macos-arm64": "libhello.dylib",
        "windows-x86_64": "hello.dll",
    }
    # The statement's own pair is the first platform's, for readers of one library.
    assert (predicate["platform"], predicate["library"]) == ("linux-x86_64", "libhello.so")
    verified = verify_directory(str(multi), [key.public_key], at=now)
    assert verified.platforms == ("linux-x86_64", "macos-arm64", "windows-x86_64")
    assert {"libhello.so", "libhello.dylib", "hello.dll"} <= set(verified.files)
    assert verified.summary()["libraries"] == predicate["libraries"]


def test_one_platform_is_signed_as_before(
    plugin_factory: Callable[..., Path], key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory("hello")
    _sign(plugin, key, now)

    predicate = _predicate(plugin)
    assert "libraries" not in predicate
    assert "exclude" not in predicate
    assert verify_directory(str(plugin), [key.public_key], at=now).platforms == (HOST,)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda p: p["libraries"].update({"linux-x86_64": "libhello.dylib"}),
            "platform/library must be one of libraries",
            id="linux-slot-names-the-dylib",
        ),
        pytest.param(
            lambda p: (
                p.update(library="libhello.dylib")
                or p["libraries"].update({"linux-x86_64": "libhello.dylib"})
            ),
            "names one file for two platforms",
            id="one-file-two-platforms",
        ),
        pytest.param(
            lambda p: p.update(libraries={"linux-x86_64": "libhello.so"}),
            "libraries names several platforms",
            id="libraries-of-one",
        ),
        pytest.param(
            lambda p: (
                p["libraries"].update({"macos-arm64": "hello.dll"})
                or p["libraries"].update({"windows-x86_64": "libhello.dylib"})
            ),
            r"signed library is 'hello.dll'; macos-arm64 expects",
            id="platforms-swapped",
        ),
    ],
)
def test_a_signed_statement_that_misnames_a_platforms_library_is_refused(
    multi: Path,
    key: SigningKey,
    now: datetime,
    edit: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    _sign(multi, key, now)
    sign_edited_statement(multi, key, lambda statement: edit(statement["predicate"]))

    with pytest.raises(FormatError, match=message) as refused:
        verify(capture(multi), [key.public_key], at=now)
    assert refused.value.code == "malformed"


def test_the_linux_library_swapped_for_the_signed_dylib_is_refused(
    multi: Path, key: SigningKey, now: datetime
) -> None:
    _sign(multi, key, now)
    # The attacker puts another platform's signed library where this host's is looked for.
    (multi / "libhello.so").write_bytes((multi / "libhello.dylib").read_bytes())

    with pytest.raises(ContentError) as refused:
        verify_directory(str(multi), [key.public_key], at=now)
    assert refused.value.code in {"digest-mismatch", "malformed"}


def _content(version: str, digest: str, platforms: tuple[str, ...]) -> TrustedContent:
    return TrustedContent("hello", version, platforms, "sha256:" + digest * 64)


def test_rollback_floors_are_per_platform(multi: Path, key: SigningKey, now: datetime) -> None:
    _sign(multi, key, now)
    tree = capture(multi)
    verified = verify(tree, [key.public_key], at=now)
    this = replace(
        _content("1.0.0", "0", verified.platforms), content_digest=verified.content_digest
    )
    # 2.0.0 covers linux only: it raises linux's floor and leaves macOS's and Windows's.
    linux_only = _content("2.0.0", "1", ("linux-x86_64",))
    state = TrustState.build([key.public_key], [this, linux_only], names=["hello"])

    assert state.floors == {
        ("hello", "linux-x86_64"): "2.0.0",
        ("hello", "macos-arm64"): "1.0.0",
        ("hello", "windows-x86_64"): "1.0.0",
    }
    assert decide(tree, state, at=now, platform="macos-arm64").version == "1.0.0"
    for platform in ("linux-x86_64", None):  # None: judged for every platform it covers
        with pytest.raises(PolicyError, match="for linux-x86_64") as refused:
            decide(tree, state, at=now, platform=platform)
        assert refused.value.code == "rollback"
    pinned = replace(this, pinned=True)
    allowed = TrustState.build([key.public_key], [pinned, linux_only], names=["hello"])
    assert decide(tree, allowed, at=now, platform="linux-x86_64").version == "1.0.0"


def test_a_newer_version_for_macos_only_leaves_linux_loading(
    multi: Path, key: SigningKey, now: datetime
) -> None:
    _sign(multi, key, now)
    tree = capture(multi)
    verified = verify(tree, [key.public_key], at=now)
    this = replace(
        _content("1.0.0", "0", verified.platforms), content_digest=verified.content_digest
    )
    macos_only = _content("3.0.0", "2", ("macos-arm64",))
    state = TrustState.build([key.public_key], [this, macos_only], names=["hello"])

    assert decide(tree, state, at=now, platform=HOST).version == "1.0.0"
    with pytest.raises(VerificationError, match="rollback"):
        decide(tree, state, at=now, platform="macos-arm64")


def test_two_libraries_of_one_platform_are_reported(
    plugin_factory: Callable[..., Path],
) -> None:
    plugin = plugin_factory("hello")
    (plugin / "hello.so").write_bytes((plugin / "libhello.so").read_bytes())

    report = check_plugin_structure(plugin)
    assert report.vtreg == (
        "libhello.so and hello.so are both linux libraries of hello: VT Code and vtreg load "
        "libhello.so (hello.so is signed as an ordinary file)",
    )
    assert report.vtcode == ()
