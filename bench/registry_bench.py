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
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from vtreg.registry import audit
from vtreg.registry.models import AuditEvent, AuditEventKey, ChainHead, Key, Plugin, PluginSigner
from vtreg.registry.service import Registry
from vtreg.verifier.keys import SigningKey

NAMES = 10_000
KEYS = 100
CHUNK = 20_000


def _digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(b"plugin %d" % i).hexdigest()


def _fill(registry: Registry, plugins: int, events: int) -> None:
    envelope = b"{" + b'"payload": "' + b"A" * 700 + b'"}'  # a realistic plugin.sig size
    start = datetime(2026, 1, 1, tzinfo=UTC)
    publics = [SigningKey.generate(f"publisher-{n}").public_key for n in range(KEYS)]
    keyids = [p.keyid for p in publics]
    with registry.engine.begin() as connection:
        connection.execute(
            sa.insert(Key),
            [
                {"keyid": p.keyid, "name": p.name, "public_key": p.raw, "scopes": "[]",
                 "added_at": start, "added_by": "bench@host"}
                for p in publics
            ],
        )  # fmt: skip
    for low in range(0, plugins, CHUNK):
        rows = range(low, min(plugins, low + CHUNK))
        with registry.engine.begin() as connection:
            connection.execute(
                sa.insert(Plugin),
                [
                    {"id": i + 1, "name": f"plugin-{i % NAMES}", "version": f"1.{i // NAMES}.0",
                     "content_digest": _digest(i), "platform": "linux-x86_64",
                     "library": f"libplugin-{i % NAMES}.so", "envelope": envelope, "threshold": 1,
                     "pinned": False, "trusted_at": start, "trusted_by": "bench@host"}
                    for i in rows
                ],
            )  # fmt: skip
            connection.execute(
                sa.insert(PluginSigner),
                [{"plugin_id": i + 1, "keyid": keyids[i % KEYS]} for i in rows],
            )
        print(f"\r  plugins {rows[-1] + 1:>9,}", end="", flush=True)
    print()
    prev = audit.GENESIS_HASH
    for low in range(0, events, CHUNK):
        batch, key_rows = [], []
        for seq in range(low + 1, min(events, low + CHUNK) + 1):
            at = start + timedelta(seconds=seq)
            i = seq % plugins
            name, version, digest = f"plugin-{i % NAMES}", f"1.{i // NAMES}.0", _digest(i)
            keyid = keyids[i % KEYS]
            action, outcome = (
                ("plugin.load", "allowed") if seq % 7 else ("plugin.verify", "refused")
            )
            reason = None if outcome == "allowed" else "rollback: older than the trusted version"
            fields = (
                seq,
                at,
                "bench@host",
                action,
                outcome,
                name,
                version,
                digest,
                keyid,
                reason,
                "{}",
            )
            digest_hash = audit.chain_hash(prev, audit.canonical(*fields))
            batch.append(
                {"seq": seq, "at": at, "actor": "bench@host", "action": action, "outcome": outcome,
                 "plugin": name, "version": version, "digest": digest, "keyids": keyid,
                 "reason": reason, "details": "{}", "prev_hash": prev, "hash": digest_hash}
            )  # fmt: skip
            key_rows.append({"keyid": keyid, "seq": seq})
            prev = digest_hash
        with registry.engine.begin() as connection:
            connection.execute(sa.insert(AuditEvent), batch)
            connection.execute(sa.insert(AuditEventKey), key_rows)
            connection.execute(
                sa.update(ChainHead)
                .where(ChainHead.id == 1)
                .values(seq=batch[-1]["seq"], hash=prev)
            )
        print(f"\r  events  {batch[-1]['seq']:>9,}", end="", flush=True)
    print()


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse this SQLite file")
    args = parser.parse_args()

    scratch = None
    if args.db is None:
        scratch = tempfile.TemporaryDirectory(prefix="vtreg-bench-")
        args.db = Path(scratch.name) / "registry.db"
    url = f"sqlite:///{args.db}"
    with Registry.open(url) as registry:
        with registry.engine.connect() as connection:
            have = connection.execute(sa.select(sa.func.count()).select_from(Plugin)).scalar_one()
        if have == 0:
            print(f"filling {args.db} ...")
            started = time.perf_counter()
            _fill(registry, args.plugins, args.events)
            print(f"  filled in {time.perf_counter() - started:.0f} s, "
                  f"{args.db.stat().st_size / 2**20:.0f} MiB")  # fmt: skip

        # "Warm" means the file is in the page cache for every measurement below, the
        # vtreg ones and the floors alike, whatever ran on the machine before.
        with args.db.open("rb") as db_file:
            while db_file.read(16 << 20):
                pass

        rng = random.Random(7)  # noqa: S311 - picks sample rows, nothing secret
        digests = [_digest(rng.randrange(args.plugins)) for _ in range(2_000)]
        for d in digests[:100]:  # warm up
            registry.lookup(d)
        lookups = []
        for d in digests:
            t = time.perf_counter()
            found = registry.lookup(d)
            lookups.append(time.perf_counter() - t)
            if found is None:
                raise SystemExit(f"{d} is not in {args.db}: was it filled with fewer plugins?")
        raw = sqlite3.connect(args.db)
        raw_lookups = []
        for d in digests:
            t = time.perf_counter()
            raw.execute("SELECT * FROM plugins WHERE content_digest = ?", (d,)).fetchone()
            raw_lookups.append(time.perf_counter() - t)

        names = [f"plugin-{rng.randrange(NAMES)}" for _ in range(200)]
        queries = []
        for name in names:
            t = time.perf_counter()
            events = registry.audit_events(plugin=name, limit=50)
            queries.append(time.perf_counter() - t)
            if not events:
                raise SystemExit(f"no events for {name}")
        keyed = []
        for _ in range(50):
            keyid = hashlib.sha256(b"key %d" % rng.randrange(KEYS)).hexdigest()
            t = time.perf_counter()
            registry.audit_events(keyid=keyid, limit=50)
            keyed.append(time.perf_counter() - t)

        vtreg = Path(sys.executable).with_name("vtreg")
        cli_runs = []
        if vtreg.exists():
            for name in names[:11]:
                t = time.perf_counter()
                subprocess.run(
                    [str(vtreg), "audit", "--db", url, "--plugin", name, "--limit", "50"],
                    check=True, stdout=subprocess.DEVNULL,
                )  # fmt: skip
                cli_runs.append(time.perf_counter() - t)

        t = time.perf_counter()
        report = registry.verify_audit()
        verify_s = time.perf_counter() - t
        if not report.ok:
            raise SystemExit(f"the filled chain does not verify: {report.problem}")

        with registry.engine.connect() as connection:
            rows = connection.execute(
                sa.select(*audit._COLUMNS[:11]).order_by(AuditEvent.seq).limit(200_000)
            ).all()
        blobs = [audit.canonical(*r) for r in rows]
        t = time.perf_counter()
        prev = audit.GENESIS_HASH
        for blob in blobs:
            prev = audit.chain_hash(prev, blob)
        hash_only = len(blobs) / (time.perf_counter() - t)

    def line(label: str, figure: str) -> None:
        print(f"{label:<58} {figure:>14}")

    title = f"{args.plugins:,} trusted plugins and {report.events:,} audit events (SQLite, warm)"
    print(f"\nRegistry with {title}")
    line("operation", "figure")
    line("trust lookup, Registry.lookup (median of 2,000)", f"{_median_ms(lookups):.3f} ms")
    line("  same indexed SELECT, bare sqlite3 (floor)", f"{_median_ms(raw_lookups):.3f} ms")
    line("audit --plugin X --limit 50, in-process (median of 200)", f"{_median_ms(queries):.3f} ms")
    line("audit --key K --limit 50, in-process (median of 50)", f"{_median_ms(keyed):.3f} ms")
    if cli_runs:
        line(
            "  vtreg audit --plugin X --limit 50, whole process (11)",
            f"{_median_ms(cli_runs):.1f} ms",
        )
    line("audit verify, Registry.verify_audit", f"{report.events / verify_s:,.0f} ev/s")
    line("  hashing the canonical bytes alone (floor)", f"{hash_only:,.0f} ev/s")
    print("\nTargets")
    for text, ok in (
        ("trust lookup under 1 ms median", _median_ms(lookups) < 1),
        ("audit --plugin X --limit 50 under 50 ms", _median_ms(queries) < 50),
        ("audit verify at least 100,000 events/s", report.events / verify_s >= 100_000),
    ):
        print(f"  [{'met' if ok else 'MISSED'}] {text}")
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    main()
