"""Fixtures shared by the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A private VTREG_HOME: the default (SQLite) registry lives there."""
    return {"VTREG_HOME": str(tmp_path / "home")}


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """alice.key/.pub and bob.key/.pub (unencrypted, for speed) in tmp/keys."""
    out = tmp_path / "keys"
    out.mkdir()
    for name in ("alice", "bob"):
        ok(invoke_cli("keygen", name, "--out", out, "--unencrypted"))
    return out
