"""``vtreg sign --exclude``: signed patterns, paths left out unopened, nothing else let in."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import error_without_blocking
from tests.signing import sign_edited_statement
from vtreg.verifier.errors import ContentError, FormatError
from vtreg.verifier.exclude import check_exclude_pattern, is_excluded
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signatures import verify_directory
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

PATTERNS = ("*.o", "build", "src/*.c")


@pytest.fixture
def plugin(plugin_factory: Callable[..., Path]) -> Path:
    return plugin_factory(
        "hello",
        extra_files={
            "hello.o": b"object",
            "build/cache/x.bin": b"cache",
            "src/hello.c": b"int x;",
            "README.md": b"docs",
        },
    )


def _sign(plugin: Path, key: SigningKey, now: datetime, patterns: tuple[str, ...]) -> None:
    tree = capture(plugin, exclude=patterns)
    (plugin / "plugin.sig").write_bytes(sign(tree, key, at=now).envelope)


def _predicate(plugin: Path) -> dict[str, object]:
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    predicate: dict[str, object] = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    return predicate


@pytest.mark.parametrize(
    ("path", "left_out"),
    [
        pytest.param("hello.o", True, id="top-level"),
        pytest.param("deep/er/x.o", True, id="star-crosses-slash"),
        pytest.param("build/cache/x.bin", True, id="below-a-directory"),
        pytest.param("hello.O", False, id="case-differs"),
        pytest.param("hello.o.so", False, id="suffix-after"),
        pytest.param("buildx/y", False, id="prefix-of-a-name"),
        pytest.param("src/sub/a.c", True, id="star-crosses-slash-in-dir"),
    ],
)
def test_how_patterns_match(path: str, left_out: bool) -> None:
    assert is_excluded(path, PATTERNS) is left_out


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("", id="empty"),
        pytest.param("/etc", id="absolute"),
        pytest.param("../x", id="parent"),
        pytest.param("a//b", id="empty-component"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("a\x1bb", id="control"),
    ],
)
def test_a_pattern_that_is_not_a_relative_glob_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="is not an exclude pattern"):
        check_exclude_pattern(pattern)


def test_excluded_paths_are_signed_as_patterns_and_left_out(
    plugin: Path, key: SigningKey, now: datetime
) -> None:
    _sign(plugin, key, now, PATTERNS)

    assert _predicate(plugin)["exclude"] == list(PATTERNS)
    verified = verify_directory(str(plugin), [key.public_key], at=now)
    assert sorted(verified.files) == ["README.md", "libhello.so", "plugin.json"]
    assert verified.exclude == PATTERNS
    # Left-out files may change, come and go: they are not part of the content.
    (plugin / "hello.o").write_bytes(b"rebuilt")
    (plugin / "other.o").write_bytes(b"new")
    (plugin / "build" / "more").mkdir()
    assert verify_directory(str(plugin), [key.public_key], at=now).content_digest == (
        verified.content_digest
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("hello.O", id="case-differs"),
        pytest.param("hello.o.so", id="library-named-after-pattern"),
        pytest.param("buildx", id="prefix-of-excluded-dir"),
        pytest.param("src.c", id="near-a-pattern"),
    ],
)
def test_an_unsigned_file_that_only_resembles_a_pattern_is_refused(
    plugin: Path, key: SigningKey, now: datetime, name: str
) -> None:
    _sign(plugin, key, now, PATTERNS)
    (plugin / name).write_bytes(b"\x7fELF payload")

    with pytest.raises(
        ContentError, match=f"{re.escape(name)} not covered by the signature"
    ) as refused:
        verify_directory(str(plugin), [key.public_key], at=now)
    assert refused.value.code == "file-added"


def test_an_excluded_fifo_is_never_opened(plugin: Path, key: SigningKey, now: datetime) -> None:
    _sign(plugin, key, now, PATTERNS)
    os.mkfifo(plugin / "build" / "pipe")
    os.mkfifo(plugin / "stuck.o")  # opening either for reading would block

    error = error_without_blocking(lambda: verify_directory(str(plugin), [key.public_key], at=now))
    assert error is None


@pytest.mark.parametrize(
    ("patterns", "hidden"),
    [
        pytest.param(("*.so",), "libhello.so", id="the-library"),
        pytest.param(("lib*",), "libhello.so", id="the-library-by-prefix"),
        pytest.param(("*.dylib",), "libhello.dylib", id="another-platforms-library-absent"),
        pytest.param(("*.json",), "plugin.json", id="plugin-json"),
        pytest.param(("deps",), "deps/libdep.so.1", id="a-bundled-dependency"),
    ],
)
def test_exclude_that_would_hide_a_library_or_plugin_json_is_refused(
    plugin: Path, key: SigningKey, now: datetime, patterns: tuple[str, ...], hidden: str
) -> None:
    (plugin / "deps").mkdir()
    (plugin / "deps" / "libdep.so.1").write_bytes(b"\x7fELF")
    tree = capture(plugin, exclude=patterns)

    with pytest.raises(FormatError, match=f"leave out {re.escape(hidden)}") as refused:
        sign(tree, key, at=now)
    assert refused.value.code == "exclude-unsafe"


def test_a_signed_pattern_matching_a_signed_file_is_refused(
    plugin: Path, key: SigningKey, now: datetime
) -> None:
    # A foreign signer's statement whose exclusions cover one of its own subjects:
    # a verifier would not know whether the file is signed or may be anything.
    _sign(plugin, key, now, ())
    sign_edited_statement(plugin, key, lambda s: s["predicate"].update(exclude=["README*"]))

    with pytest.raises(FormatError, match=r"exclude matches the signed file 'README\.md'") as e:
        verify_directory(str(plugin), [key.public_key], at=now)
    assert e.value.code == "malformed"
