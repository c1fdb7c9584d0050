"""Benchmark the audit log's Merkle tree: appends with tiles, proofs at a million events.

    python bench/tlog_bench.py [--appends 2000] [--leaves 1000000] [--events 50000]
                               [--requests 2000] [--pg URL]

In-process, warm, medians:

* an audit append (Registry.record: one event, its own transaction) with the
  tiles written, next to the same append with the tile write left out (the
  append as it was before the tree), on SQLite and, with --pg, PostgreSQL;
* on a SQLite registry whose tiles hold a tree of --leaves leaves: an
  inclusion proof (generated from the stored tiles, then verified) and a
  consistency proof between two sizes near the end, generated and verified;
* `vtreg audit verify` on a log of --events events: the chain walk alone, and with
  `--checkpoint` (the tree recomputed from the events in the same pass), in events/s;
* a witness (the `vtreg witness serve` server, in this process) answering
  add-checkpoint over loopback HTTP/1.1 keep-alive, one client, in requests/s.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import random
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def _verify_figures(url: str, events: int, work: Path, runs: int = 3) -> dict[str, float]:
    """`vtreg audit verify` (the chain walk) and `... --checkpoint` (the chain walk with the
    tree recomputed in the same pass, then the checkpoint judged), in events/s: the medians
    of ``runs`` alternating runs, by the wall clock and by this process's CPU time."""
    from vtreg.registry.checkpoints import init_log, sign_checkpoint
    from vtreg.registry.monitor import walk_log
    from vtreg.verifier.keys import SigningKey
    from vtreg.verifier.note import NoteVerifier
    from vtreg.verifier.policy import Policy

    key = SigningKey.generate()
    samples: dict[str, list[float]] = {}

    def timed(name: str, run: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        samples.setdefault(f"{name} wall", []).append(events / (time.perf_counter() - wall))
        samples.setdefault(f"{name} cpu", []).append(events / (time.process_time() - cpu))

    with Registry.open(url) as registry:
        init_log(registry, key, "bench.example/log", work / "signer.json")
        _appends(registry, events - 1)
        note = sign_checkpoint(registry, key, work / "signer.json", at=datetime.now(UTC))
        if note is None or not registry.verify_audit().ok:
            raise SystemExit("the bench log did not verify")
        policy = Policy((NoteVerifier.parse(_vkey(key)),))
        for run in range(runs):

            def checkpoint(state: Path = work / f"verifier-{run}") -> None:
                walked = walk_log(registry, note.to_bytes(), policy, state)
                if not walked.chain.ok:
                    raise SystemExit("the bench log did not verify")
                walked.judge()

            timed("chain", registry.verify_audit)
            timed("checkpoint", checkpoint)
    return {name: statistics.median(values) for name, values in samples.items()}


def _vkey(key: Any) -> str:
    from vtreg.verifier.note import ED25519, NoteVerifier

    return NoteVerifier("bench.example/log", ED25519, key.public_key).vkey


def _witness_rate(requests: int, work: Path) -> float:
    import http.client

    from vtreg.registry.witness import Witness, serve
    from vtreg.verifier.keys import SigningKey
    from vtreg.verifier.note import Checkpoint, Note, NoteVerifier, sign_note

    log_key = SigningKey.generate()
    log = NoteVerifier.parse(_vkey(log_key))
    (work / "witness").mkdir()
    server = serve(
        Witness(SigningKey.generate(), "w.example", [log], work / "witness"), "127.0.0.1", 0
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(requests + 1)]
    tiles = merkle.tiles_of(leaves)
    read = merkle.tile_hash_reader(lambda level, n: tiles[level, n])
    bodies = []
    for size in range(1, requests + 1):
        text = Checkpoint(log.name, size, merkle.subtree_hash(read, 0, size)).text()
        note = Note(text, (sign_note(text, log_key, log.name),)).to_bytes()
        proof = merkle.consistency_proof(read, size - 1, size)
        lines = [f"old {size - 1}", *(base64.b64encode(h).decode() for h in proof)]
        bodies.append(("\n".join(lines) + "\n\n").encode() + note)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
    t = time.perf_counter()
    for body in bodies:
        connection.request("POST", "/add-checkpoint", body)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"the witness answered {response.status}")
    rate = requests / (time.perf_counter() - t)
    connection.close()
    server.shutdown()
    server.server_close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=501)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=2000)
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
        rates = _verify_figures(f"sqlite:///{work / 'verify.db'}", args.events, work)
        print(f"audit verify of {args.events:,} events (events/s, by wall clock / by CPU time):")
        print(f"  the chain alone {rates['chain wall']:,.0f} / {rates['chain cpu']:,.0f},")
        print(
            f"  --checkpoint (the chain and the tree in one pass) {rates['checkpoint wall']:,.0f}"
            f" / {rates['checkpoint cpu']:,.0f}"
        )
        rate = _witness_rate(args.requests, work)
        print(f"witness: {rate:,.0f} add-checkpoint requests/s (loopback, keep-alive)")


if __name__ == "__main__":
    main()
