"""Benchmark fleet trust: publish, sync, and loads deciding from the host's state.

    python bench/fleet_bench.py [--contents 100000] [--versions 4] [--runs 51] [--names 100]
                                [--bin-bits N] [--names-only]

* a full publish of a state with --contents trusted contents (--versions per
  name), then an incremental publish after one more trust (the state of the one
  name touched, as ``Registry.publish_view`` reads it), then a refresh; each
  in wall and CPU time (user+sys of this process: the machine may be busy);
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
    BIN_PREFIX,
    PublishResult,
    Repository,
    init_repository,
    publish,
    refresh,
)
from vtreg.registry.fleet.sync import SyncResult, sync
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


def _cpu_timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """Wall and CPU (user+sys) seconds of ``fn``, and its result."""
    cpu = time.process_time()
    wall, result = _timed(fn)
    return wall, time.process_time() - cpu, result


def _contents(count: int, versions: int, platform: str) -> list[TrustedContent]:
    return [
        TrustedContent(
            name=f"plugin-{i // versions}",
            version=f"1.{i % versions}.0",
            platforms=(platform,),
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
    parser.add_argument(
        "--bin-bits", type=int, default=None, help="2^N hash bins (default: fleet init's, auto)."
    )
    parser.add_argument(
        "--names-only",
        action="store_true",
        help="Skip the host syncing every bin and the loads (for 1,000,000 contents).",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vtreg-fleet-bench-"))
    try:
        _run(work, args, args.contents)
    finally:
        shutil.rmtree(work)


def _run(work: Path, args: argparse.Namespace, count: int) -> None:
    versions, runs, names = args.versions, args.runs, args.names
    now = datetime.now(UTC)
    publisher = SigningKey.generate("alice")
    online = SigningKey.generate("online")
    hello = build_example(work)
    (hello / "plugin.sig").write_bytes(sign(capture(hello), publisher, at=now).envelope)
    from vtreg.verifier.signatures import verify

    verified = verify(capture(hello), [publisher.public_key], at=now)
    mine = TrustedContent("hello", verified.version, verified.platforms, verified.content_digest)
    keys = [TrustedKey(publisher.public_key)]
    repo_dir = work / "repo"
    init_repository(
        repo_dir, [SigningKey.generate("root")], 1, online, str(work / "online.key"),
        expires=now + 365 * DAY, bin_bits=args.bin_bits,
    )  # fmt: skip
    repo, signer = Repository(repo_dir), VtregSigner(online)

    def publish_state(state: TrustState, touched: frozenset[str] | None = None) -> PublishResult:
        return publish(repo, state, signer, at=datetime.now(UTC), timestamp_expires=DAY,
                       snapshot_expires=7 * DAY, targets_expires=90 * DAY, touched=touched,
                       seq=1)  # fmt: skip

    everything = TrustState.build(keys, [*_contents(count - 1, versions, verified.platform), mine])
    full, full_cpu, _ = _cpu_timed(lambda: publish_state(everything))
    extra = TrustedContent("hello", "9.0.0", verified.platforms, "sha256:" + "e" * 64)
    touched = TrustState.build(keys, [mine, extra], names=["hello"])
    incremental, incremental_cpu, written = _cpu_timed(
        lambda: publish_state(touched, frozenset({"hello"}))
    )
    refreshed, _ = _timed(
        lambda: refresh(repo, signer, at=datetime.now(UTC), timestamp_expires=DAY)
    )
    # The example must decide as trusted: drop the extra, newer version's floor.
    publish_state(TrustState.build(keys, [mine], names=["hello"]), frozenset({"hello"}))
    size = sum(p.stat().st_size for p in repo_dir.iterdir() if p.is_file())
    rows = [
        ("full publish (every bin, targets, snapshot, timestamp)", f"{full:.2f} s"),
        ("  CPU (user+sys)", f"{full_cpu:.2f} s"),
        (f"incremental publish after one trust ({len(written.written)} files)",
         f"{incremental:.2f} s"),
        ("  CPU (user+sys)", f"{incremental_cpu:.2f} s"),
        ("refresh (timestamp only)", f"{refreshed * 1000:.1f} ms"),
        ("repository size", f"{size / 2**20:.1f} MiB"),
        *_few(work, repo, signer, names),
    ]  # fmt: skip
    if not args.names_only:
        rows += _host(work, repo, signer, hello, publisher, runs)
    meta = current.snapshot.signed.meta if (current := repo.current()) else {}
    bins = sum(1 for name in meta if name.startswith(f"{BIN_PREFIX}-"))
    print(f"Fleet trust: {count:,} trusted contents ({versions} versions per name), {bins} bins")
    print(f"{'operation':<60}{'figure':>14}")
    for name, figure in rows:
        print(f"{name:<60}{figure:>14}")


def _sync(repo: Repository, state: Path, **kwargs: object) -> tuple[float, SyncResult]:
    root = (repo.path / "1.root.json").read_bytes()
    return _timed(
        lambda: sync(str(repo.path), str(state), root=root, clock=datetime.now(UTC), **kwargs)  # type: ignore[arg-type]
    )


def _few(work: Path, repo: Repository, signer: VtregSigner, names: int) -> list[tuple[str, str]]:
    """A host that loads ``names`` plugins: its first sync, and one with nothing new."""
    state = work / "few.state"
    few = [f"plugin-{i}" for i in range(names - 1)] + ["hello"]
    first, result = _sync(repo, state, names=few)
    refresh(repo, signer, at=datetime.now(UTC), timestamp_expires=DAY)
    again, unchanged = _sync(repo, state, names=few)
    return [
        (f"first sync of {names} names only (sync --name), bytes read",
         f"{result.downloaded / 2**20:.2f} MiB"),
        (f"first sync of {names} names only, time", f"{first:.2f} s"),
        (f"sync of {names} names with nothing new, bytes read", f"{unchanged.downloaded} B"),
        (f"sync of {names} names with nothing new, time", f"{again:.2f} s"),
    ]  # fmt: skip


def _host(
    work: Path,
    repo: Repository,
    signer: VtregSigner,
    hello: Path,
    publisher: SigningKey,
    runs: int,
) -> list[tuple[str, str]]:
    """A host that syncs every bin, then its loads."""
    state = work / "host.state"
    first, first_result = _sync(repo, state)
    refresh(repo, signer, at=datetime.now(UTC), timestamp_expires=DAY)
    again, again_result = _sync(repo, state)
    verify_ms = _process_ms([*vtreg_command(), "verify", str(hello), "--fleet", str(state)])
    key_file = work / "alice.pub"
    key_file.write_bytes(publisher.public_key.to_pem())
    key_ms = _process_ms([*vtreg_command(), "verify", str(hello), "--key", str(key_file)])
    bare, loads, decide = _loads(work, hello, state, runs)
    return [
        ("host's first sync (every bin), bytes read", f"{first_result.downloaded / 2**20:.1f} MiB"),
        ("host's first sync, time", f"{first:.2f} s"),
        ("sync with nothing new, bytes read", f"{again_result.downloaded} B"),
        ("sync with nothing new, time", f"{again:.2f} s"),
        ("state file size", f"{state.stat().st_size / 2**20:.1f} MiB"),
        ("vtreg verify --fleet, example (process, median of 11)", f"{verify_ms:.0f} ms"),
        ("vtreg verify --key, example (process, median of 11)", f"{key_ms:.0f} ms"),
        (f"FleetTrust.state_for, warm ({runs})", f"{decide * 1000:.3f} ms"),
        (f"bare ctypes.CDLL, example library ({runs})", f"{bare * 1000:.3f} ms"),
        (f"load_plugin with FleetTrust, warm ({runs})", f"{loads * 1000:.3f} ms"),
        ("  added over bare CDLL", f"{(loads - bare) * 1000:.3f} ms"),
    ]


def _loads(work: Path, hello: Path, state: Path, runs: int) -> tuple[float, float, float]:
    """Medians: a bare CDLL of a fresh copy, a load deciding from ``state``, the trust read."""
    copies = work / "copies"
    copies.mkdir()
    bare, loads, decide = [], [], []
    library = next(hello.glob("lib*.so"))
    for i in range(runs):
        copy = copies / f"lib{i}.so"
        shutil.copy(library, copy)
        start = time.perf_counter()
        ctypes.CDLL(str(copy))
        bare.append(time.perf_counter() - start)
    trust = FleetTrust(state)
    trust.fleet_state()  # opened once, as a host process keeps it
    envelope = (hello / "plugin.sig").read_bytes()
    for i in range(runs):
        plugin = work / "plugins" / f"p{i}" / "hello"
        shutil.copytree(hello, plugin)
        plugin.parent.chmod(0o755)
        loader = PluginLoader(trust, None, [plugin.parent])
        start = time.perf_counter()
        loader.load_plugin(plugin)
        loads.append(time.perf_counter() - start)
        start = time.perf_counter()
        trust.state_for(envelope)
        decide.append(time.perf_counter() - start)
    return statistics.median(bare), statistics.median(loads), statistics.median(decide)


if __name__ == "__main__":
    main()
