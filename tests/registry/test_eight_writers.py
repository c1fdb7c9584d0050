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
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import Compiler, invoke_cli, ok
from tests.registry.test_concurrency import prepare_plugins, run_workers
from vtreg.registry.service import Registry
from vtreg.verifier.keys import SigningKey

WORKERS = 8
OPERATIONS = 100  # per worker
VERSIONS = OPERATIONS // 4  # each: trust, verify, revoke, verify


@pytest.mark.slow
def test_eight_processes_of_a_hundred_operations_leave_800_events_in_one_chain(
    tmp_path: Path, compiler: Compiler, key: SigningKey, now: datetime
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    plugins = tmp_path / "plugins"
    prepare_plugins(plugins, compiler, key, now, workers=WORKERS, versions=VERSIONS)
    with Registry.open(url) as registry:
        registry.add_key(key.public_key)

    results = run_workers(url, plugins, workers=WORKERS, versions=VERSIONS)

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
