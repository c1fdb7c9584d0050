"""An operator's worst day, through the real CLI on SQLite and PostgreSQL: a key compromise,
a rotation, a bad build, and what the registry answers about each (issue: operator workflows)."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import CliResult, invoke_cli, ok, one_line_error
from vtreg.loader.protocols import AuditEvent
from vtreg.registry.db import REVISIONS
from vtreg.registry.service import Registry

PluginFactory = Callable[..., Path]


def _cli(db: str, *args: str | Path, env: dict[str, str] | None = None) -> CliResult:
    return invoke_cli(*args, "--db", db, env=env)


def _json(db: str, *args: str | Path) -> Any:
    return ok(_cli(db, *args, "--json")).json()


def _on_terminal(db: str, *args: str, answer: str | None = None) -> tuple[int, str]:
    """Run ``vtreg ARGS --db DB`` in a child whose stdin, stdout and stderr are a terminal;
    type ``answer`` when it asks. Returns the exit status and everything it printed."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtreg", *args, "--db", db],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**env, "COLUMNS": "200"},
        close_fds=True,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if answer is not None and b"[y/N]" in output:
                    os.write(leader, answer.encode() + b"\n")
                    answer = None
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        os.close(leader)
    return code, output.decode().replace("\r\n", "\n")


@pytest.fixture
def operator(database_url: str, keys: Path, plugin_factory: PluginFactory) -> Callable[..., Path]:
    """``sign(name, version, *keys, **plugin options)``: a plugin signed by those keys."""

    def sign(name: str, version: str = "1.0.0", *signers: str, **options: Any) -> Path:
        plugin = plugin_factory(name, version, parent=options.pop("parent"), **options)
        for signer in signers or ("alice",):
            ok(invoke_cli("sign", plugin, "--key", keys / f"{signer}.key"))
        return plugin

    return sign


def _keyid(db: str, name: str) -> str:
    return str(next(k["keyid"] for k in _json(db, "key", "list")["keys"] if k["name"] == name))


# --- 1. no silent truncation ---


