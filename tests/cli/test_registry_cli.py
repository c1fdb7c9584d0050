"""The registry through the CLI: the operator's flows, exit codes and bad input."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok, one_line_error

PluginFactory = Callable[..., Path]


def test_default_registry_lives_in_vtreg_home(
    home: dict[str, str], keys: Path, plugin_factory: PluginFactory
) -> None:
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))

    ok(invoke_cli("key", "add", keys / "alice.pub", env=home))
    ok(invoke_cli("trust", plugin, env=home))
    verified = ok(invoke_cli("verify", plugin, env=home))

    assert (Path(home["VTREG_HOME"]) / "registry.db").is_file()
    assert oct(Path(home["VTREG_HOME"]).stat().st_mode & 0o777) == "0o700"
    assert "trusted    since" in verified.stdout


def test_compromised_key_investigation(
    home: dict[str, str], keys: Path, plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    """The README's question: key K is compromised; what did it sign, and what happened since?"""
    a = plugin_factory("alpha", parent=tmp_path / "a")
    b = plugin_factory("beta", parent=tmp_path / "b")
    ok(invoke_cli("sign", a, "--key", keys / "alice.key"))
    ok(invoke_cli("sign", b, "--key", keys / "alice.key"))
    ok(invoke_cli("sign", b, "--key", keys / "bob.key"))
    for pub in ("alice.pub", "bob.pub"):
        ok(invoke_cli("key", "add", keys / pub, env=home))
    ok(invoke_cli("trust", a, env=home))
    ok(invoke_cli("trust", b, env=home))
    ok(invoke_cli("verify", a, env=home))
    alice = ok(invoke_cli("key", "list", "--json", env=home)).json()["keys"][0]["keyid"]

    revoked = ok(invoke_cli("key", "revoke", alice[:12], "--reason", "laptop stolen", env=home))
    signed = ok(invoke_cli("list", "--signed-by", alice[:12], "--json", env=home)).json()
    one_line_error(invoke_cli("verify", a, env=home), 1, r"key revoked \(laptop stolen\)")
    ok(invoke_cli("verify", b, env=home))  # bob's signature still stands
    history = ok(invoke_cli("audit", "--key", alice[:12], "--json", env=home)).json()["events"]

    assert re.search(
        r"trusted plugins it signed: alpha@1.0.0 \(sha256:[0-9a-f]{16}\), beta@1.0.0 "
        r"\(sha256:[0-9a-f]{16}\)\nstopped loading \(too few other signers\): alpha@1.0.0 ",
        revoked.stdout,
    ), revoked.stdout
    assert [p["name"] for p in signed["plugins"]] == ["alpha", "beta"]
    assert [(e["action"], e["outcome"], e["plugin"]) for e in history] == [
        ("plugin.verify", "allowed", "beta"),
        ("plugin.verify", "refused", "alpha"),
        ("key.revoke", "ok", None),
        ("plugin.verify", "allowed", "alpha"),
        ("plugin.trust", "ok", "beta"),
        ("plugin.trust", "ok", "alpha"),
        ("key.add", "ok", None),
    ]


def test_registry_threats_exit_1_with_an_audit_event(
    home: dict[str, str], keys: Path, plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    old = plugin_factory("tool", "1.0.0", parent=tmp_path / "old")
    new = plugin_factory("tool", "2.0.0", parent=tmp_path / "new")
    stranger = plugin_factory("tool", "3.0.0", parent=tmp_path / "stranger")
    for plugin in (old, new):
        ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("sign", stranger, "--key", keys / "bob.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", "--scope", "tool", env=home))
    ok(invoke_cli("trust", old, env=home))
    ok(invoke_cli("trust", new, env=home))

    one_line_error(
        invoke_cli("verify", old, env=home), 1, "rollback: tool 1.0.0 is older than the trusted"
    )
    one_line_error(invoke_cli("verify", stranger, env=home), 1, "not signed by a trusted key")
    one_line_error(invoke_cli("trust", stranger, env=home), 1, "not signed by a trusted key")
    for malformed in ("@2.0.0", "tool@", "tool@2.0.0@x"):  # never "every plugin at 2.0.0"
        one_line_error(
            invoke_cli("revoke", malformed, "--reason", "x", env=home),
            2,
            "is not NAME or NAME@VERSION",
        )
    ok(invoke_cli("verify", new, env=home))
    ok(invoke_cli("revoke", "tool@2.0.0", "--reason", "bad build", env=home))
    one_line_error(invoke_cli("verify", new, env=home), 1, r"was revoked at .*\(bad build\)")

    events = ok(invoke_cli("audit", "--outcome", "refused", "--json", env=home)).json()["events"]
    assert [e["action"] for e in events] == [
        "plugin.verify", "plugin.trust", "plugin.verify", "plugin.verify"
    ]  # fmt: skip
    assert all(e["reason"] for e in events)


