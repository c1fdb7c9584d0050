"""docs/json.md is the contract: every command's --json output has exactly the documented shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import invoke_cli, ok

DOC = Path(__file__).parents[2] / "docs" / "json.md"
_BLOCK = re.compile(r"<!-- shape: ([a-z ]+?)(?:: [^>]*)? -->\n```json\n(.*?)```", re.DOTALL)
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _shapes() -> dict[str, Any]:
    return {name: json.loads(body) for name, body in _BLOCK.findall(DOC.read_text())}


SHAPES = _shapes()


def _problems(value: Any, shape: Any, where: str = "$") -> list[str]:
    """How ``value`` differs from ``shape`` (see docs/json.md, "Shapes"): empty if it conforms."""
    if isinstance(shape, str) and shape.startswith("<"):
        return _problems(value, SHAPES[shape.strip("<>")], where)
    if isinstance(shape, str):
        kinds = shape.removesuffix("?").split("|")
        if any(k.startswith("<") for k in kinds) or any(_TYPES[k](value) for k in kinds):
            return []
        return [f"{where}: {value!r} is not {shape}"]
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [
            p for i, item in enumerate(value) for p in _problems(item, shape[0], f"{where}[{i}]")
        ]
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not an object"]
    required = {k for k, v in shape.items() if not (isinstance(v, str) and v.endswith("?"))}
    found = [f"{where}: missing {k}" for k in sorted(required - value.keys())]
    found += [f"{where}: undocumented {k}" for k in sorted(value.keys() - shape.keys())]
    for key in shape.keys() & value.keys():
        found += _problems(value[key], shape[key], f"{where}.{key}")
    return found


def _conforms(document: Any, shape: str) -> None:
    problems = _problems(document, SHAPES[shape])
    assert not problems, (problems, document)


def test_every_command_shape_is_documented() -> None:
    assert set(SHAPES) >= {
        "error", "key", "plugin", "event", "version", "key add", "key list", "key set",
        "key revoke", "trust", "revoke", "untrust", "list", "audit", "audit verify",
        "db info", "db upgrade",
    }  # fmt: skip


def test_the_shape_check_can_fail() -> None:
    assert _problems({"ok": True}, SHAPES["version"]) == ["$: missing schema", "$: missing version"]
    assert _problems({"ok": 1, "schema": 1, "version": "x", "extra": 0}, SHAPES["version"]) == [
        "$: undocumented extra",
        "$.ok: 1 is not boolean",
    ]


def test_each_command_outputs_its_documented_shape(
    database_url: str, keys: Path, plugin_factory: Callable[..., Path]
) -> None:
    db = ("--db", database_url)
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))

    def run(shape: str, *args: str | Path, code: int = 0) -> Any:
        result = invoke_cli(*args, "--json")
        assert result.code == code, result.stderr
        _conforms(result.json(), shape)
        assert result.json()["schema"] == 1
        return result.json()

    run("error", "list", *db, code=3)  # no registry yet
    run("db upgrade", "db", "upgrade", *db)
    run("version", "--version")
    run("key add", "key", "add", keys / "alice.pub", *db)
    run("key list", "key", "list", *db)
    run("key set", "key", "set", "alice", "--expires", "2y", *db)
    run("trust", "trust", plugin, *db)
    run("list", "list", *db)
    run("list", "show", "hello", *db)
    run("audit", "audit", "--limit", "2", *db)
    run("audit verify", "audit", "verify", *db)
    run("db info", "db", "info", *db)
    run("untrust", "untrust", "hello", "--reason", "x", "--dry-run", *db)
    run("key revoke", "key", "revoke", "alice", "--reason", "x", "--dry-run", *db)
    run("revoke", "revoke", "hello", "--reason", "x", *db)
    refused = run("error", "untrust", "hello", "--reason", "x", *db, code=1)
    usage = run("error", "audit", "--limit", "0", *db, code=2)
    run("key revoke", "key", "revoke", "alice", "--reason", "x", *db)

    assert (refused["error"]["type"], refused["error"]["code"]) == (
        "PolicyError",
        "content-revoked",
    )
    assert usage["error"]["type"] == "UsageError"  # not click's class name


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
    result = invoke_cli(*args, "--json")
    assert result.code == 2
    _conforms(result.json(), "error")
    assert result.json()["error"]["type"] == "UsageError"
