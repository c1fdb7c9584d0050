"""docs/json.md is the contract: every command's --json output has exactly the documented shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.json_shapes import (
    COVERAGE,
    ERROR_TYPES,
    SHAPES,
    Checker,
    command_names,
    document_problems,
    problems,
    vocabulary_problems,
)
from tests.helpers import Compiler, invoke_cli, make_plugin, ok
from vtreg.registry.cli import cli
from vtreg.verifier.errors import ERROR_TYPES as RAISED_TYPES


def test_every_command_has_a_documented_shape_that_a_test_checks() -> None:
    commands = command_names(cli) | {"version", "batch"}
    assert commands - SHAPES.keys() == set()  # a command missing a shape fails here
    assert commands - set().union(*COVERAGE.values()) == set()


def test_the_documented_error_types_are_those_vtreg_reports() -> None:
    assert frozenset(RAISED_TYPES) == ERROR_TYPES


def test_the_shape_check_can_fail() -> None:
    assert problems({"ok": True}, SHAPES["version"]) == ["$: missing schema", "$: missing version"]
    assert problems({"ok": 1, "schema": 1, "version": "x", "extra": 0}, SHAPES["version"]) == [
        "$: undocumented extra",
        "$.ok: 1 is not boolean",
    ]
    assert problems({"a": {"x": 1}}, {"a": {"*": "string"}, "b?": ["string"]}) == [
        "$.a.x: 1 is not string"
    ]
    wrong = {"ok": True, "schema": 1, "version": "1", "exit_code": 3, "expires": None}
    assert document_problems(wrong, "version") == [
        "$: undocumented expires",
        "$.expires: a retired name",
        "ok is True with ['exit_code'] error/exit_code",
    ]
    hex_digest = {"content_digest": "ab" * 32, "trusted_at": "2026-01-01 00:00:00"}
    assert vocabulary_problems({"plugin": hex_digest, "files": {"a": "ab" * 32}}) == [
        f"$.plugin.content_digest: {'ab' * 32!r} is not sha256:HEX",
        "$.plugin.trusted_at: '2026-01-01 00:00:00' is not an RFC 3339 UTC time with Z",
        f"$.files.a: {'ab' * 32!r}",
    ]


def test_registry_commands_output_their_documented_shapes(
    database_url: str, keys: Path, plugin_factory: Callable[..., Path], tmp_path: Path
) -> None:
    db = ("--db", database_url)
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    run = Checker()

    run("error", "list", *db, code=3)  # no registry yet
    run("db upgrade", "db", "upgrade", *db)
    added = run("key add", "key", "add", keys / "alice.pub", *db)
    again = run("key add", "key", "add", keys / "alice.pub", *db)
    run("key list", "key", "list", *db)
    run("key set", "key", "set", "alice", "--expires", "2y", *db)
    trusted = run("trust", "trust", plugin, *db)
    run("list", "list", *db)
    run("show", "show", "hello", *db)
    verified = run("verify", "verify", plugin, *db)
    result = run("run", "run", plugin, "--input", '{"name": "x"}', *db)
    run("audit", "audit", "--limit", "2", *db)
    run("audit verify", "audit", "verify", *db)
    run("db info", "db", "info", *db)
    batch = run("batch", "trust", plugin, tmp_path / "nowhere", *db, code=3)
    run("untrust", "untrust", "hello", "--reason", "x", "--dry-run", *db)
    short = trusted["plugin"]["content_digest"][7:23]  # 16 hex digits, no sha256:
    run("key revoke", "key", "revoke", "alice", "--reason", "x", "--dry-run", *db)
    revoked = run("revoke", "revoke", "--digest", short + "…", "--reason", "x", *db)
    refused = run("error", "untrust", "hello", "--reason", "x", *db, code=1)
    usage = run("error", "audit", "--limit", "0", *db, code=2)
    run(
        "key revoke",
        "key",
        "revoke",
        trusted["plugin"]["signers"][0][:16] + "…",
        "--reason",
        "x",
        *db,
    )

    assert run.checked == COVERAGE["registry"]
    assert (added["created"], added["changed"], again["created"], again["changed"]) == (
        True, True, False, False,
    )  # fmt: skip
    assert verified["trust"]["content_digest"] == trusted["plugin"]["content_digest"]
    assert result["result"]["success"] is True
    assert (batch["summary"]["failed"], batch["error"]["type"]) == (1, "NotFoundError")
    assert batch["error"]["message"].startswith("1 of 2 failed; ")
    assert (revoked["changed"], len(revoked["revoked"])) == (True, 1)
    assert (refused["error"]["type"], refused["error"]["code"]) == (
        "PolicyError",
        "content-revoked",
    )
    assert usage["error"]["type"] == "UsageError"  # not click's class name


def test_publisher_commands_output_their_documented_shapes(
    keys: Path, plugin_factory: Callable[..., Path], tmp_path: Path
) -> None:
    plugin = plugin_factory("hello", extra_files={".hello.c.swp": b"x", "notes~": b"y"})
    run = Checker(env={"VTREG_PASSPHRASE": "old phrase", "VTREG_NEW_PASSPHRASE": "new phrase"})

    run("version", "--version")
    run("keygen", "keygen", "carol", "--out", tmp_path)
    run("key pub", "key", "pub", tmp_path / "carol.key")
    run("key passphrase", "key", "passphrase", tmp_path / "carol.key")
    first = run("sign", "sign", plugin, "--key", keys / "alice.key")
    cosigned = run("sign", "sign", plugin, "--key", keys / "bob.key")
    fresh = run("sign", "sign", plugin, "--key", keys / "bob.key", "--fresh")
    (plugin / "plugin.json").write_text((plugin / "plugin.json").read_text() + "\n")
    changed = run("sign", "sign", plugin, "--key", keys / "alice.key")
    verified = run("verify", "verify", plugin, "--key", keys / "alice.pub")
    run("error", "verify", plugin, "--key", keys / "bob.pub", code=1)

    assert run.checked == COVERAGE["publisher"]
    outcomes = [
        (d["created"], d["changed"], d["replaced"], d["content_changed"])
        for d in (first, cosigned, fresh, changed)
    ]
    assert outcomes == [
        (True, True, False, None),  # a first plugin.sig
        (False, True, False, False),  # a co-signature
        (False, True, True, False),  # --fresh: a new statement, the same content
        (False, True, True, True),  # plugin.json changed: a new statement
    ]
    assert [w.split()[0] for w in first["warnings"]] == [".hello.c.swp", "notes~"]
    assert set(verified["plugin"]["files"]) == {
        ".hello.c.swp",
        "notes~",
        "libhello.so",
        "plugin.json",
    }


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["bogus"], id="no-such-command"),
        pytest.param(["list", "--bogus"], id="no-such-option"),
        pytest.param(["key"], id="missing-command"),
        pytest.param(["audit", "--action", "nope"], id="bad-choice"),
    ],
)
def test_a_usage_error_is_a_documented_error(args: list[str]) -> None:
    result = Checker()("error", *args, code=2)
    assert result["error"]["type"] == "UsageError"


@pytest.mark.parametrize(
    ("mode", "args"),
    [
        pytest.param(5, ["--isolate"], id="crash-isolated"),
        pytest.param(11, [], id="reports-failure"),
    ],
)
def test_a_failed_run_is_a_documented_error_naming_the_plugin(
    home: dict[str, str], keys: Path, compiler: Compiler, tmp_path: Path, mode: int, args: list[str]
) -> None:
    plugin = make_plugin(
        tmp_path / "plugins", compiler, "bad", source="variants.c", defines={"MODE": str(mode)}
    )
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", env=home))
    ok(invoke_cli("trust", plugin, env=home))
    shape = "error" if mode == 5 else "run"

    failed = Checker(home)(shape, "run", plugin, *args, code=3)

    assert failed["error"]["type"] == "PluginCallError"
    assert failed["error"]["message"].startswith("bad 1.0.0")
