"""Simulate many fleet hosts syncing from one HTTP server, in processes on this machine.

    python bench/fleet_hosts.py [--hosts 334] [--workers 2] [--deadline 600]

One publisher trusts the example plugin and publishes (16 bins); one
``http.server`` on 127.0.0.1 serves the repository. Every host (its own state
file) then runs three sync loops, each followed by a decision about the
example plugin from its state:

1. first sync: the plugin is allowed;
2. the publisher revokes it and publishes: after its next sync every host
   refuses it (``content-revoked``);
3. the server replays the first timestamp (old, unexpired): every host's sync
   is refused (``metadata-rollback``) and its state still refuses the plugin.

Hosts run in --workers processes; the whole run must end before --deadline
seconds. It prints the counts and fails (exit 1) unless every host did what
is expected.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import http.server
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import build_example
from vtreg.registry.fleet import FleetTrust
from vtreg.registry.fleet._signer import VtregSigner
from vtreg.registry.fleet.repository import Repository, init_repository, publish
from vtreg.registry.fleet.sync import SyncRefused, sync
from vtreg.verifier.decision import decide
from vtreg.verifier.errors import VerificationError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signatures import verify
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState

DAY = timedelta(days=1)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        del format, args


def _decision(state: Path, plugin: Path) -> str:
    tree = capture(plugin)
    trusted = FleetTrust(state).state_for(tree.signature)  # the row of the name it claims
    try:
        decide(tree, trusted, at=datetime.now(UTC))
    except VerificationError as e:
        return e.code
    return "allowed"


def _host(job: tuple[int, str, str, str, str, int]) -> str:
    """One host's sync loop of one phase: what its sync and its decision said."""
    index, url, work, root_file, plugin, phase = job
    state = Path(work, "hosts", f"{index}.state")
    root = Path(root_file).read_bytes() if phase == 1 else None
    try:
        sync(url, str(state), root=root, clock=datetime.now(UTC))
        synced = "synced"
    except SyncRefused as e:
        synced = e.code
    return f"{synced}/{_decision(state, Path(plugin))}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=334)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=600)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vtreg-fleet-hosts-"))
    try:
        ok = _run(work, args.hosts, args.workers, args.deadline)
    finally:
        shutil.rmtree(work)
    sys.exit(0 if ok else 1)


def _run(work: Path, hosts: int, workers: int, deadline: float) -> bool:
    now = datetime.now(UTC)
    alice, online = SigningKey.generate("alice"), SigningKey.generate("online")
    plugin = build_example(work)
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), alice, at=now).envelope)
    verified = verify(capture(plugin), [alice.public_key], at=now)
    content = TrustedContent("hello", verified.version, verified.platforms, verified.content_digest)
    repo_dir = work / "repo"
    init_repository(
        repo_dir, [SigningKey.generate("root")], 1, online, str(work / "online.key"),
        expires=now + 365 * DAY, bin_bits=4,
    )  # fmt: skip
    repo, signer = Repository(repo_dir), VtregSigner(online)

    def publish_state(*contents: TrustedContent) -> None:
        state = TrustState.build([TrustedKey(alice.public_key)], contents)
        publish(repo, state, signer, at=datetime.now(UTC), timestamp_expires=DAY,
                snapshot_expires=7 * DAY, targets_expires=90 * DAY)  # fmt: skip

    publish_state(content)
    first_timestamp = (repo_dir / "timestamp.json").read_bytes()
    handler = functools.partial(_Quiet, directory=str(repo_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    (work / "hosts").mkdir()
    start = time.perf_counter()
    results: dict[int, Counter[str]] = {}
    try:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for phase in (1, 2, 3):
                if phase == 2:
                    publish_state(dataclasses.replace(content, revoked="recalled"))
                if phase == 3:
                    (repo_dir / "timestamp.json").write_bytes(first_timestamp)
                jobs = [
                    (i, url, str(work), str(repo_dir / "1.root.json"), str(plugin), phase)
                    for i in range(hosts)
                ]
                left = deadline - (time.perf_counter() - start)
                results[phase] = Counter(pool.map_async(_host, jobs).get(timeout=left))
    finally:
        httpd.shutdown()
    elapsed = time.perf_counter() - start
    expected = {
        1: "synced/allowed",
        2: "synced/content-revoked",
        3: "metadata-rollback/content-revoked",
    }
    print(f"{hosts} hosts x 3 sync loops = {3 * hosts} syncs in {elapsed:.1f} s "
          f"({workers} worker processes, one HTTP server)")  # fmt: skip
    ok = True
    for phase, counts in results.items():
        print(f"  phase {phase}: {dict(counts)} (expected all {expected[phase]})")
        ok &= counts == Counter({expected[phase]: hosts})
    return ok


if __name__ == "__main__":
    main()
