"""The read commands (list, show, key list, db info, audit) through the real CLI on SQLite and
PostgreSQL: what they import, and how `list` pages (issue: operator workflows, 13 and 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from tests.helpers import CliResult, invoke_cli, ok, one_line_error

PluginFactory = Callable[..., Path]

# A child that runs one command and then names every heavy module it imported, on the
# file descriptor its first argument names.
_PROBE = """
import os, sys
from vtreg.registry.cli import run
code = run(sys.argv[2:])
sys.stdout.flush()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "pydantic", "alembic"))
os.write(int(sys.argv[1]), " ".join(heavy).encode())
sys.exit(code)
"""


def _cli(db: str, *args: str | Path) -> CliResult:
    return invoke_cli(*args, "--db", db)


@pytest.fixture
def registry_of_three(
    database_url: str, keys: Path, plugin_factory: PluginFactory, tmp_path: Path
) -> list[str]:
    """A registry trusting alice's key and hello 1.0.0, 1.1.0 and 2.0.0; their digests in
    list order."""
    ok(_cli(database_url, "key", "add", keys / "alice.pub"))
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        plugin = plugin_factory("hello", version, parent=tmp_path / version)
        ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
        ok(_cli(database_url, "trust", plugin))
    listed = ok(_cli(database_url, "list", "--json")).json()
    return [p["content_digest"] for p in listed["plugins"]]


def _imports(db: str, *args: str) -> tuple[int, str, list[str]]:
    """Run ``vtreg ARGS --db DB`` in a child; its exit code, stdout and heavy modules."""
    read, write = os.pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    with subprocess.Popen(
        [sys.executable, "-c", _PROBE, str(write), *args, "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(write,),
        env=env,
    ) as child:
        os.close(write)
        raw_out, raw_err = child.communicate(timeout=120)
        out, err = raw_out.decode(), raw_err.decode()  # CSV's CRLF kept as written
        with os.fdopen(read) as probe:
            heavy = probe.read().split()
    assert "Traceback" not in err, err
    return child.returncode, out, heavy


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("list", "--json"),
        ("show", "hello"),
        ("show", "hello", "--json"),
        ("key", "list"),
        ("key", "list", "--json"),
        ("db", "info"),
        ("db", "info", "--json"),
        ("audit",),
        ("audit", "--json", "--limit", "2"),
        ("audit", "--csv", "--plugin", "hel*"),
    ],
    ids=" ".join,
)
def test_read_commands_import_neither_the_orm_nor_the_models(
    database_url: str, registry_of_three: list[str], args: tuple[str, ...]
) -> None:
    code, out, heavy = _imports(database_url, *args)

    assert code == 0
    assert heavy == []
    assert out == ok(_cli(database_url, *args)).stdout  # the same answer as in-process


def test_an_old_schema_is_still_refused(database_url: str, registry_of_three: list[str]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    engine.dispose()

    for args in (("list",), ("show", "hello"), ("key", "list"), ("db", "info")):
        one_line_error(_cli(database_url, *args), 3, r"revision 0005.*run `vtreg db upgrade`")


def test_list_pages_with_limit_and_after(database_url: str, registry_of_three: list[str]) -> None:
    db, every = database_url, registry_of_three

    first = ok(_cli(db, "list", "--json", "--limit", "2")).json()
    rest = ok(_cli(db, "list", "--json", "--after", first["next"])).json()
    whole = ok(_cli(db, "list", "--json")).json()
    text = ok(_cli(db, "list", "--limit", "1"))

    assert [p["content_digest"] for p in first["plugins"]] == every[:2]
    assert (first["truncated"], first["next"]) == (True, every[1])
    assert [p["content_digest"] for p in rest["plugins"]] == every[2:]
    assert (rest["truncated"], rest["next"]) == (False, None)
    assert (whole["truncated"], len(whole["plugins"])) == (False, 3)
    assert len(text.stdout.splitlines()) == 2  # the header and one row
    assert (
        text.stderr == f"vtreg: 2 more plugins: continue with --after {every[0]}, or give --limit\n"
    )
    short = every[0][: len("sha256:") + 16]  # as the table prints it
    after_short = ok(_cli(db, "list", "--json", "--after", short)).json()
    assert [p["content_digest"] for p in after_short["plugins"]] == every[1:]


def test_after_an_unknown_content_is_a_usage_error(
    database_url: str, registry_of_three: list[str]
) -> None:
    one_line_error(
        _cli(database_url, "list", "--after", "sha256:" + "0" * 64), 2, "no such content"
    )


def test_a_listing_streams_as_one_json_document(
    database_url: str, registry_of_three: list[str]
) -> None:
    code, out, heavy = _imports(database_url, "list", "--json", "--limit", "1")

    assert (code, heavy) == (0, [])
    document = json.loads(out)
    assert list(document) == ["ok", "schema", "plugins", "truncated", "next"]


_SUBCOMMANDS = """
import sys
import click
from vtreg.registry.cli._app import cli, register_commands
register_commands(sys.argv[1:])
command = cli.commands.get(sys.argv[1])
if command is not None and len(sys.argv) > 2 and not sys.argv[2].startswith("-"):
    command = command.commands.get(sys.argv[2])
names = sorted(command.commands) if isinstance(command, click.Group) else []
print(" ".join(["found" if command else "missing", *names]))
"""


def _registered(*args: str) -> list[str]:
    child = subprocess.run(
        [sys.executable, "-c", _SUBCOMMANDS, *args], capture_output=True, text=True, check=True
    )
    return child.stdout.split()


def test_each_command_is_registered_by_its_own_modules() -> None:
    """A command line imports only the modules of the command it names (start-up): each
    command and subcommand is there all the same, and `--help` lists every subcommand."""
    from vtreg.registry.cli import cli

    for name, command in sorted(cli.commands.items()):
        if not isinstance(command, click.Group):
            assert _registered(name) == ["found"], name
            continue
        assert _registered(name, "--help")[1:] == sorted(command.commands), name
        if not command.invoke_without_command:  # alone it lists them: "needs a command: ..."
            assert _registered(name)[1:] == sorted(command.commands), name
        for sub in command.commands:
            assert _registered(name, sub)[0] == "found", (name, sub)
