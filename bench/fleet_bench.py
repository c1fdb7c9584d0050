"""Benchmark fleet trust: publish, sync, and loads deciding from the host's state.

    python bench/fleet_bench.py [--contents 100000] [--versions 4] [--runs 51] [--names 100]

* a full publish of a state with --contents trusted contents (--versions per
  name), then an incremental publish after one more trust, then a refresh;
* a host's first sync (a directory, every bin) and a sync with nothing new
  (bytes read);
* a host's first sync of --names names only (``sync --name``), bytes read;
* ``vtreg verify --fleet`` of the example plugin (whole process, median of 11)
  beside ``vtreg verify --key`` of the same plugin (no state at all);
* ``PluginLoader.load_plugin`` with ``FleetTrust`` vs a bare ``ctypes.CDLL``,
  in-process, warm (median of --runs distinct copies).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import build_example, vtreg_command
from vtreg.loader import PluginLoader
from vtreg.registry.fleet import FleetTrust
from vtreg.registry.fleet._signer import VtregSigner
from vtreg.registry.fleet.repository import (
    PublishResult,
    Repository,
    init_repository,
    publish,
    refresh,
)
from vtreg.registry.fleet.sync import sync
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState

DAY = timedelta(days=1)
T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _contents(count: int, versions: int, platform: str) -> list[TrustedContent]:
    return [
        TrustedContent(
            name=f"plugin-{i // versions}",
            version=f"1.{i % versions}.0",
            platform=platform,
            content_digest="sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
        )
        for i in range(count)
    ]


def _process_ms(argv: list[str], runs: int = 11) -> float:
    samples = []
    for i in range(runs + 2):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        if i >= 2:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contents", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=51)
    parser.add_argument("--names", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vtreg-fleet-bench-"))
    try:
        _run(work, args.contents, args.versions, args.runs, args.names)
    finally:
        shutil.rmtree(work)


def _run(work: Path, count: int, versions: int, runs: int, names: int) -> None:
    now = datetime.now(UTC)
    publisher = SigningKey.generate("alice")
    online = SigningKey.generate("online")
    roots = [SigningKey.generate("root")]
    hello = build_example(work)
    (hello / "plugin.sig").write_bytes(sign(capture(hello), publisher, at=now).envelope)
    example = capture(hello)
    from vtreg.verifier.signatures import verify

    verified = verify(example, [publisher.public_key], at=now)
    base = _contents(count - 1, versions, verified.platform)
    mine = TrustedContent("hello", verified.version, verified.platform, verified.content_digest)
    keys = [TrustedKey(publisher.public_key)]

    repo_dir = work / "repo"
    init_repository(repo_dir, roots, 1, online, str(work / "online.key"), expires=now + 365 * DAY)
    repo, signer = Repository(repo_dir), VtregSigner(online)

    def publish_state(state: TrustState) -> PublishResult:
        return publish(repo, state, signer, at=datetime.now(UTC), timestamp_expires=DAY,
                       snapshot_expires=7 * DAY, targets_expires=90 * DAY)  # fmt: skip

    full, _ = _timed(lambda: publish_state(TrustState.build(keys, [*base, mine])))
    extra = TrustedContent("hello", "9.0.0", verified.platform, "sha256:" + "e" * 64)
    incremental, written = _timed(
        lambda: publish_state(TrustState.build(keys, [*base, mine, extra]))
    )
    refreshed, _ = _timed(
        lambda: refresh(repo, signer, at=datetime.now(UTC), timestamp_expires=DAY)
    )
    size = sum(p.stat().st_size for p in repo_dir.iterdir())

    state = work / "host.state"
    root = (repo_dir / "1.root.json").read_bytes()
    first, first_result = _timed(
        lambda: sync(str(repo_dir), str(state), root=root, clock=datetime.now(UTC))
    )
    refresh(repo, signer, at=datetime.now(UTC), timestamp_expires=DAY)
    again, again_result = _timed(
        lambda: sync(str(repo_dir), str(state), root=None, clock=datetime.now(UTC))
    )

    # The example must decide as trusted: drop the extra, newer version's floor.
    publish_state(TrustState.build(keys, [*base, mine]))
    sync(str(repo_dir), str(state), root=None, clock=datetime.now(UTC))
    verify_ms = _process_ms([*vtreg_command(), "verify", str(hello), "--fleet", str(state)])
    key_file = work / "alice.pub"
    key_file.write_bytes(publisher.public_key.to_pem())
    key_ms = _process_ms([*vtreg_command(), "verify", str(hello), "--key", str(key_file)])
    few_state = work / "few.state"
    few = [f"plugin-{i}" for i in range(names - 1)] + ["hello"]
    few_result = sync(str(repo_dir), str(few_state), root=root, clock=datetime.now(UTC), names=few)

    copies = work / "copies"
    copies.mkdir()
    bare, loads = [], []
    library = next(hello.glob("lib*.so"))
    for i in range(runs):
        copy = copies / f"lib{i}.so"
        shutil.copy(library, copy)
        start = time.perf_counter()
        ctypes.CDLL(str(copy))
        bare.append(time.perf_counter() - start)
    trust = FleetTrust(state)
    trust.fleet_state()  # opened once, as a host process keeps it
    for i in range(runs):
        plugin = work / "plugins" / f"p{i}" / "hello"
        shutil.copytree(hello, plugin)
        plugin.parent.chmod(0o755)
        loader = PluginLoader(trust, None, [plugin.parent])
        start = time.perf_counter()
        loader.load_plugin(plugin)
        loads.append(time.perf_counter() - start)

    print(f"Fleet trust: {count:,} trusted contents ({versions} versions per name), 256 bins")
    print(f"{'operation':<60}{'figure':>14}")
    rows = [
        ("full publish (every bin, targets, snapshot, timestamp)", f"{full:.2f} s"),
        (
            f"incremental publish after one trust ({len(written.written)} files)",
            f"{incremental:.2f} s",
        ),
        ("refresh (timestamp only)", f"{refreshed * 1000:.1f} ms"),
        ("repository size", f"{size / 2**20:.1f} MiB"),
        ("host's first sync (every bin), bytes read", f"{first_result.downloaded / 2**20:.1f} MiB"),
        ("host's first sync, time", f"{first:.2f} s"),
        ("sync with nothing new, bytes read", f"{again_result.downloaded} B"),
        ("sync with nothing new, time", f"{again:.2f} s"),
        ("state file size", f"{state.stat().st_size / 2**20:.1f} MiB"),
        (
            f"first sync of {names} names only, bytes read",
            f"{few_result.downloaded / 2**20:.2f} MiB",
        ),
        ("vtreg verify --fleet, example (process, median of 11)", f"{verify_ms:.0f} ms"),
        ("vtreg verify --key, example (process, median of 11)", f"{key_ms:.0f} ms"),
        (f"bare ctypes.CDLL, example library ({runs})", f"{statistics.median(bare) * 1000:.3f} ms"),
        (
            f"load_plugin with FleetTrust, warm ({runs})",
            f"{statistics.median(loads) * 1000:.3f} ms",
        ),
        (
            "  added over bare CDLL",
            f"{(statistics.median(loads) - statistics.median(bare)) * 1000:.3f} ms",
        ),
    ]
    for name, figure in rows:
        print(f"{name:<60}{figure:>14}")


if __name__ == "__main__":
    main()
