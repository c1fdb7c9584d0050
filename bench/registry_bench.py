"""Benchmark the registry at scale: 1,000,000 trusted plugins and 1,000,000 audit events (SQLite).

    python bench/registry_bench.py [--plugins 1000000] [--events 1000000] [--db PATH]

Fills a fresh registry (schema from Alembic, rows through SQLAlchemy Core with
the production column types, a valid audit hash chain), then measures
in-process, warm:

* a trust lookup by content digest (Registry.lookup), median of 2,000, next to
  the same indexed SELECT through the bare sqlite3 module (the floor);
* `vtreg audit --plugin X --limit 50` (Registry.audit_events), median of 200;
* `vtreg audit verify` (Registry.verify_audit) throughput in events/s, next to
  hashing the same canonical bytes alone (the floor).

With --db PATH an existing filled registry is reused (it is filled if empty).

    python bench/registry_bench.py --many-versions 4000 [--runs 51]

measures instead, on a scratch registry, `trust` of a new version and `verify`
(Registry.trust, Registry.verify_plugin: decided while holding the write lock)
of examples/hello when its name has that many trusted versions, next to the
same for a name with one version and to the bare queries. It runs on a tree
from before migration 0003 too (no version key), for a before/after figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench._common import build_example, scratch_dir
from vtreg.registry import audit, models
from vtreg.registry.models import (
    AuditEvent,
    AuditEventKey,
    AuditTile,
    ChainHead,
    Key,
    Plugin,
    PluginSigner,
)
from vtreg.registry.service import Registry
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.manifest import SemVer
from vtreg.verifier.merkle import leaf_hash, tiles_of
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import PluginTree, capture

NAMES = 10_000
KEYS = 100
CHUNK = 20_000

# Before migration 0006 each row had one platform; since, plugin_platforms holds them.
_PER_ROW_PLATFORM = "platform" in Plugin.__table__.c


def _digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(b"plugin %d" % i).hexdigest()


def _fill(registry: Registry, plugins: int, events: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    keyids = _fill_keys(registry, start)
    _fill_plugins(registry, plugins, start, keyids)
    _fill_events(registry, plugins, events, start, keyids)


def _fill_keys(registry: Registry, start: datetime) -> list[str]:
    publics = [SigningKey.generate(f"publisher-{n}").public_key for n in range(KEYS)]
    with registry.engine.begin() as connection:
        connection.execute(
            sa.insert(Key),
            [
                {"keyid": p.keyid, "name": p.name, "public_key": p.raw, "scopes": "[]",
                 "added_at": start, "added_by": "bench@host"}
                for p in publics
            ],
        )  # fmt: skip
    return [p.keyid for p in publics]


def _fill_plugins(registry: Registry, plugins: int, start: datetime, keyids: list[str]) -> None:
    envelope = b"{" + b'"payload": "' + b"A" * 700 + b'"}'  # a realistic plugin.sig size
    for low in range(0, plugins, CHUNK):
        rows = range(low, min(plugins, low + CHUNK))
        with registry.engine.begin() as connection:
            connection.execute(
                sa.insert(Plugin),
                [
                    {"id": i + 1, "name": f"plugin-{i % NAMES}", "version": f"1.{i // NAMES}.0",
                     "content_digest": _digest(i),
                     **({"platform": "linux-x86_64"} if _PER_ROW_PLATFORM else {}),
                     "library": f"libplugin-{i % NAMES}.so", "envelope": envelope, "threshold": 1,
                     "pinned": False, "trusted_at": start, "trusted_by": "bench@host"}
                    for i in rows
                ],
            )  # fmt: skip
            connection.execute(
                sa.insert(PluginSigner),
                [{"plugin_id": i + 1, "keyid": keyids[i % KEYS]} for i in rows],
            )
            if not _PER_ROW_PLATFORM:
                connection.execute(
                    sa.insert(models.PluginPlatform),
                    [{"plugin_id": i + 1, "platform": "linux-x86_64"} for i in rows],
                )
        print(f"\r  plugins {rows[-1] + 1:>9,}", end="", flush=True)
    print()


def _event(seq: int, prev: str, plugins: int, start: datetime, keyids: list[str]) -> dict[str, Any]:
    """Audit event ``seq`` as a row, chained to the event whose hash is ``prev``."""
    at = start + timedelta(seconds=seq)
    i = seq % plugins
    name, version, digest = f"plugin-{i % NAMES}", f"1.{i // NAMES}.0", _digest(i)
    keyid = keyids[i % KEYS]
    action, outcome = ("plugin.load", "allowed") if seq % 7 else ("plugin.verify", "refused")
    reason = None if outcome == "allowed" else "rollback: older than the trusted version"
    fields = (seq, at, "bench@host", action, outcome, name, version, digest, keyid, reason, "{}")
    event = audit.canonical(*fields)
    return {
        "seq": seq, "at": at, "actor": "bench@host", "action": action, "outcome": outcome,
        "plugin": name, "version": version, "digest": digest, "keyids": keyid,
        "reason": reason, "details": "{}", "prev_hash": prev,
        "hash": audit.chain_hash(prev, event), "leaf": leaf_hash(event),
    }  # fmt: skip


def _fill_events(
    registry: Registry, plugins: int, events: int, start: datetime, keyids: list[str]
) -> None:
    prev = audit.GENESIS_HASH
    leaves = []  # the Merkle tree over the same events (migration 0005), stored at the end
    for low in range(0, events, CHUNK):
        batch = []
        for seq in range(low + 1, min(events, low + CHUNK) + 1):
            batch.append(_event(seq, prev, plugins, start, keyids))
            prev = batch[-1]["hash"]
            leaves.append(batch[-1].pop("leaf"))
        with registry.engine.begin() as connection:
            connection.execute(sa.insert(AuditEvent), batch)
            connection.execute(
                sa.insert(AuditEventKey), [{"keyid": e["keyids"], "seq": e["seq"]} for e in batch]
            )
            connection.execute(
                sa.update(ChainHead)
                .where(ChainHead.id == 1)
                .values(seq=batch[-1]["seq"], hash=prev)
            )
        print(f"\r  events  {batch[-1]['seq']:>9,}", end="", flush=True)
    tiles = [{"level": k[0], "idx": k[1], "hashes": v} for k, v in tiles_of(leaves).items()]
    with registry.engine.begin() as connection:
        for low in range(0, len(tiles), CHUNK):
            connection.execute(sa.insert(AuditTile), tiles[low : low + CHUNK])
    print()


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


@dataclass
class _Figures:
    """What main measured; samples in seconds."""

    lookups: list[float] = field(default_factory=list)
    raw_lookups: list[float] = field(default_factory=list)
    queries: list[float] = field(default_factory=list)
    keyed: list[float] = field(default_factory=list)
    cli_runs: list[float] = field(default_factory=list)
    events: int = 0
    verify_s: float = 0.0
    hash_only: float = 0.0  # events/s


def _fill_if_empty(registry: Registry, db: Path, plugins: int, events: int) -> None:
    with registry.engine.connect() as connection:
        have = connection.execute(sa.select(sa.func.count()).select_from(Plugin)).scalar_one()
    if have == 0:
        print(f"filling {db} ...")
        started = time.perf_counter()
        _fill(registry, plugins, events)
        print(f"  filled in {time.perf_counter() - started:.0f} s, "
              f"{db.stat().st_size / 2**20:.0f} MiB")  # fmt: skip
    # "Warm" means the file is in the page cache for every measurement below, the
    # vtreg ones and the floors alike, whatever ran on the machine before.
    with db.open("rb") as db_file:
        while db_file.read(16 << 20):
            pass


def _measure_lookups(registry: Registry, db: Path, digests: list[str], figures: _Figures) -> None:
    for d in digests[:100]:  # warm up
        registry.lookup(d)
    for d in digests:
        t = time.perf_counter()
        found = registry.lookup(d)
        figures.lookups.append(time.perf_counter() - t)
        if found is None:
            raise SystemExit(f"{d} is not in {db}: was it filled with fewer plugins?")
    raw = sqlite3.connect(db)
    for d in digests:
        t = time.perf_counter()
        raw.execute("SELECT * FROM plugins WHERE content_digest = ?", (d,)).fetchone()
        figures.raw_lookups.append(time.perf_counter() - t)


def _measure_audit_queries(
    registry: Registry, url: str, rng: random.Random, figures: _Figures
) -> None:
    names = [f"plugin-{rng.randrange(NAMES)}" for _ in range(200)]
    for name in names:
        t = time.perf_counter()
        events = registry.audit_events(plugin=name, limit=50)
        figures.queries.append(time.perf_counter() - t)
        if not events:
            raise SystemExit(f"no events for {name}")
    for _ in range(50):
        keyid = hashlib.sha256(b"key %d" % rng.randrange(KEYS)).hexdigest()
        t = time.perf_counter()
        registry.audit_events(keyid=keyid, limit=50)
        figures.keyed.append(time.perf_counter() - t)
    vtreg = Path(sys.executable).with_name("vtreg")
    if vtreg.exists():
        for name in names[:11]:
            t = time.perf_counter()
            subprocess.run(
                [str(vtreg), "audit", "--db", url, "--plugin", name, "--limit", "50"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            figures.cli_runs.append(time.perf_counter() - t)


def _measure_verify(registry: Registry, figures: _Figures) -> None:
    t = time.perf_counter()
    report = registry.verify_audit()
    figures.verify_s = time.perf_counter() - t
    if not report.ok:
        raise SystemExit(f"the filled chain does not verify: {report.problem}")
    figures.events = report.events
    with registry.engine.connect() as connection:
        rows = connection.execute(
            sa.select(*audit._stored_columns()[:11]).order_by(AuditEvent.seq).limit(200_000)
        ).all()
    blobs = [audit.canonical(*r) for r in rows]
    t = time.perf_counter()
    prev = audit.GENESIS_HASH
    for blob in blobs:
        prev = audit.chain_hash(prev, blob)
    figures.hash_only = len(blobs) / (time.perf_counter() - t)


def _print_figures(plugins: int, f: _Figures) -> None:
    def line(label: str, figure: str) -> None:
        print(f"{label:<58} {figure:>14}")

    title = f"{plugins:,} trusted plugins and {f.events:,} audit events (SQLite, warm)"
    print(f"\nRegistry with {title}")
    line("operation", "figure")
    line("trust lookup, Registry.lookup (median of 2,000)", f"{_median_ms(f.lookups):.3f} ms")
    line("  same indexed SELECT, bare sqlite3 (floor)", f"{_median_ms(f.raw_lookups):.3f} ms")
    line(
        "audit --plugin X --limit 50, in-process (median of 200)", f"{_median_ms(f.queries):.3f} ms"
    )
    line("audit --key K --limit 50, in-process (median of 50)", f"{_median_ms(f.keyed):.3f} ms")
    if f.cli_runs:
        line(
            "  vtreg audit --plugin X --limit 50, whole process (11)",
            f"{_median_ms(f.cli_runs):.1f} ms",
        )
    line("audit verify, Registry.verify_audit", f"{f.events / f.verify_s:,.0f} ev/s")
    line("  hashing the canonical bytes alone (floor)", f"{f.hash_only:,.0f} ev/s")
    print("\nTargets")
    for text, ok in (
        ("trust lookup under 1 ms median", _median_ms(f.lookups) < 1),
        ("audit --plugin X --limit 50 under 50 ms", _median_ms(f.queries) < 50),
        ("audit verify at least 100,000 events/s", f.events / f.verify_s >= 100_000),
    ):
        print(f"  [{'met' if ok else 'MISSED'}] {text}")


# --- many versions of one name ---


def _signed(plugin: Path, version: str, key: SigningKey) -> PluginTree:
    """``plugin`` at ``version``, freshly signed, captured."""
    manifest = plugin / "plugin.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": version}))
    (plugin / "plugin.sig").unlink(missing_ok=True)
    signed = sign(capture(plugin), key, at=datetime.now(UTC))
    (plugin / "plugin.sig").write_bytes(signed.envelope)
    return capture(plugin)


def _renamed(plugin: Path, name: str) -> Path:
    """A copy of examples/hello named ``name`` (trust and verify never load the library)."""
    copy = plugin.with_name(name)
    copy.mkdir()
    shutil.copyfile(plugin / "libhello.so", copy / f"lib{name}.so")
    manifest = json.loads((plugin / "plugin.json").read_text())
    (copy / "plugin.json").write_text(json.dumps({**manifest, "name": name}))
    return copy


def _version_rows(registry: Registry, name: str, platform: str, count: int) -> None:
    """``count`` trusted versions of ``name`` below 2.0.0, a tenth revoked, some prereleases."""
    rng = random.Random(27)  # noqa: S311 - picks versions, nothing secret
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        version = f"1.{i // 100}.{i % 100}" + ("-rc.1" if i % 7 == 0 else "")
        row = {"id": 10 + i, "name": name, "version": version,
               "content_digest": _digest(10**9 + i), "library": f"lib{name}.so", "envelope": b"{}",
               "threshold": 1, "pinned": False, "trusted_at": at, "trusted_by": "bench@host",
               "revoked_at": at if rng.random() < 0.1 else None}  # fmt: skip
        if "version_key" in Plugin.__table__.c:  # absent before migration 0003
            row["version_key"] = SemVer.parse(version).sort_key()
        if _PER_ROW_PLATFORM:
            row["platform"] = platform
        rows.append(row)
    with registry.engine.begin() as connection:
        connection.execute(sa.insert(Plugin), rows)
        if not _PER_ROW_PLATFORM:
            connection.exec_driver_sql(
                "INSERT INTO plugin_platforms (plugin_id, platform) SELECT id, ? FROM plugins "
                "WHERE id >= 10",
                (platform,),
            )


def _trust_and_verify(
    registry: Registry, plugin: Path, key: SigningKey, runs: int
) -> tuple[list[float], list[float]]:
    """Seconds per trust of a new version (each newer than the last), then per verify."""
    trusts: list[float] = []
    for k in range(runs):
        tree = _signed(plugin, f"2.0.{k}", key)
        t = time.perf_counter()
        registry.trust(tree)
        trusts.append(time.perf_counter() - t)
    verifies: list[float] = []
    for _ in range(runs):
        t = time.perf_counter()
        registry.verify_plugin(tree)
        verifies.append(time.perf_counter() - t)
    return trusts, verifies


def _bare_queries(db: Path, name: str, platform: str, runs: int) -> dict[str, list[float]]:
    """The name's rows (what a decision read before the index) and the floor query alone."""
    queries = {"every row of the name": "SELECT * FROM plugins WHERE name = ?"}
    raw = sqlite3.connect(db)
    if "version_key" in Plugin.__table__.c:
        queries["the floor query"] = (
            "SELECT version FROM plugins WHERE name = ? AND platform = ? "
            "AND revoked_at IS NULL ORDER BY version_key DESC LIMIT 1"
            if _PER_ROW_PLATFORM
            else "SELECT version FROM plugins WHERE name = ? AND EXISTS (SELECT 1 FROM "
            "plugin_platforms WHERE plugin_id = plugins.id AND platform = ?) "
            "AND revoked_at IS NULL ORDER BY version_key DESC LIMIT 1"
        )
    times: dict[str, list[float]] = {}
    for label, query in queries.items():
        params = (name,) if query.count("?") == 1 else (name, platform)
        times[label] = []
        for _ in range(runs):
            t = time.perf_counter()
            raw.execute(query, params).fetchall()
            times[label].append(time.perf_counter() - t)
    raw.close()
    return times


