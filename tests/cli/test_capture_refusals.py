"""A refusal found while reading the directory is audited like any other refusal."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import bytes_read, invoke_cli, ok, one_line_error

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


HUGE = 64 << 30


def _library_swapped_for_a_huge_file(plugin: Path) -> None:
    with (plugin / "libhello.so").open("r+b") as f:
        f.truncate(HUGE)  # sparse: costs no disk, and hours to read


def _garbage_signature_and_a_huge_file(plugin: Path) -> None:
    (plugin / "plugin.sig").write_bytes(b"\x00not an envelope")
    _library_swapped_for_a_huge_file(plugin)


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")
@pytest.mark.parametrize(
    ("attack", "code", "message"),
    [
        pytest.param(
            _library_swapped_for_a_huge_file,
            "digest-mismatch",
            r"libhello\.so is 68,719,476,736 bytes; [\d,]+ were signed",
            id="library-swapped",
        ),
        pytest.param(
            _garbage_signature_and_a_huge_file,
            "malformed",
            "plugin.sig is not valid JSON",
            id="garbage-sig",
        ),
    ],
)
@pytest.mark.parametrize("command", ["verify", "verify-offline", "trust"])
def test_plugin_sig_is_checked_before_the_files_are_read(
    plugin_factory: PluginFactory,
    keys: Path,
    home: dict[str, str],
    attack: Callable[[Path], None],
    code: str,
    message: str,
    command: str,
) -> None:
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", env=home))
    attack(plugin)
    offline = ("--key", keys / "alice.pub") if command == "verify-offline" else ()

    with bytes_read() as counted:
        result = invoke_cli(command.removesuffix("-offline"), plugin, *offline, "--json", env=home)

    assert result.code == 1, result.stderr
    assert result.json()["error"]["code"] == code
    assert re.search(message, result.json()["error"]["message"])
    assert counted[0] < 16 << 20, f"read {counted[0]:,} bytes to refuse"
