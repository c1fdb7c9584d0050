"""VT Code's five default trusted directories (plugin_loader_for_workspace), and ``~``."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from tests.loader.conftest import Build
from vtreg.loader import KeyPolicy, PluginLoader, UsageError
from vtreg.loader.defaults import expand_home, vtcode_trusted_dirs
from vtreg.verifier.keys import SigningKey


def test_the_five_directories_in_vtcodes_order() -> None:
    assert vtcode_trusted_dirs("/w", {"HOME": "/h"}) == [
        Path("/h/.codex/plugins"),
        Path("/h/.local/share/vtcode/plugins"),
        Path("/h/.vtcode/plugins"),
        Path("/w/.vtcode/plugins"),
        Path("/w/.agents/plugins"),
    ]


def test_the_environment_moves_them_as_it_moves_vtcodes() -> None:
    env = {"HOME": "/h", "CODEX_HOME": "/c", "XDG_DATA_HOME": "/x", "VTCODE_HOME": "/v"}
    assert vtcode_trusted_dirs("/w", env)[:3] == [
        Path("/c/plugins"), Path("/x/vtcode/plugins"), Path("/v/plugins"),
    ]  # fmt: skip
    assert vtcode_trusted_dirs("/w", {**env, "VTCODE_DATA": "/d"})[1] == Path("/d/plugins")


def test_empty_or_relative_settings_are_ignored_as_vtcode_ignores_them() -> None:
    env = {"HOME": "/h", "CODEX_HOME": "", "XDG_DATA_HOME": "rel", "VTCODE_HOME": "rel",
           "VTCODE_DATA": ""}  # fmt: skip
    assert vtcode_trusted_dirs("/w", env)[:3] == [
        Path("/h/.codex/plugins"), Path("/h/.local/share/vtcode/plugins"),
        Path("/h/.vtcode/plugins"),
    ]  # fmt: skip
    account_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert vtcode_trusted_dirs("/w", {"HOME": "relative"})[0] == account_home / ".codex/plugins"


def test_tilde_means_the_same_home_everywhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert expand_home("~/plugins") == tmp_path / "plugins"
    assert expand_home("~") == tmp_path
    loader = PluginLoader(KeyPolicy([]), None, ["~/plugins"], workspace="~/project")
    assert loader.trusted_dirs == (
        tmp_path.resolve() / "plugins",
        *(Path(os.path.realpath(d)) for d in vtcode_trusted_dirs(tmp_path / "project")),
    )


def test_a_plugin_in_the_workspace_agents_directory_is_discovered(
    build: Build, tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no personal plugins here
    workspace = tmp_path / "project"
    plugins = workspace / ".agents" / "plugins"
    plugins.mkdir(parents=True)
    for directory in (workspace, workspace / ".agents", plugins):
        directory.chmod(0o755)
    build("inworkspace", parent=plugins)
    loader = PluginLoader(KeyPolicy([key.public_key]), None, workspace=workspace)
    found = loader.discover_plugins()
    assert [p.verified.name for p in found.plugins] == ["inworkspace"]
    assert found.skipped == ()
    loader.close()


def test_a_workspace_that_is_not_a_path_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="workspace must be a directory path"):
        PluginLoader(KeyPolicy([]), None, workspace=42)  # type: ignore[arg-type]