def _many_versions(versions: int, runs: int) -> None:
    key = SigningKey.generate("publisher")
    with scratch_dir() as scratch:
        work = Path(scratch)
        hello = build_example(work)
        solo = _renamed(hello, "solo")
        db = work / "registry.db"
        with Registry.open(f"sqlite:///{db}") as registry:
            registry.add_key(key.public_key)
            platform = registry.trust(_signed(hello, "1.99.99", key)).plugin.platform
            _version_rows(registry, "hello", platform, versions)
            one = _trust_and_verify(registry, solo, key, runs)
            many = _trust_and_verify(registry, hello, key, runs)
        bare = _bare_queries(db, "hello", platform, runs)

    def line(label: str, samples: list[float]) -> None:
        print(f"{label:<64} {_median_ms(samples):>8.3f} ms")

    print(f"\n{versions:,} trusted versions of one name (SQLite, medians of {runs})")
    line("trust of a new version, a name with one version", one[0])
    line(f"trust of a new version, a name with {versions:,} versions", many[0])
    line("verify, a name with one version", one[1])
    line(f"verify, a name with {versions:,} versions", many[1])
    for label, samples in bare.items():
        line(f"  {label}, bare sqlite3", samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse this SQLite file")
    parser.add_argument("--many-versions", type=int, metavar="N", help="see the docstring")
    parser.add_argument("--runs", type=int, default=51, help="with --many-versions")
    args = parser.parse_args()
    if args.many_versions:
        _many_versions(args.many_versions, args.runs)
        return

    scratch = None
    if args.db is None:
        scratch = tempfile.TemporaryDirectory(prefix="vtreg-bench-")
        args.db = Path(scratch.name) / "registry.db"
    url = f"sqlite:///{args.db}"
    figures = _Figures()
    with Registry.open(url) as registry:
        _fill_if_empty(registry, args.db, args.plugins, args.events)
        rng = random.Random(7)  # noqa: S311 - picks sample rows, nothing secret
        digests = [_digest(rng.randrange(args.plugins)) for _ in range(2_000)]
        _measure_lookups(registry, args.db, digests, figures)
        _measure_audit_queries(registry, url, rng, figures)
        _measure_verify(registry, figures)
    _print_figures(args.plugins, figures)
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    main()
