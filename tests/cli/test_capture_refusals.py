"""A refusal found while reading the directory is audited like any other refusal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok, one_line_error

PluginFactory = Callable[..., Path]


def _symlink_inside(plugin: Path) -> None:
    (plugin / "notes.txt").symlink_to("/etc/passwd")


def _oversize_signature(plugin: Path) -> None:
    (plugin / "plugin.sig").write_bytes(b" " * (1024 * 1024 + 1))


@pytest.mark.parametrize(
    ("attack", "code", "message"),
    [
        pytest.param(_symlink_inside, "unsafe-path", "is a symlink", id="symlink-inside"),
        pytest.param(_oversize_signature, "malformed", "plugin.sig", id="oversize-plugin-sig"),
    ],
)
@pytest.mark.parametrize(
    ("command", "action"), [("verify", "plugin.verify"), ("trust", "plugin.trust")]
)
def test_capture_refusals_are_audited(
    plugin_factory: PluginFactory,
    keys: Path,
    home: dict[str, str],
    attack: Callable[[Path], None],
    code: str,
    message: str,
    command: str,
    action: str,
) -> None:
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", env=home))
    attack(plugin)

    result = invoke_cli(command, plugin, env=home)

    one_line_error(result, 1, message)
    [event] = invoke_cli("audit", "--action", action, "--json", env=home).json()["events"]
    assert (event["outcome"], event["plugin"]) == ("refused", "hello")
    assert event["details"]["code"] == code
    assert event["details"]["path"] == str(plugin)
