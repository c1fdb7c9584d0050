"""docs/json.md read as a contract: its shapes, and a check of a document against one.

The tests that run the commands say, in :data:`COVERAGE`, which shapes each of them
checks; ``test_operator_json`` holds their union to every command the CLI has.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tests.helpers import CliResult, invoke_cli

DOC = Path(__file__).parents[2] / "docs" / "json.md"
_BLOCK = re.compile(r"<!-- shape: ([a-z ,-]+?)(?:: [^>]*)? -->\n```json\n(.*?)```", re.DOTALL)
_ERROR_TYPES = re.compile(r"<!-- error types -->\n(.*?)\n- ", re.DOTALL)
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
# Keys the vocabulary has no place for: the time or boolean each meant has one name now.
_RETIRED = {"expires", "added", "cosigned", "already_signed", "signed_ok"}
_DIGEST_KEYS = {"content_digest", "digest", "hash", "head"}


def _shapes() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for names, body in _BLOCK.findall(DOC.read_text()):
        for name in names.split(", "):
            found[name] = json.loads(body)
    return found


SHAPES = _shapes()
ERROR_TYPES = frozenset(re.findall(r"`(\w+)`", _ERROR_TYPES.findall(DOC.read_text())[0]))

# Which shapes each test checks (all of them, together, cover every command).
COVERAGE = {
    "registry": {
        "error", "db upgrade", "key add", "key list", "key set", "trust", "list", "show",
        "verify", "run", "audit", "audit verify", "db info", "untrust", "key revoke",
        "revoke", "batch",
    },
    "publisher": {"version", "keygen", "key pub", "key passphrase", "sign", "verify", "error"},
    "tlog": {
        "audit init", "audit checkpoint", "audit prove", "audit verify-proof", "audit export",
        "audit verify", "witness serve",
    },
    "fleet": {
        "fleet init", "fleet publish", "fleet refresh", "fleet rotate-root", "fleet sync",
        "fleet status", "verify",
    },
}  # fmt: skip


def command_names(group: click.Group, prefix: str = "") -> set[str]:
    """Every command path of ``group`` (``key add``), groups that run on their own included."""
    names: set[str] = set()
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            names |= command_names(command, path)
            if not command.invoke_without_command:
                continue
        names.add(path)
    return names


def problems(value: Any, shape: Any, where: str = "$") -> list[str]:
    """How ``value`` differs from ``shape`` (see docs/json.md, "Shapes"): empty if it conforms."""
    if isinstance(shape, str) and shape.startswith("<"):
        return problems(value, SHAPES[shape.strip("<>")], where)
    if isinstance(shape, str):
        if any(_TYPES[kind](value) for kind in shape.split("|")):
            return []
        return [f"{where}: {value!r} is not {shape}"]
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [
            p for i, item in enumerate(value) for p in problems(item, shape[0], f"{where}[{i}]")
        ]
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not an object"]
    if set(shape) == {"*"}:
        return [p for k, v in value.items() for p in problems(v, shape["*"], f"{where}.{k}")]
    keys = {k.removesuffix("?"): v for k, v in shape.items()}
    required = {k for k in shape if not k.endswith("?")}
    found = [f"{where}: missing {k}" for k in sorted(required - value.keys())]
    found += [f"{where}: undocumented {k}" for k in sorted(value.keys() - keys.keys())]
    for key in keys.keys() & value.keys():
        found += problems(value[key], keys[key], f"{where}.{key}")
    return found


def vocabulary_problems(value: Any, where: str = "$") -> list[str]:
    """Where ``value`` breaks the rules every document keeps: digests ``sha256:HEX``, times
    with a ``Z`` in ``*_at`` fields, none of the retired names, and ``files`` maps of digests."""
    if isinstance(value, list):
        return [
            p for i, item in enumerate(value) for p in vocabulary_problems(item, f"{where}[{i}]")
        ]
    if not isinstance(value, dict):
        return []
    found = [f"{where}.{k}: a retired name" for k in value.keys() & _RETIRED]
    for key, item in value.items():
        if key in _DIGEST_KEYS and item is not None and not _DIGEST.fullmatch(str(item)):
            found.append(f"{where}.{key}: {item!r} is not sha256:HEX")
        if (
            (key == "at" or key.endswith("_at"))
            and item is not None
            and not _TIME.fullmatch(str(item))
        ):
            found.append(f"{where}.{key}: {item!r} is not an RFC 3339 UTC time with Z")
        if key == "files" and isinstance(item, dict):
            found += [
                f"{where}.files.{k}: {d!r}" for k, d in item.items() if not _DIGEST.fullmatch(d)
            ]
        found += vocabulary_problems(item, f"{where}.{key}")
    return found


def document_problems(document: Any, shape: str) -> list[str]:
    """Every way ``document`` breaks the contract for the command shape ``shape``."""
    whole = {**SHAPES["document"], **SHAPES[shape]}
    found = problems(document, whole) + vocabulary_problems(document)
    if not isinstance(document, dict) or not isinstance(document.get("ok"), bool):
        return found
    failed = {"error", "exit_code"} & document.keys()
    if document["ok"] == bool(failed) or len(failed) == 1:
        found.append(f"ok is {document['ok']} with {sorted(failed) or 'no'} error/exit_code")
    error = document.get("error")
    if isinstance(error, dict) and error.get("type") not in ERROR_TYPES:
        found.append(f"error.type {error.get('type')!r} is not a documented error type")
    if document.get("schema") != 1:
        found.append(f"schema is {document.get('schema')!r}")
    return found


class Checker:
    """Runs commands with --json and checks each document against its shape."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env
        self.checked: set[str] = set()

    def conforms(self, document: Any, shape: str) -> Any:
        found = document_problems(document, shape)
        assert not found, (found, document)
        self.checked.add(shape)
        return document

    def __call__(self, shape: str, *args: str | Path, code: int = 0) -> Any:
        result: CliResult = invoke_cli(*args, "--json", env=self.env)
        assert result.code == code, (result.code, result.stdout, result.stderr)
        return self.conforms(result.json(), shape)
