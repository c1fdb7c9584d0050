"""Text from outside is shown inert: every character a terminal or log viewer acts on is escaped."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtreg.verifier.text import path_text, printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("\x1b[2K\rverified", "\\x1b[2K\\x0dverified", id="escape-and-carriage-return"),
        pytest.param("a\nb\tc", "a\\x0ab\\x09c", id="newline-tab"),
        pytest.param("nul\x00", "nul\\x00", id="nul"),
        pytest.param("\x7f\x9b", "\\x7f\\x9b", id="del-and-c1-csi"),
        pytest.param("\u202egnp.exe", "\\u202egnp.exe", id="bidi-override"),
        pytest.param("\u2066x\u2069", "\\u2066x\\u2069", id="bidi-isolate"),
        pytest.param("line\u2028sep", "line\\u2028sep", id="line-separator"),
        pytest.param("héllo wörld ✓ 插件", "héllo wörld ✓ 插件", id="ordinary-text-unchanged"),
    ],
)
def test_unsafe_characters_are_escaped(text: str, shown: str) -> None:
    assert printable(text) == shown


@given(st.text())
def test_nothing_a_terminal_acts_on_survives(text: str) -> None:
    shown = printable(text)
    assert not any(
        ord(c) < 0x20
        or 0x7F <= ord(c) <= 0x9F
        or c in "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
        for c in shown
    )
    if text.isprintable():  # nothing to escape: shown exactly
        assert shown == text


def test_undecodable_bytes_are_shown_as_the_bytes_they_are() -> None:
    assert printable(os.fsdecode(b"hel\xfflo")) == "hel\\xfflo"
    assert printable("\ud800") == "\\ud800"  # a lone surrogate of another kind


def _path_bytes(text: str) -> bytes:
    """The inverse of path_text: ``\\\\`` is a backslash, ``\\xNN`` a byte, the rest UTF-8."""
    out, i = bytearray(), 0
    while i < len(text):
        if text.startswith("\\\\", i):
            out += b"\\"
            i += 2
        elif text.startswith("\\x", i):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out += text[i].encode("utf-8")
            i += 1
    return bytes(out)


@given(st.binary(min_size=1).filter(lambda b: b"\0" not in b))
def test_paths_as_text_are_utf8_and_map_back_to_one_path(raw: bytes) -> None:
    text = path_text(os.fsdecode(raw))

    text.encode("utf-8")  # storable and hashable: no surrogates left
    assert _path_bytes(text) == raw
