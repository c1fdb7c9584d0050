"""The early capture that `vtreg verify DIR` starts before importing the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from vtreg.registry.cli import _prefetch


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["verify", "{d}", "--key", "k.pub"], "{d}", id="plain"),
        pytest.param(
            ["--json", "verify", "--key", "{d}", "{d}"], "{d}", id="value-options-skipped"
        ),
        pytest.param(["verify", "--threshold", "2", "--", "{d}"], "{d}", id="after-double-dash"),
        pytest.param(["sign", "{d}", "--key", "k"], None, id="other-command"),
        pytest.param(["verify", "{d}/missing"], None, id="not-a-directory"),
        pytest.param([], None, id="no-arguments"),
    ],
)
def test_prefetch_guesses_the_directory(
    tmp_path: Path, args: list[str], expected: str | None
) -> None:
    filled = [a.format(d=tmp_path) for a in args]
    pending = _prefetch(filled)
    try:
        if expected is None:
            assert pending is None
        else:
            assert pending is not None
            assert pending.root == expected.format(d=tmp_path)
    finally:
        if pending is not None:
            pending.cancel()