def test_an_incident_export_holds_every_event(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", parent=tmp_path / "p")
    ok(_cli(db, "key", "add", keys / "alice.pub"))
    ok(_cli(db, "trust", plugin))
    alice = _keyid(db, "alice")
    with Registry.open(db) as registry:  # what a host's loader records, 60 times
        for _ in range(60):
            registry.record(AuditEvent("plugin.load", "allowed", plugin="hello", keyids=(alice,)))
    query = ("audit", "--key", alice[:12], "--action", "plugin.load", "--since", "30d")

    exported = ok(_cli(db, *query, "--csv"))
    everything = _json(db, *query)
    first = _json(db, *query, "--limit", "25")
    second = _json(db, *query, "--limit", "25", "--after", str(first["next"]))
    third = _json(db, *query, "--limit", "25", "--after", str(second["next"]))
    limited = ok(_cli(db, *query, "--csv", "--limit", "25"))

    assert len(list(csv.DictReader(io.StringIO(exported.stdout)))) == 60
    assert exported.stderr == ""
    assert (len(everything["events"]), everything["truncated"], everything["next"]) == (
        60,
        False,
        None,
    )
    seqs = [e["seq"] for page in (first, second, third) for e in page["events"]]
    assert seqs == [e["seq"] for e in everything["events"]]  # every event once, newest first
    assert (first["truncated"], second["truncated"], third["truncated"]) == (True, True, False)
    assert first["next"] == first["events"][-1]["seq"]
    assert len(list(csv.DictReader(io.StringIO(limited.stdout)))) == 25
    assert f"35 more events: continue with --after {first['next']}" in limited.stderr


def test_a_terminal_gets_a_page_and_is_told_how_many_more(database_url: str, keys: Path) -> None:
    ok(_cli(database_url, "key", "add", keys / "alice.pub"))
    with Registry.open(database_url) as registry:
        for _ in range(54):
            registry.record(AuditEvent("plugin.load", "refused", plugin="hello"))

    code, shown = _on_terminal(database_url, "audit", "--action", "plugin.load")

    assert code == 0, shown
    rows = [line for line in shown.splitlines() if " plugin.load " in line]
    assert len(rows) == 50
    assert "vtreg: 4 more events: continue with --after 6, or give --limit" in shown


# --- 2. signers stay current after a key rotation ---


def test_a_rotated_key_and_a_fresh_signature_are_recorded(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", parent=tmp_path / "p")
    for pub in ("alice.pub", "bob.pub"):
        ok(_cli(db, "key", "add", keys / pub))
    ok(_cli(db, "trust", plugin))
    alice, bob = _keyid(db, "alice"), _keyid(db, "bob")
    ok(_cli(db, "key", "revoke", "alice", "--reason", "rotated"))
    ok(invoke_cli("sign", plugin, "--key", keys / "bob.key", "--fresh"))

    retrusted = ok(_cli(db, "trust", plugin))
    by_bob = _json(db, "list", "--signed-by", bob[:12])["plugins"]
    by_alice = ok(_cli(db, "list", "--signed-by", "alice"))
    [event] = _json(db, "audit", "--action", "plugin.trust", "--limit", "1")["events"]
    ok(_cli(db, "verify", plugin))

    assert retrusted.stdout.startswith("trusted hello 1.0.0 with a newly signed envelope")
    assert f"signed by  {bob[:16]}" in retrusted.stdout
    assert f"before     {alice[:16]}" in retrusted.stdout
    assert [(p["name"], p["signers"], p["former_signers"], p["status"]) for p in by_bob] == [
        ("hello", [bob], [alice], "loadable")
    ]
    assert "signed by " + alice[:16] + " before a newer envelope: hello@1.0.0" in by_alice.stdout
    assert event["details"]["previous_signers"] == [alice]
    assert event["details"]["signers"] == [bob]
    assert "earlier    " + alice[:16] in ok(_cli(db, "show", "hello")).stdout


def test_an_envelope_with_fewer_signers_than_the_trusted_threshold_is_refused(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", "1.0.0", "alice", "bob", parent=tmp_path / "p")
    for pub in ("alice.pub", "bob.pub"):
        ok(_cli(db, "key", "add", keys / pub))
    ok(_cli(db, "trust", plugin, "--threshold", "2"))
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key", "--fresh"))

    one_line_error(_cli(db, "trust", plugin), 1, r"signed by 1/2 trusted keys required")
    assert _json(db, "show", "hello")["plugins"][0]["signers"] == sorted(
        (_keyid(db, "alice"), _keyid(db, "bob"))
    )


# --- 3. the same version with other content ---


def test_a_second_content_of_one_version_needs_replace(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    first = operator("hello", parent=tmp_path / "a")
    second = operator("hello", parent=tmp_path / "b", extra_files={"README.md": b"rebuilt\n"})
    ok(_cli(db, "key", "add", keys / "alice.pub"))
    old = _json(db, "trust", first)["plugin"]["content_digest"]

    refused = _cli(db, "trust", second, "--json")
    replaced = _json(db, "trust", second, "--replace")
    listed = _json(db, "list")["plugins"]
    untrust = _json(db, "audit", "--action", "plugin.untrust")["events"]

    assert refused.code == 1
    assert refused.json()["error"]["code"] == "version-conflict"
    assert f"already trusted with other content ({old[:23]})" in refused.json()["error"]["message"]
    assert replaced["replaced"] == [old]
    assert [p["content_digest"] for p in listed] == [replaced["plugin"]["content_digest"]]
    assert [(e["digest"], e["reason"]) for e in untrust] == [
        (old, f"replaced by {replaced['plugin']['content_digest']}")
    ]
    one_line_error(_cli(db, "verify", first), 1, "is signed but not trusted")
    ok(_cli(db, "verify", second))
    table = ok(_cli(db, "list")).stdout
    assert replaced["plugin"]["content_digest"][:23] in table  # a short digest, no ellipsis
    assert "…" not in table


# --- 4. effective status from the decision core ---


def test_list_and_show_say_what_would_load(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    alone = operator("alone", parent=tmp_path / "a")
    both = operator("both", "1.0.0", "alice", "bob", parent=tmp_path / "b")
    strict = operator("strict", "1.0.0", "alice", "bob", parent=tmp_path / "s")
    old = operator("tool", "1.0.0", "bob", parent=tmp_path / "t1")
    new = operator("tool", "2.0.0", "bob", parent=tmp_path / "t2")
    gone = operator("gone", "1.0.0", "bob", parent=tmp_path / "g")
    for pub in ("alice.pub", "bob.pub"):
        ok(_cli(db, "key", "add", keys / pub))
    for plugin in (alone, both, old, new, gone):
        ok(_cli(db, "trust", plugin))
    ok(_cli(db, "trust", strict, "--threshold", "2"))
    ok(_cli(db, "revoke", "gone", "--reason", "bad build"))

    revoked = _json(db, "key", "revoke", "alice", "--reason", "laptop stolen")
    status = {(p["name"], p["version"]): p["status"] for p in _json(db, "list")["plugins"]}

    assert status == {
        ("alone", "1.0.0"): "key-revoked",
        ("both", "1.0.0"): "loadable",  # bob's signature still counts
        ("strict", "1.0.0"): "threshold",  # trusted with --threshold 2
        ("tool", "1.0.0"): "rollback",
        ("tool", "2.0.0"): "loadable",
        ("gone", "1.0.0"): "content-revoked",
    }
    assert sorted(p["name"] for p in revoked["unloadable"]) == ["alone", "strict"]
    assert sorted(p["name"] for p in revoked["signed"]) == ["alone", "both", "strict"]
    for directory, expected in ((alone, "key revoked"), (old, "rollback"), (gone, "revoked")):
        one_line_error(_cli(db, "verify", directory), 1, expected)  # the loader agrees
    ok(_cli(db, "verify", both))
    assert "  status     rollback" in ok(_cli(db, "show", "tool")).stdout


# --- 5. keys can be maintained; untrust is not a ban ---


def test_a_key_can_be_extended_and_rescoped(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", parent=tmp_path / "p")
    ok(_cli(db, "key", "add", keys / "alice.pub", "--expires", "30d"))
    ok(_cli(db, "trust", plugin))
    before = _json(db, "key", "list")["keys"][0]["expires_at"]

    extended = _json(db, "key", "set", "alice", "--expires", "2y")
    narrowed = ok(_cli(db, "key", "set", "alice", "--scope", "other-*"))
    narrowed_status = _json(db, "list")["plugins"][0]["status"]
    one_line_error(_cli(db, "verify", plugin), 1, "key may not sign 'hello'")
    widened = _json(db, "key", "set", "alice", "--scope", "*", "--no-expiry")
    unchanged = _json(db, "key", "set", "alice", "--scope", "*")
    events = _json(db, "audit", "--action", "key.set")["events"]

    assert extended["changed"] is True
    assert extended["key"]["expires_at"] > before
    assert "stopped loading: hello@1.0.0" in narrowed.stdout
    assert narrowed_status == "out-of-scope"
    assert (widened["key"]["scopes"], widened["key"]["expires_at"]) == ([], None)
    assert _json(db, "list")["plugins"][0]["status"] == "loadable"
    assert unchanged["changed"] is False
    assert [e["details"]["scopes"] for e in events] == [[], ["other-*"], []]
    assert events[-1]["details"]["previous"]["expires_at"] == before
    ok(_cli(db, "key", "revoke", "alice", "--reason", "rotated"))
    one_line_error(_cli(db, "key", "set", "alice", "--no-expiry"), 1, "revocation is final")
    one_line_error(_cli(db, "key", "set", "alice"), 2, "give --expires, --no-expiry or --scope")


def test_untrust_forgets_content_that_trust_may_bring_back(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", parent=tmp_path / "p")
    ok(_cli(db, "key", "add", keys / "alice.pub"))
    digest = _json(db, "trust", plugin)["plugin"]["content_digest"]

    untrusted = _json(db, "untrust", "--digest", digest[:15], "--reason", "not needed")
    after = _json(db, "list")["plugins"]
    one_line_error(_cli(db, "verify", plugin), 1, "is signed but not trusted")
    again = _json(db, "trust", plugin)
    ok(_cli(db, "revoke", "hello@1.0.0", "--reason", "bad build"))
    refused = _cli(db, "untrust", "hello", "--reason", "x")

    assert [p["content_digest"] for p in untrusted["untrusted"]] == [digest]
    assert after == []
    assert again["created"] is True
    one_line_error(refused, 1, "revocation is final and untrust does not lift it")
    one_line_error(_cli(db, "untrust", "ghost", "--reason", "x"), 3, "nothing trusted matches")
    [event] = _json(db, "audit", "--action", "plugin.untrust")["events"]
    assert (event["digest"], event["reason"]) == (digest, "not needed")


# --- 6. irreversible actions ---


def test_revoke_dry_run_again_and_never(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", parent=tmp_path / "p")
    ok(_cli(db, "key", "add", keys / "alice.pub"))
    ok(_cli(db, "trust", plugin))
    events = len(_json(db, "audit")["events"])

    dry = ok(_cli(db, "revoke", "hello", "--reason", "bad build", "--dry-run"))
    key_dry = _json(db, "key", "revoke", "alice", "--reason", "x", "--dry-run")
    unchanged = len(_json(db, "audit")["events"])
    ok(_cli(db, "verify", plugin))
    first = ok(_cli(db, "revoke", "hello", "--reason", "bad build"))
    again = _json(db, "revoke", "hello", "--reason", "bad build")

    assert dry.stdout.startswith("would revoke hello@1.0.0 (sha256:")
    assert (key_dry["changed"], [p["name"] for p in key_dry["unloadable"]]) == (False, ["hello"])
    assert unchanged == events  # nothing from the dry runs
    assert first.stdout.startswith("revoked hello@1.0.0 (sha256:")
    assert (again["revoked"], len(again["already_revoked"])) == ([], 1)
    one_line_error(_cli(db, "revoke", "ghost", "--reason", "x"), 3, "it was never trusted")
    one_line_error(_cli(db, "verify", plugin), 1, "was revoked")


def test_revoke_asks_on_a_terminal(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", parent=tmp_path / "p")
    ok(_cli(db, "key", "add", keys / "alice.pub"))
    ok(_cli(db, "trust", plugin))

    declined, said_no = _on_terminal(db, "revoke", "hello", "--reason", "x", answer="n")
    still = _json(db, "list")["plugins"][0]["status"]
    key_declined, _ = _on_terminal(db, "key", "revoke", "alice", "--reason", "x", answer="n")
    agreed, said_yes = _on_terminal(db, "revoke", "hello", "--reason", "x", answer="y")

    assert "Revoke for good: hello@1.0.0 (sha256:" in said_no
    assert (declined, key_declined) == (3, 3)
    assert "not confirmed: nothing was changed" in said_no
    assert still == "loadable"
    assert agreed == 0, said_yes
    assert _json(db, "list")["plugins"][0]["status"] == "content-revoked"
    assert _json(db, "key", "list")["keys"][0]["status"] == "trusted"


# --- 7. read-only commands never create a registry ---


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["list"], id="list"),
        pytest.param(["show", "hello"], id="show"),
        pytest.param(["key", "list"], id="key-list"),
        pytest.param(["audit"], id="audit"),
        pytest.param(["audit", "verify"], id="audit-verify"),
        pytest.param(["db", "info"], id="db-info"),
        pytest.param(["revoke", "hello", "--reason", "x"], id="revoke"),
    ],
)
def test_a_mistyped_registry_is_not_created(database_url: str, command: list[str]) -> None:
    one_line_error(_cli(database_url, *command), 3, "no registry at")

    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        if engine.dialect.name == "sqlite":
            assert not Path(engine.url.database or "").exists()
        else:
            assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_plain_path_names_a_sqlite_registry(
    keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke_cli("key", "list", "--db", "typo.db"), 3, "no registry at .*typo.db")
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", "./registry.db"))
    listed = ok(invoke_cli("key", "list", "--db", "registry.db", "--json")).json()
    info = ok(invoke_cli("db", "info", "--db", str(tmp_path / "registry.db"), "--json")).json()

    assert [k["name"] for k in listed["keys"]] == ["alice"]
    assert info["url"] == f"sqlite:///{tmp_path / 'registry.db'}"
    assert not (tmp_path / "typo.db").exists()


def test_a_missing_postgresql_driver_says_what_to_install(tmp_path: Path) -> None:
    blocked = tmp_path / "site"
    (blocked / "psycopg").mkdir(parents=True)
    (blocked / "psycopg" / "__init__.py").write_text(
        "raise ModuleNotFoundError('No module named psycopg', name='psycopg')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    proc = subprocess.run(
        [sys.executable, "-m", "vtreg", "list", "--db", "postgresql://u@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": f"{blocked}{os.pathsep}{env.get('PYTHONPATH', '')}"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().endswith("(pip install 'vtreg[postgres]')"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --- 8. which registry is this? ---


def test_db_info_says_which_registry_and_where_the_log_stands(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", parent=tmp_path / "p")
    ok(_cli(db, "key", "add", keys / "alice.pub"))
    ok(_cli(db, "key", "add", keys / "bob.pub"))
    ok(_cli(db, "trust", plugin))
    ok(_cli(db, "key", "revoke", "bob", "--reason", "unused"))

    info = _json(db, "db", "info")
    chain = _json(db, "audit", "verify")
    text = ok(_cli(db, "db", "info")).stdout

    assert info["revision"] == info["head_revision"] == REVISIONS[-1]
    assert info["engine"] in {"sqlite", "postgresql"}
    assert info["keys"] == {"trusted": 1, "revoked": 1}
    assert info["plugins"] == {"trusted": 1, "revoked": 0}
    assert (info["audit"]["events"], info["audit"]["head"]) == (chain["events"], chain["head"])
    assert f"audit log  4 events, head {chain['head']}" in text


def test_help_lists_the_environment() -> None:
    shown = ok(invoke_cli("--help")).stdout
    for variable in (
        "VTREG_HOME",
        "VTREG_DATABASE_URL",
        "VTREG_PASSPHRASE",
        "VTREG_ACTOR",
        "VTREG_LOCK_TIMEOUT",
    ):
        assert variable in shown


# --- 12. small ones a user notices ---


def test_sign_says_what_it_signed_and_warns_about_leftovers(
    keys: Path, plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    plugin = plugin_factory(
        "hello", parent=tmp_path / "p", extra_files={"src/hello.c": b"int x;\n", "a.o": b"\0"}
    )

    first = ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    fresh = ok(invoke_cli("sign", plugin, "--key", keys / "alice.key", "--fresh", "--json"))

    assert (
        "signed  hello 1.0.0 (linux-x86_64): 4 files (a.o, libhello.so, plugin.json, src/hello.c)"
        in first.stdout
    )
    assert "src/hello.c looks like a source or build leftover" in first.stderr
    assert "a.o looks like a source or build leftover" in first.stderr
    assert "libhello.so looks like" not in first.stderr
    assert fresh.json()["files"] == ["a.o", "libhello.so", "plugin.json", "src/hello.c"]
    assert "because the content changed" not in fresh.stderr  # --fresh, same content


def test_run_prints_the_result_alone_and_reads_its_input_from_a_file_or_stdin(
    database_url: str, keys: Path, operator: Callable[..., Path], tmp_path: Path
) -> None:
    db = database_url
    plugin = operator("hello", parent=tmp_path / "p")
    sad = operator("sad", parent=tmp_path / "s", source="variants.c", defines={"MODE": "11"})
    ok(_cli(db, "key", "add", keys / "alice.pub"))
    ok(_cli(db, "trust", plugin))
    ok(_cli(db, "trust", sad))
    (tmp_path / "input.json").write_text('{"name": "Ada"}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}

    from_file = ok(_cli(db, "run", plugin, "--input", f"@{tmp_path / 'input.json'}"))
    from_stdin = subprocess.run(
        [sys.executable, "-m", "vtreg", "run", str(plugin), "--input", "-", "--db", db],
        input='{"name": "Grace"}',
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    failed = _cli(db, "run", sad, "--json")

    assert json.loads(from_file.stdout)["output"]["context"]["input"] == {"name": "Ada"}
    assert from_file.stderr == "vtreg: hello 1.0.0: verified, loaded in this process, executed\n"
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert json.loads(from_stdin.stdout)["output"]["context"]["input"] == {"name": "Grace"}
    one_line_error(_cli(db, "run", plugin, "--input", "@/nonexistent.json"), 3, "does not exist")
    assert (failed.code, failed.json()["exit_code"]) == (3, 3)
    assert failed.json()["error"] == {
        "category": "undecided",
        "type": "PluginCallError",
        "message": "sad 1.0.0: the plugin reported failure: no greeting today",
    }


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtreg", "list", "--json", "--db", str(tmp_path / "none.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # `| head -c 0`: nobody reads the answer
    with proc.stderr:
        stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [
        f"vtreg: error: no registry at {tmp_path / 'none.db'} (a command that trusts something "
        "creates it; check --db or $VTREG_DATABASE_URL)"
    ]
