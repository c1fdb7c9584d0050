"""Many plugins in one process: `vtreg verify`/`trust` of several directories, or of `-` (stdin)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import invoke_cli, ok

PluginFactory = Callable[..., Path]


def _vtreg(*args: str | Path, stdin: str) -> tuple[int, Any, str]:
    """The real CLI in a child process fed ``stdin``: exit code, its JSON document, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    proc = subprocess.run(
        [sys.executable, "-m", "vtreg", *map(str, args), "--json"],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _plugins(factory: PluginFactory, keys: Path, tmp_path: Path, count: int) -> list[Path]:
    made = []
    for i in range(count):
        plugin = factory(f"p{i}", parent=tmp_path / "many")
        ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
        made.append(plugin)
    return made


def test_verify_several_directories_offline(
    keys: Path, plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    good = _plugins(plugin_factory, keys, tmp_path, 3)
    tampered = good[1]
    (tampered / "plugin.json").write_text((tampered / "plugin.json").read_text() + " ")
    unsigned = plugin_factory("bare", parent=tmp_path / "bare")

    shown = invoke_cli("verify", *good, unsigned, "--key", keys / "alice.pub")
    as_json = invoke_cli("verify", *good, unsigned, "--key", keys / "alice.pub", "--json")

    assert shown.code == 1
    assert shown.stdout.splitlines()[-1] == "2 of 4 verified, 2 failed"
    assert f"refused  {tampered}: " in shown.stdout
    document = as_json.json()
    assert (document["ok"], document["summary"]) == (
        False,
        {"directories": 4, "verified": 2, "failed": 2},
    )
    assert [(r["directory"], r["exit_code"]) for r in document["results"]] == [
        (str(good[0]), 0), (str(tampered), 1), (str(good[2]), 0), (str(unsigned), 1)
    ]  # fmt: skip
    assert document["results"][3]["error"]["code"] == "unsigned"
    assert document["results"][0]["plugin"]["name"] == "p0"


def test_trust_and_verify_a_list_from_stdin(
    database_url: str, keys: Path, plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    plugins = _plugins(plugin_factory, keys, tmp_path, 4)
    stranger = plugin_factory("stranger", parent=tmp_path / "s")
    ok(invoke_cli("sign", stranger, "--key", keys / "bob.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", database_url))
    listing = "".join(f"{p}\n" for p in [*plugins, stranger]) + "\n"

    trusted_code, trusted, _ = _vtreg("trust", "-", "--db", database_url, stdin=listing)
    verified_code, verified, _ = _vtreg("verify", "-", "--db", database_url, stdin=listing)
    only_good = "".join(f"{p}\n" for p in plugins)
    all_code, _, _ = _vtreg("verify", "-", "--db", database_url, stdin=only_good)
    none_code, nothing, _ = _vtreg("verify", "-", "--db", database_url, stdin="")

    assert (trusted_code, trusted["summary"]) == (1, {"directories": 5, "trusted": 4, "failed": 1})
    assert trusted["results"][4]["error"]["code"] == "unknown-key"
    assert [r["plugin"]["status"] for r in trusted["results"][:4]] == ["loadable"] * 4
    assert (verified_code, verified["summary"]["verified"]) == (1, 4)
    assert all_code == 0
    assert (none_code, nothing["error"]["message"]) == (2, "no plugin directory given")
    listed = ok(invoke_cli("list", "--db", database_url, "--json")).json()["plugins"]
    assert sorted(p["name"] for p in listed) == ["p0", "p1", "p2", "p3"]
    events = ok(invoke_cli("audit", "--db", database_url, "--json")).json()["events"]
    assert sum(e["action"] == "plugin.verify" for e in events) == 9  # every decision audited


def test_trust_a_plugin_sig_alone(
    database_url: str, keys: Path, plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    db = ("--db", database_url)
    plugin = plugin_factory("hello", parent=tmp_path / "p")
    stranger = plugin_factory("stranger", parent=tmp_path / "s")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("sign", stranger, "--key", keys / "bob.key"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "hello.sig").write_bytes((plugin / "plugin.sig").read_bytes())
    (inbox / "stranger.sig").write_bytes((stranger / "plugin.sig").read_bytes())
    ok(invoke_cli("key", "add", keys / "alice.pub", *db))

    trusted = ok(invoke_cli("trust", inbox / "hello.sig", *db, "--json")).json()
    refused = invoke_cli("trust", inbox / "stranger.sig", *db, "--json")
    ok(invoke_cli("verify", plugin, *db))  # the files, checked against what the sig pinned
    (plugin / "libhello.so").write_bytes((plugin / "libhello.so").read_bytes() + b"\0")
    tampered = invoke_cli("verify", plugin, *db, "--json")

    assert (trusted["created"], trusted["plugin"]["status"]) == (True, "loadable")
    assert (refused.code, refused.json()["error"]["code"]) == (1, "unknown-key")
    assert (tampered.code, tampered.json()["error"]["code"]) == (1, "digest-mismatch")
    [event] = ok(
        invoke_cli("audit", "--action", "plugin.trust", "--outcome", "refused", *db, "--json")
    ).json()["events"]
    assert event["details"]["path"] == str(inbox / "stranger.sig")


def test_list_reads_and_judges_in_batches(
    database_url: str,
    keys: Path,
    plugin_factory: PluginFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vtreg.registry import service

    plugins = _plugins(plugin_factory, keys, tmp_path, 5)
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", database_url))
    ok(invoke_cli("trust", *plugins, "--db", database_url))
    ok(invoke_cli("revoke", "p3", "--reason", "bad build", "--db", database_url))
    monkeypatch.setattr(service, "_BATCH", 2)  # three batches for five rows

    listed = ok(invoke_cli("list", "--db", database_url, "--json")).json()

    assert [(p["name"], p["status"], len(p["signers"])) for p in listed["plugins"]] == [
        ("p0", "loadable", 1),
        ("p1", "loadable", 1),
        ("p2", "loadable", 1),
        ("p3", "content-revoked", 1),
        ("p4", "loadable", 1),
    ]


def test_sign_several_directories_with_one_key_read(
    keys: Path, plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    plugins = [plugin_factory(f"s{i}", parent=tmp_path / "many") for i in range(3)]
    missing = tmp_path / "missing"
    listing = "".join(f"{p}\n" for p in [*plugins, missing])

    code, signed, _ = _vtreg("sign", "-", "--key", keys / "alice.key", stdin=listing)
    verified = invoke_cli("verify", *plugins, "--key", keys / "alice.pub", "--json")

    assert (code, signed["summary"]) == (3, {"directories": 4, "signed": 3, "failed": 1})
    assert [r["name"] for r in signed["results"][:3]] == ["s0", "s1", "s2"]
    assert signed["results"][3]["error"]["type"] == "NotFoundError"
    assert verified.json()["summary"]["verified"] == 3
