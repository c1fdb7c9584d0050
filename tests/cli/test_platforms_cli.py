"""Several platforms and --exclude through the real CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.json_shapes import document_problems
from tests.helpers import foreign_library, invoke_cli, ok, one_line_error, run_cli, write_manifest
from vtreg.registry.service import Registry

BOTH = ("linux-x86_64", "macos-arm64")


def _multi(plugin_factory: Callable[..., Path], version: str = "1.0.0", **kw: object) -> Path:
    plugin = plugin_factory("hello", version, dirname=f"hello-{version}", **kw)
    (plugin / "libhello.dylib").write_bytes(foreign_library("macos-arm64"))
    return plugin


def _mac_only(parent: Path, version: str) -> Path:
    plugin = parent / f"hello-mac-{version}"
    plugin.mkdir(parents=True)
    (plugin / "libhello.dylib").write_bytes(foreign_library("macos-arm64"))
    write_manifest(plugin, name="hello", description="mac", version=version)
    return plugin


def test_sign_names_each_platform_and_what_it_left_out(
    plugin_factory: Callable[..., Path], keys: Path
) -> None:
    plugin = _multi(plugin_factory, extra_files={"hello.o": b"obj", "build/x.bin": b"x"})
    args = ("sign", plugin, "--key", keys / "alice.key", "--exclude", "*.o")
    signed = ok(invoke_cli(*args, "--exclude", "build/", "--json")).json()

    assert document_problems(signed, "sign") == []
    assert signed["platforms"] == list(BOTH)
    assert signed["libraries"] == {"linux-x86_64": "libhello.so", "macos-arm64": "libhello.dylib"}
    assert signed["exclude"] == ["*.o", "build"]
    assert signed["excluded"] == ["build/x.bin", "hello.o"]
    assert signed["files"] == ["libhello.dylib", "libhello.so", "plugin.json"]
    assert not [w for w in signed.get("warnings", []) if "hello.o" in w]  # left out: no warning

    text = ok(invoke_cli("sign", plugin, "--key", keys / "alice.key", "--fresh", *args[4:]))
    assert "hello 1.0.0 (linux-x86_64+macos-arm64): 4 files" in text.stdout  # build/ is in
    assert "left out *.o: hello.o" in text.stdout
    verified = ok(invoke_cli("verify", plugin, "--key", keys / "alice.pub"))
    assert "loads here libhello.so" in verified.stdout
    assert "(left out: *.o)" in verified.stdout


def test_a_co_signer_keeps_the_signed_patterns(
    plugin_factory: Callable[..., Path], keys: Path
) -> None:
    plugin = _multi(plugin_factory, extra_files={"hello.o": b"obj"})
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key", "--exclude", "*.o"))
    second = ok(invoke_cli("sign", plugin, "--key", keys / "bob.key", "--json")).json()

    assert (second["signatures"], second["replaced"]) == (2, False)
    assert second["exclude"] == ["*.o"]


@pytest.mark.parametrize(
    ("pattern", "hidden"),
    [
        pytest.param("*.so", "libhello.so", id="the-library"),
        pytest.param("*.dylib", "libhello.dylib", id="another-platforms-library"),
        pytest.param("plugin.*", "plugin.json", id="plugin-json"),
        pytest.param("vendor", "vendor/libdep.so.2", id="a-dependency-in-a-directory"),
    ],
)
def test_sign_refuses_an_exclude_that_hides_a_library(
    plugin_factory: Callable[..., Path], keys: Path, pattern: str, hidden: str
) -> None:
    plugin = _multi(plugin_factory, extra_files={"vendor/libdep.so.2": b"\x7fELF"})
    args = ("sign", plugin, "--key", keys / "alice.key", "--exclude", pattern)

    one_line_error(invoke_cli(*args), 1, f"would leave out {hidden}")
    error = invoke_cli(*args, "--json").json()["error"]
    assert error["code"] == "exclude-unsafe"
    assert not (plugin / "plugin.sig").exists()


def test_sign_refuses_a_pattern_that_is_no_relative_glob(
    plugin_factory: Callable[..., Path], keys: Path
) -> None:
    plugin = _multi(plugin_factory)
    result = invoke_cli("sign", plugin, "--key", keys / "alice.key", "--exclude", "../x")
    one_line_error(result, 2, r"--exclude: '\.\./x' is not an exclude pattern")


def _trust(directory: Path, keys: Path, db: tuple[str, ...], *more: str) -> dict[str, object]:
    ok(invoke_cli("sign", directory, "--key", keys / "alice.key"))
    result = invoke_cli("trust", directory, *db, *more, "--json")
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_the_registry_shows_and_judges_platforms(
    database_url: str, keys: Path, plugin_factory: Callable[..., Path], tmp_path: Path
) -> None:
    db = ("--db", database_url)
    ok(invoke_cli("key", "add", keys / "alice.pub", *db))
    v1 = _multi(plugin_factory, "1.0.0")
    assert _trust(v1, keys, db)["ok"] is True

    listed = ok(invoke_cli("list", *db, "--json")).json()["plugins"]
    assert [p["platforms"] for p in listed] == [list(BOTH)]
    assert "linux-x86_64+macos-arm64" in ok(invoke_cli("list", *db)).stdout
    assert "platform   linux-x86_64+macos-arm64" in ok(invoke_cli("show", "hello", *db)).stdout

    # 2.0.0 for linux only: 1.0.0 is a rollback on linux, and still the newest for macOS.
    v2 = plugin_factory("hello", "2.0.0", dirname="hello-2.0.0")
    assert _trust(v2, keys, db)["ok"] is True
    refused = invoke_cli("verify", v1, *db, "--json")
    assert refused.code == 1
    assert refused.json()["error"]["code"] == "rollback"
    assert "for linux-x86_64" in refused.json()["error"]["message"]
    with Registry.open(database_url) as registry:
        floors = registry.state_for((v1 / "plugin.sig").read_bytes()).floors
    assert floors == {("hello", "linux-x86_64"): "2.0.0", ("hello", "macos-arm64"): "1.0.0"}

    # 3.0.0 for macOS only raises macOS's floor and leaves linux's.
    assert _trust(_mac_only(tmp_path, "3.0.0"), keys, db)["ok"] is True
    with Registry.open(database_url) as registry:
        floors = registry.state_for((v1 / "plugin.sig").read_bytes()).floors
    assert floors == {("hello", "linux-x86_64"): "2.0.0", ("hello", "macos-arm64"): "3.0.0"}
    ok(invoke_cli("verify", v2, *db))


def test_one_version_may_have_a_content_per_platform_but_not_two_for_one(
    database_url: str, keys: Path, plugin_factory: Callable[..., Path], tmp_path: Path
) -> None:
    db = ("--db", database_url)
    ok(invoke_cli("key", "add", keys / "alice.pub", *db))
    linux = plugin_factory("hello", "1.0.0", dirname="hello-linux")
    assert _trust(linux, keys, db)["ok"] is True
    assert _trust(_mac_only(tmp_path, "1.0.0"), keys, db)["ok"] is True  # other platform

    both = _multi(plugin_factory, "1.0.0", extra_files={"NOTES": b"other bytes"})
    refused = _trust(both, keys, db)
    assert refused["error"]["code"] == "version-conflict"  # type: ignore[index]
    assert "(linux-x86_64+macos-arm64) is already trusted" in refused["error"]["message"]  # type: ignore[index]


def test_verify_in_its_own_process_leaves_out_what_was_signed_out(
    plugin_factory: Callable[..., Path], keys: Path
) -> None:
    # `python -m vtreg verify` starts the capture before the envelope is checked, guided by
    # what plugin.sig claims: its exclusions too, or the left-out files would be refused.
    plugin = _multi(plugin_factory, extra_files={"hello.o": b"obj", "build/x.bin": b"x"})
    ok(
        invoke_cli(
            "sign", plugin, "--key", keys / "alice.key", "--exclude", "*.o", "--exclude", "build"
        )
    )
    (plugin / "late.o").write_bytes(b"built after signing")

    verified = ok(run_cli("verify", plugin, "--key", keys / "alice.pub", "--json")).json()
    assert verified["plugin"]["exclude"] == ["*.o", "build"]
    assert sorted(verified["plugin"]["files"]) == ["libhello.dylib", "libhello.so", "plugin.json"]
    (plugin / "late.c").write_bytes(b"not left out")
    refused = run_cli("verify", plugin, "--key", keys / "alice.pub", "--json")
    assert refused.code == 1
    assert refused.json()["error"]["code"] == "file-added"
