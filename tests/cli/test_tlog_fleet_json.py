"""docs/json.md for the transparency-log and fleet commands: each --json document has its shape."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.cli.json_shapes import COVERAGE, Checker
from tests.helpers import invoke_cli, ok
from tests.tlog.conftest import rewrite_history
from vtreg.registry.db import connect


def _registry_with_events(db: str, keys: Path, plugin: Path, env: dict[str, str]) -> None:
    Path(env["VTREG_HOME"]).mkdir(mode=0o700, exist_ok=True)
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", db, env=env))
    ok(invoke_cli("trust", plugin, "--db", db, env=env))


def test_tlog_commands_output_their_documented_shapes(
    database_url: str, keys: Path, plugin_factory: Callable[..., Path], tmp_path: Path
) -> None:
    db = ("--db", database_url)
    env = {"VTREG_HOME": str(tmp_path / "home")}
    ok(invoke_cli("keygen", "log", "--out", keys, "--unencrypted"))
    _registry_with_events(database_url, keys, plugin_factory("hello"), env)
    run = Checker(env)
    log_key = ("--key", keys / "log.key")

    init = run(
        "audit init", "audit", "init", *log_key, "--origin", "example.com/log", "--new-log", *db
    )
    signed = run("audit checkpoint", "audit", "checkpoint", *log_key, *db)
    idle = run("audit checkpoint", "audit", "checkpoint", *log_key, "--if-due", *db)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.write_text(signed["checkpoint"])
    run("audit prove", "audit", "prove", "2", "--out", tmp_path / "proof", *db)
    proven = run(
        "audit verify-proof", "audit", "verify-proof", tmp_path / "proof", "--log", init["vkey"]
    )
    run("audit export", "audit", "export", tmp_path / "export", *db)
    host = ("--verifier-state", tmp_path / "host", "--log", init["vkey"], *db)
    accepted = run("audit verify", "audit", "verify", "--checkpoint", checkpoint, *host)
    # The log key's holder signs another history: a host that saw the first one has a fork.
    rewrite_history(database_url, lambda events: [dict(e, actor="other@host") for e in events])
    ok(invoke_cli("key", "add", keys / "bob.pub", *db, env=env))
    other_state = ("--state", tmp_path / "other-signer.json")
    fork = ("audit", "init", *log_key, "--origin", "example.com/log", *other_state, "--new-log")
    ok(invoke_cli(*fork, *db, env=env))
    other = tmp_path / "other"
    other.write_text(
        ok(invoke_cli("audit", "checkpoint", *log_key, *other_state, *db, env=env)).stdout
    )
    forked = run("audit verify", "audit", "verify", "--checkpoint", other, *host, code=1)
    served = _witness_serve(keys, init["vkey"], tmp_path, env)
    run.conforms(served, "witness serve")

    assert run.checked == COVERAGE["tlog"]
    assert (init["created"], signed["created"], idle["created"]) == (True, True, False)
    assert (proven["event"]["seq"], proven["event"]["action"]) == (2, "plugin.trust")
    assert (accepted["intact"], accepted["size"], accepted["head"][:7]) == (True, 3, "sha256:")
    assert (forked["error"]["type"], forked["error"]["code"]) == ("LogError", "log-inconsistent")
    assert served["url"] == f"http://127.0.0.1:{served['port']}"


def test_a_broken_audit_chain_is_a_failed_document(
    database_url: str, keys: Path, plugin_factory: Callable[..., Path], tmp_path: Path
) -> None:
    env = {"VTREG_HOME": str(tmp_path / "home")}
    _registry_with_events(database_url, keys, plugin_factory("hello"), env)
    engine = connect(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE audit_events SET reason = 'edited' WHERE seq = 2"))
    engine.dispose()

    broken = Checker(env)("audit verify", "audit", "verify", "--db", database_url, code=1)

    assert (broken["intact"], broken["broken_seq"], broken["exit_code"]) == (False, 2, 1)
    assert broken["error"]["code"] == "log-inconsistent"


def _witness_serve(keys: Path, log_vkey: str, tmp_path: Path, env: dict[str, str]) -> Any:
    """``vtreg witness serve --json`` in a child, stopped: its stdout holds one document."""
    ok(invoke_cli("keygen", "witness", "--out", keys, "--unencrypted"))
    args = ["witness", "serve", "--key", keys / "witness.key", "--name", "w.example/1"]
    args += ["--log", log_vkey, "--state", tmp_path / "w", "--listen", "127.0.0.1:0", "--json"]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")} | env
    process = subprocess.Popen(
        [sys.executable, "-m", "vtreg", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
    )
    assert process.stderr is not None
    listening = process.stderr.readline()  # the line people read: on stderr with --json
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert listening.startswith("witness w.example/1+"), listening
    return json.loads(out)


def test_fleet_commands_output_their_documented_shapes(
    database_url: str, keys: Path, plugin_factory: Callable[..., Path], tmp_path: Path
) -> None:
    db = ("--db", database_url)
    env = {"VTREG_HOME": str(tmp_path / "home")}
    plugin = plugin_factory("hello")
    _registry_with_events(database_url, keys, plugin, env)
    for name in ("root", "root2", "online", "stranger"):
        ok(invoke_cli("keygen", name, "--out", keys, "--unencrypted"))
    run = Checker(env)
    repo, state = tmp_path / "repo", tmp_path / "host.state"
    roots = ("--root-key", keys / "root.key", "--online-key", keys / "online.key")

    run("fleet init", "fleet", "init", repo, *roots)
    run("fleet publish", "fleet", "publish", repo, *db)
    synced = run(
        "fleet sync", "fleet", "sync", repo, "--state", state, "--root", repo / "1.root.json"
    )
    status = run("fleet status", "fleet", "status", "--state", state)
    verified = run("verify", "verify", plugin, "--fleet", state)
    refreshed = run("fleet refresh", "fleet", "refresh", repo)
    rotate = ("--old-key", keys / "root.key", "--root-key", keys / "root2.key")
    run("fleet rotate-root", "fleet", "rotate-root", repo, *rotate)
    stranger = tmp_path / "stranger"
    stranger_roots = ("--root-key", keys / "stranger.key", "--online-key", keys / "online.key")
    ok(invoke_cli("fleet", "init", stranger, *stranger_roots, env=env))
    refused = run(
        "error", "fleet", "sync", repo, "--state", tmp_path / "other.state",
        "--root", stranger / "1.root.json", code=1,
    )  # fmt: skip

    assert run.checked == COVERAGE["fleet"] | {"error"}
    assert synced["changed"] is True
    assert set(status["roles"]) == {"root", "timestamp", "snapshot", "targets", "bins"}
    assert status["expires_at"] == min(r["expires_at"] for r in status["roles"].values())
    assert verified["plugin"]["name"] == "hello"
    assert refreshed["entries"] is None
    assert refused["error"]["type"] == "VerificationError"  # not an internal class's name
