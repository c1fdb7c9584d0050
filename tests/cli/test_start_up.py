"""`vtreg verify DIR` and `vtreg run DIR` through the real CLI on a SQLite registry: they
decide and append to the audit log through the driver alone, without importing SQLAlchemy
(issue: operator workflows, 13). Anything but the common case still goes through the
registry's engine and says what it always said."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import c_string, invoke_cli, ok, one_line_error

PluginFactory = Callable[..., Path]

# A child that runs one command and then names every SQLAlchemy, Alembic or cryptography
# module it imported (an ed25519 check needs only libsodium), on the file descriptor its
# first argument names.
_PROBE = """
import os, sys
from vtreg.registry.cli import run
code = run(sys.argv[2:])
sys.stdout.flush()
heavy = sorted(
    m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic", "cryptography")
)
os.write(int(sys.argv[1]), " ".join(heavy).encode())
sys.exit(code)
"""

_INPUT = '{"name": "Ada"}'


def _imports(*args: str | Path) -> tuple[int, str, list[str]]:
    """Run ``vtreg ARGS`` in a child; its exit code, stderr and the heavy modules it imported."""
    read, write = os.pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    with subprocess.Popen(
        [sys.executable, "-c", _PROBE, str(write), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(write,),
        env=env,
    ) as child:
        os.close(write)
        _, raw_err = child.communicate(timeout=120)
        with os.fdopen(read) as probe:
            heavy = probe.read().split()
    err = raw_err.decode()
    assert "Traceback" not in err, err
    return child.returncode, err, heavy


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def trusted(db: str, keys: Path, plugin_factory: PluginFactory) -> Path:
    """A plugin signed by alice, whose key and content the registry at ``db`` trusts."""
    plugin = plugin_factory()
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", db))
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("trust", plugin, "--db", db))
    return plugin


def _last_events(db: str, count: int) -> list[tuple[str, str]]:
    events = ok(invoke_cli("audit", "--json", "--limit", str(count), "--db", db)).json()["events"]
    return [(e["action"], e["outcome"]) for e in events]


@pytest.mark.parametrize(
    ("args", "action"),
    [
        (("verify",), "plugin.verify"),
        (("verify", "--json"), "plugin.verify"),
        (("run", "--input", _INPUT), "plugin.load"),
        (("run", "--input", _INPUT, "--isolate"), "plugin.load"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_verify_and_run_decide_and_audit_without_sqlalchemy_or_cryptography(
    db: str, trusted: Path, args: tuple[str, ...], action: str
) -> None:
    code, err, heavy = _imports(args[0], trusted, *args[1:], "--db", db)

    assert code == 0, err
    assert heavy == []
    assert _last_events(db, 1) == [(action, "allowed")]
    ok(invoke_cli("audit", "verify", "--db", db))  # the chain (and its tiles) still hold


def test_their_refusals_are_audited_without_sqlalchemy(
    db: str, trusted: Path, keys: Path, plugin_factory: PluginFactory
) -> None:
    stranger = plugin_factory("basic", "2.0.0", parent=trusted.parent / "stranger")
    ok(invoke_cli("sign", stranger, "--key", keys / "bob.key"))

    for command in ("verify", "run"):
        code, err, heavy = _imports(command, stranger, "--db", db)
        assert (code, heavy) == (1, [])
        assert "refused" in err

    assert _last_events(db, 2) == [("plugin.load", "refused"), ("plugin.verify", "refused")]
    ok(invoke_cli("audit", "verify", "--db", db))


def test_an_old_schema_is_refused_as_before(db: str, trusted: Path) -> None:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0005'")
    connection.close()

    for args in (("verify", trusted), ("run", trusted), ("trust", trusted)):
        one_line_error(invoke_cli(*args, "--db", db), 3, r"revision 0005.*run `vtreg db upgrade`")


def test_no_registry_is_created_by_verify_or_run(tmp_path: Path, trusted: Path) -> None:
    missing = tmp_path / "typo.db"

    for command in ("verify", "run"):
        one_line_error(
            invoke_cli(command, trusted, "--db", f"sqlite:///{missing}"), 3, "no registry at"
        )
    assert not missing.exists()


def test_a_file_that_is_not_a_registry_is_refused_as_before(tmp_path: Path, trusted: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all")
    garbage.chmod(0o600)

    for command in ("verify", "run", "trust"):
        one_line_error(
            invoke_cli(command, trusted, "--db", f"sqlite:///{garbage}"),
            3,
            "is not a vtreg registry: file is not a database",
        )


def test_what_a_plugin_prints_through_c_stdio_is_not_lost(
    db: str, keys: Path, plugin_factory: PluginFactory
) -> None:
    # The process ends without the interpreter's teardown: C stdio must still be flushed.
    plugin = plugin_factory(defines={"PRINTS": c_string("printed by the plugin\n")})
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", db))
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("trust", plugin, "--db", db))

    # Buffered as a host's stdio would be (PYTHONUNBUFFERED would make C's stdout unbuffered).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [sys.executable, "-m", "vtreg", "run", plugin, "--input", _INPUT, "--db", db],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("}\nprinted by the plugin\n")  # flushed at the exit