def test_show_list_and_json(
    home: dict[str, str], keys: Path, plugin_factory: PluginFactory
) -> None:
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", "--name", "alice-release", env=home))
    trusted = ok(invoke_cli("trust", plugin, "--json", env=home)).json()

    shown = ok(invoke_cli("show", "hello", env=home))
    listed = ok(invoke_cli("list", "--json", env=home)).json()

    assert trusted["created"] is True
    assert "(alice-release)" in shown.stdout
    assert listed["plugins"][0]["content_digest"] == trusted["plugin"]["content_digest"]
    one_line_error(invoke_cli("show", "ghost", env=home), 3, "no plugin named ghost")


# --- bad input: one line, the right exit code, nothing half-written ---


def test_corrupt_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    garbage = os.urandom(8192)
    db.write_bytes(garbage)

    one_line_error(invoke_cli("list", "--db", f"sqlite:///{db}"), 3, "file is not a database")
    assert db.read_bytes() == garbage


def test_unreachable_postgresql() -> None:
    one_line_error(
        invoke_cli("list", "--db", "postgresql://vtreg:secret@127.0.0.1:1/nowhere"),
        3,
        r"registry postgresql\+psycopg://vtreg:\*\*\*@127.0.0.1:1/nowhere: .*",
    )


def test_bad_database_url() -> None:
    one_line_error(invoke_cli("list", "--db", "not a url"), 2, "invalid database URL")


def test_read_only_database_file(tmp_path: Path, keys: Path, plugin_factory: PluginFactory) -> None:
    db = tmp_path / "registry.db"
    url = f"sqlite:///{db}"
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", url))
    before = db.read_bytes()
    # The file is read-only to this process: an operator's copy, or a root-owned registry.
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"

    listed = ok(invoke_cli("key", "list", "--db", read_only))
    one_line_error(invoke_cli("trust", plugin, "--db", read_only), 3, "readonly database")

    assert "alice" in listed.stdout
    assert db.read_bytes() == before
    assert ok(invoke_cli("list", "--db", url, "--json")).json()["plugins"] == []


@pytest.mark.parametrize(
    ("args", "code", "pattern"),
    [
        pytest.param(["key", "revoke", "deadbeefdeadbeef", "--reason", "x"], 3, "no key deadbeefdeadbeef", id="unknown-keyid"),
        pytest.param(["key", "revoke", "xyz", "--reason", "x"], 2, "is not a key id", id="not-a-keyid"),
        pytest.param(["key", "revoke", "nosuchname", "--reason", "x"], 3, "no key nosuchname", id="unknown-key-name"),
        pytest.param(["key", "add", "/nonexistent.pub"], 3, "does not exist", id="missing-pubfile"),
        pytest.param(["revoke", "ghost", "--reason", "x"], 3, "nothing trusted matches ghost", id="revoke-nothing"),
        pytest.param(["revoke", "--reason", "x"], 2, "exactly one", id="revoke-no-target"),
        pytest.param(["audit", "--since", "last tuesday"], 2, "is neither a date/time", id="malformed-since"),
        pytest.param(["key", "add", "/dev/null", "--expires", "yesterday"], 2, "nor a duration like 90d", id="bad-expiry"),
    ],
)  # fmt: skip
def test_bad_operator_input(home: dict[str, str], args: list[str], code: int, pattern: str) -> None:
    ok(invoke_cli("db", "upgrade", env=home))
    one_line_error(invoke_cli(*args, env=home), code, pattern)


def test_failed_commands_write_nothing(home: dict[str, str], keys: Path) -> None:
    ok(invoke_cli("key", "add", keys / "alice.pub", env=home))
    before = ok(invoke_cli("audit", "--json", env=home)).json()["events"]
    one_line_error(
        invoke_cli("key", "revoke", "deadbeefdead", "--reason", "x", env=home), 3, "no key"
    )
    one_line_error(
        invoke_cli("key", "add", keys / "alice.pub", "--scope", "tool", env=home),
        2,
        "already trusted as alice, may sign any plugin, expires never; adding it again does "
        r"not change them \(`vtreg key set` does\)",
    )
    again = ok(invoke_cli("key", "add", keys / "alice.pub", "--expires", "90d", env=home))
    assert again.stdout.startswith("already trusted: key")
    assert "keeps its expiry (never): adding it again does not change it" in again.stderr
    one_line_error(
        invoke_cli("key", "add", keys / "bob.pub", "--expires", "2001-01-01", env=home),
        2,
        "not in the future",
    )
    assert ok(invoke_cli("audit", "--json", env=home)).json()["events"] == before
    assert ok(invoke_cli("audit", "verify", env=home)).stdout.startswith(
        "audit log intact: 1 events"
    )


