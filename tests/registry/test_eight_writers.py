"""8 processes x 100 mixed operations on one SQLite registry: exactly 800 events, one chain.

The figure issue 8 reports as held ("8 processes x 100 mixed operations on
SQLite gave exactly 800 events and an intact chain"), kept so: each worker of
tests/registry/concurrency_worker.py trusts, verifies, revokes and verifies
again 25 versions of its own plugin (100 operations, each one audit event), all
at once. Then the hash chain holds, and so does the Merkle tree over it: a log
begun afterwards (``audit init --new-log``) checkpoints all of it and
``audit verify --checkpoint`` accepts that.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, Compiler, invoke_cli, make_plugin, ok, write_manifest
from vtreg.registry.service import Registry
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

WORKERS = 8
OPERATIONS = 100  # per worker
VERSIONS = OPERATIONS // 4  # each: trust, verify, revoke, verify


def _prepare_plugins(root: Path, compiler: Compiler, key: SigningKey, now: datetime) -> None:
    for w in range(WORKERS):
        base = make_plugin(root / "build", compiler, f"w{w}", "1.0.0")
        for i in range(VERSIONS):
            plugin = root / f"w{w}" / f"v{i}"
            plugin.mkdir(parents=True)
            shutil.copy(base / f"libw{w}.so", plugin)
            write_manifest(plugin, name=f"w{w}", description="worker plugin", version=f"1.0.{i}")
            (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)


def _run_workers(url: str, plugins: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = [sys.executable, "-m", "tests.registry.concurrency_worker", url, str(plugins)]
    procs = [
        subprocess.Popen([*worker, str(w), str(VERSIONS)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for w in range(WORKERS)
    ]  # fmt: skip
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


@pytest.mark.slow
def test_eight_processes_of_a_hundred_operations_leave_800_events_in_one_chain(
    tmp_path: Path, compiler: Compiler, key: SigningKey, now: datetime
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    plugins = tmp_path / "plugins"
    _prepare_plugins(plugins, compiler, key, now)
    with Registry.open(url) as registry:
        registry.add_key(key.public_key)

    results = _run_workers(url, plugins)

    assert [r["errors"] for r in results] == [[]] * WORKERS  # no "database is locked"
    assert [r["done"] for r in results] == [OPERATIONS] * WORKERS
    with Registry.open(url) as registry:
        report = registry.verify_audit()
        assert report.ok, report.problem
        assert report.events == 1 + WORKERS * OPERATIONS  # the key, then exactly 800
        events = registry.audit_events(limit=100_000)
    assert sorted({e.seq for e in events}) == list(range(1, 2 + WORKERS * OPERATIONS))
    for w in range(WORKERS):  # each worker's 100, none lost, none doubled
        assert sum(e.plugin == f"w{w}" for e in events) == OPERATIONS
    names = [e.plugin for e in sorted(events, key=lambda e: e.seq) if e.plugin]
    assert sum(a != b for a, b in itertools.pairwise(names)) > WORKERS, "they did not overlap"
    _checkpoint_and_verify(url, tmp_path, size=2 + WORKERS * OPERATIONS)  # and the log's own


def _checkpoint_and_verify(url: str, tmp_path: Path, size: int) -> None:
    env = {"VTREG_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir(mode=0o700)
    ok(invoke_cli("keygen", "log", "--out", tmp_path, "--unencrypted"))
    db, log_key = ("--db", url), ("--key", tmp_path / "log.key")
    init = ("audit", "init", *log_key, "--origin", "example.com/log", "--new-log", "--json")
    vkey = ok(invoke_cli(*init, *db, env=env)).json()["vkey"]
    signed = ok(invoke_cli("audit", "checkpoint", *log_key, "--json", *db, env=env)).json()
    (tmp_path / "checkpoint").write_text(signed["checkpoint"])
    host = ("--verifier-state", tmp_path / "host", "--log", vkey, "--json", *db)
    checkpoint = ("--checkpoint", tmp_path / "checkpoint")
    accepted = ok(invoke_cli("audit", "verify", *checkpoint, *host, env=env)).json()
    assert (accepted["intact"], accepted["size"]) == (True, size)
