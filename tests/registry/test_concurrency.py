"""Several processes write the same registry at once; the chain neither forks nor loses events."""

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

from tests.helpers import ROOT, Compiler, make_plugin, write_manifest
from vtreg.registry.service import Registry
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

WORKERS = 4
ITERATIONS = 25


def prepare_plugins(
    root: Path,
    compiler: Compiler,
    key: SigningKey,
    now: datetime,
    *,
    workers: int = WORKERS,
    versions: int = ITERATIONS,
) -> None:
    """``versions`` signed versions of plugin ``w<N>`` for each of ``workers`` workers."""
    for w in range(workers):
        base = make_plugin(root / "build", compiler, f"w{w}", "1.0.0")
        for i in range(versions):
            plugin = root / f"w{w}" / f"v{i}"
            plugin.mkdir(parents=True)
            shutil.copy(base / f"libw{w}.so", plugin)
            write_manifest(plugin, name=f"w{w}", description="worker plugin", version=f"1.0.{i}")
            (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)


def run_workers(
    url: str, plugins: Path, *, workers: int = WORKERS, versions: int = ITERATIONS
) -> list[dict[str, Any]]:
    """Run ``workers`` concurrency_worker processes at once; their JSON results."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.registry.concurrency_worker", url, str(plugins),
             str(w), str(versions)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for w in range(workers)
    ]  # fmt: skip
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


@pytest.mark.slow
def test_concurrent_writers_keep_one_unbroken_chain(
    database_url: str, tmp_path: Path, compiler: Compiler, key: SigningKey, now: datetime
) -> None:
    prepare_plugins(tmp_path / "plugins", compiler, key, now)
    with Registry.open(database_url) as registry:
        registry.add_key(key.public_key)

    results = run_workers(database_url, tmp_path / "plugins")

    assert [r["errors"] for r in results] == [[]] * WORKERS  # no "database is locked", no conflicts
    done = sum(int(r["done"]) for r in results)
    assert done == WORKERS * ITERATIONS * 4
    with Registry.open(database_url) as registry:
        report = registry.verify_audit()
        assert report.ok, report.problem
        assert report.events == 1 + done  # the key, then one event per operation
        assert len(registry.plugins(revoked=True)) == WORKERS * ITERATIONS
        names = [e.plugin for e in registry.audit_events(limit=100_000) if e.plugin]
    switches = sum(a != b for a, b in itertools.pairwise(names))
    assert switches > WORKERS, "the workers did not actually run at the same time"


def test_processes_creating_the_same_new_registry_at_once(database_url: str) -> None:
    probe = "import sys; from vtreg.registry.service import Registry; Registry.open(sys.argv[1]).close()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", probe, database_url], stderr=subprocess.PIPE,
                         text=True, env=env)
        for _ in range(WORKERS)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Registry.open(database_url) as registry:
        assert registry.verify_audit().events == 0