def test_copy_of_registry_is_independent(home: dict[str, str], keys: Path, tmp_path: Path) -> None:
    ok(invoke_cli("key", "add", keys / "alice.pub", env=home))
    copy = tmp_path / "copy.db"
    shutil.copy(Path(home["VTREG_HOME"]) / "registry.db", copy)
    with sqlite3.connect(copy) as connection:
        assert connection.execute("SELECT count(*) FROM keys").fetchone() == (1,)


# --- secrets in database URLs never reach a message ---


@pytest.mark.parametrize(
    ("url", "code"),
    [
        pytest.param("postgresql://vtreg@127.0.0.1:1/nowhere?password=hunter2", 3, id="password-in-query"),
        pytest.param("postgresql://vtreg@127.0.0.1:1/nowhere?sslpassword=hunter2&passfile=/hunter2", 3, id="sslpassword-and-passfile"),
        pytest.param("postgresql://vtreg:hunter2@127.0.0.1:1/nowhere?Password=hunter2", 3, id="both-places"),
        pytest.param("postgresql:///?dbname=host%3D127.0.0.1+port%3D1+password%3Dhunter2", 3, id="connection-string-as-dbname"),
        pytest.param("host=127.0.0.1 port=1 password=hunter2", 2, id="connection-string-as-url"),
        pytest.param("postgresql://vtreg@127.0.0.1:nope/x?password=hunter2", 2, id="bad-port"),
    ],
)  # fmt: skip
def test_secrets_in_a_database_url_never_appear(url: str, code: int) -> None:
    for command in (["list"], ["db", "upgrade"], ["audit", "verify"]):
        shown = invoke_cli(*command, "--db", url)
        as_json = invoke_cli(*command, "--db", url, "--json")

        one_line_error(shown, code, r"database URL|registry postgresql\+psycopg://")
        assert as_json.json()["exit_code"] == code
        for output in (shown.stdout, shown.stderr, as_json.stdout, as_json.stderr):
            assert "hunter2" not in output


# --- bad values are usage errors ---


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        pytest.param(["list", "--db", "mysql://u@127.0.0.1/x"], "unsupported database 'mysql' .* SQLite or PostgreSQL", id="unsupported-engine"),
        pytest.param(["list", "--db", "oracle+cx_oracle://u@127.0.0.1/x"], "unsupported database 'oracle'", id="unsupported-with-driver"),
        pytest.param(["list", "--db", "postgresql+nosuchdriver://u@127.0.0.1/x"], "invalid database URL", id="no-such-driver"),
        pytest.param(["list", "--db", "postgresql://u@127.0.0.1:5432x/x"], "invalid database URL", id="port-not-a-number"),
        pytest.param(["audit", "--since", "99999-01-01"], "is neither a date/time", id="year-99999"),
        pytest.param(["audit", "--since", "100000000d"], "is neither a date/time", id="too-long-ago"),
        pytest.param(["audit", "--until", "9999-12-31T23:00:00-05:00"], "is neither a date/time", id="after-year-9999-in-utc"),
        pytest.param(["audit", "--since", "0001-01-01T00:30:00+01:00"], "is neither a date/time", id="before-year-1-in-utc"),
        pytest.param(["key", "add", "/dev/null", "--expires", "9999-12-31T23:59-01:00"], "nor a duration", id="expiry-after-9999"),
    ],
)  # fmt: skip
def test_bad_values_are_usage_errors(home: dict[str, str], args: list[str], pattern: str) -> None:
    one_line_error(invoke_cli(*args, env=home), 2, pattern)
    one_line_error(invoke_cli(*args, "--json", env=home), 2, pattern)


@pytest.mark.parametrize(
    ("actor", "pattern"),
    [
        pytest.param("x" * 256, "is 256 characters long; at most 255", id="too-long"),
        pytest.param("ops\x1b[31m", "holds control characters", id="escape"),
        pytest.param("ops\nroot@host", "holds control characters", id="newline"),
        pytest.param("ops\u202eevil", "holds control characters", id="bidi-override"),
    ],
)
def test_an_actor_the_registry_cannot_record_is_a_usage_error(
    database_url: str, keys: Path, actor: str, pattern: str
) -> None:
    ok(invoke_cli("db", "upgrade", "--db", database_url))
    refused = invoke_cli(
        "key", "add", keys / "alice.pub", "--db", database_url, env={"VTREG_ACTOR": actor}
    )
    one_line_error(refused, 2, f"VTREG_ACTOR .*{pattern}")
    assert ok(invoke_cli("audit", "--json", "--db", database_url)).json()["events"] == []

    longest = {"VTREG_ACTOR": "x" * 255}  # the control: what the column holds is fine
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", database_url, env=longest))
    events = ok(invoke_cli("audit", "--json", "--db", database_url)).json()["events"]
    assert [e["actor"] for e in events] == ["x" * 255]
