"""Benchmark the audit log's Merkle tree: appends with tiles, proofs at a million events.

    python bench/tlog_bench.py [--appends 2000] [--leaves 1000000] [--pg URL]

In-process, warm, medians:

* an audit append (Registry.record: one event, its own transaction) with the
  tiles written, next to the same append with the tile write left out (the
  append as it was before the tree), on SQLite and, with --pg, PostgreSQL;
* on a SQLite registry whose tiles hold a tree of --leaves leaves: an
  inclusion proof (generated from the stored tiles, then verified) and a
  consistency proof between two sizes near the end, generated and verified.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench._common import scratch_dir
from vtreg.loader.protocols import AuditEvent
from vtreg.registry import tlog
from vtreg.registry.models import AuditTile, ChainHead
from vtreg.registry.service import Registry
from vtreg.verifier import merkle


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def _appends(registry: Registry, count: int) -> list[float]:
    event = AuditEvent(
        "plugin.load", "allowed", plugin="hello", version="1.0.0", keyids=("k" * 64,)
    )
    samples = []
    for _ in range(count):
        t = time.perf_counter()
        registry.record(event)
        samples.append(time.perf_counter() - t)
    return samples


def _append_figures(url: str, count: int) -> tuple[float, float]:
    with Registry.open(url) as registry:
        _appends(registry, 300)  # warm
        with_tiles = _appends(registry, count)
        saved: Callable[..., None] = tlog.add_leaf
        tlog.add_leaf = lambda *args: None  # the append as it was before the tree
        try:
            without = _appends(registry, count)
        finally:
            tlog.add_leaf = saved
    return _median_us(with_tiles), _median_us(without)


def _fill_tiles(url: str, leaves: int) -> None:
    hashes = (hashlib.sha256(b"%d" % i).digest() for i in range(leaves))
    tiles = [{"level": k[0], "idx": k[1], "hashes": v} for k, v in merkle.tiles_of(hashes).items()]
    with Registry.open(url) as registry, registry.engine.begin() as connection:
        connection.execute(sa.insert(AuditTile), tiles)
        connection.execute(sa.update(ChainHead).values(seq=leaves))


def _proof_figures(url: str, leaves: int, runs: int) -> tuple[float, float]:
    rng = random.Random(7)  # noqa: S311 - which leaves are proved, not a secret
    inclusion, consistency = [], []
    with Registry.open(url) as registry, registry.engine.connect() as connection:
        connection = connection.execution_options(vtreg_read_only=True)
        roots = {n: tlog.TreeReader(connection).root(n) for n in (leaves - 1000, leaves)}
        for _ in range(runs):
            index = rng.randrange(leaves)
            leaf = hashlib.sha256(b"%d" % index).digest()
            t = time.perf_counter()
            tree = tlog.TreeReader(connection)  # a fresh reader: no tile cached
            proof = tree.inclusion(index, leaves)
            merkle.verify_inclusion(index, leaves, leaf, proof, roots[leaves])
            inclusion.append(time.perf_counter() - t)
            t = time.perf_counter()
            tree = tlog.TreeReader(connection)
            proof = tree.consistency(leaves - 1000, leaves)
            merkle.verify_consistency(
                leaves - 1000, leaves, roots[leaves - 1000], roots[leaves], proof
            )
            consistency.append(time.perf_counter() - t)
    return _median_us(inclusion), _median_us(consistency)


@contextlib.contextmanager
def _scratch_postgres(server: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server ``server``, dropped afterwards."""
    name = f"vtreg_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=501)
    parser.add_argument("--pg", metavar="URL", help="also measure appends on this PostgreSQL")
    args = parser.parse_args()
    with scratch_dir() as name:
        work = Path(name)
        with_tiles, without = _append_figures(f"sqlite:///{work / 'appends.db'}", args.appends)
        print(f"append (SQLite): {with_tiles:.0f} us with tiles, {without:.0f} us without")
        if args.pg:
            with _scratch_postgres(args.pg) as url:
                with_tiles, without = _append_figures(url, args.appends)
            print(f"append (PostgreSQL): {with_tiles:.0f} us with tiles, {without:.0f} us without")
        url = f"sqlite:///{work / 'proofs.db'}"
        _fill_tiles(url, args.leaves)
        inclusion, consistency = _proof_figures(url, args.leaves, args.runs)
        print(
            f"at {args.leaves:,} leaves: inclusion proof generated + verified {inclusion:.0f} us,"
        )
        print(
            f"  consistency proof ({args.leaves - 1000:,} -> {args.leaves:,}) {consistency:.0f} us"
        )


if __name__ == "__main__":
    main()
