"""Benchmark the audit log's Merkle tree: appends with tiles, proofs at a million events.

    python bench/tlog_bench.py [--appends 2000] [--leaves 1000000] [--events 50000]
                               [--requests 2000] [--pg URL]

In-process, warm, medians:

* an audit append (Registry.record: one event, its own transaction) with the
  tree, next to the append as it was before the tree (its statements, on a
  registry at migration 0007), in alternating rounds, on SQLite and, with
  --pg, PostgreSQL;
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
import functools
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
from alembic import command

from bench._common import scratch_dir
from vtreg.loader.protocols import AuditEvent
from vtreg.registry import audit, tlog
from vtreg.registry.db import alembic_config, connect
from vtreg.registry.models import AuditEvent as AuditRow
from vtreg.registry.models import AuditTile, ChainHead
from vtreg.registry.service import Registry
from vtreg.registry.statements import Cursor, Statements
from vtreg.verifier import merkle
from vtreg.verifier.audit_event import COLUMNS


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


_EVENT = AuditEvent("plugin.load", "allowed", plugin="hello", version="1.0.0", keyids=("k" * 64,))


def _appends(append: Callable[[], object], count: int) -> tuple[list[float], float]:
    """``count`` appends: each one's wall-clock seconds, and the CPU seconds of all."""
    samples, cpu = [], time.process_time()
    for _ in range(count):
        t = time.perf_counter()
        append()
        samples.append(time.perf_counter() - t)
    return samples, time.process_time() - cpu


# The append as it was before the tree (registry.audit.append at migration 0007 with its
# tile write left out): the event, its key rows and the head, one statement each, on the
# schema of then (no leaf column; audit_event_keys with a rowid on SQLite).
_KEYIDS = COLUMNS.index("keyids")


def _append_before_tree(
    cursor: Cursor, head: audit.ChainHeadState, event: AuditEvent, *, actor: str, at: datetime
) -> int:
    sql = cursor.sql
    seq = head.seq + 1
    if head.at is not None and at < head.at:
        at = head.at
    hashed = (seq, at, actor, *event.stored())
    digest = audit.chain_hash(head.hash, audit.canonical(*hashed))
    cursor.rows(_insert_before_tree(sql), (seq, sql.time_out(at), *hashed[2:], head.hash, digest))
    keyids = hashed[_KEYIDS].split()
    if keyids:
        cursor.many(sql.insert_key, [(k, seq) for k in keyids])
    cursor.rows(sql.move_head, (seq, digest))
    head.seq, head.hash, head.at = seq, digest, at
    return seq


@functools.cache
def _insert_before_tree(sql: Statements) -> str:
    marks = ", ".join(["?" if sql.sqlite else "%s"] * len(COLUMNS))
    return f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({marks})"  # noqa: S608


def _record_before_tree(registry: Registry) -> Callable[[], object]:
    """Registry.record as it was before the tree (for ``registry``, at migration 0007)."""

    def record() -> None:
        audit.append = _append_before_tree
        try:
            registry.record(_EVENT)
        finally:
            audit.append = _append

    return record


_append = audit.append


def _append_figures(url: str, before_url: str, count: int, rounds: int = 10) -> dict[str, float]:
    """Appends (Registry.record) with the tree on ``url``, and as before the tree on
    ``before_url`` (a registry at migration 0007), in alternating rounds: the median
    wall-clock and the mean CPU microseconds of each."""
    engine = connect(before_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0007")
    wall: dict[str, list[float]] = {"tree": [], "before": []}
    cpu = dict.fromkeys(wall, 0.0)
    before = Registry(engine, before_url)  # Registry.open would refuse the older schema
    try:
        with Registry.open(url) as registry:
            runs: dict[str, Callable[[], object]] = {
                "tree": lambda: registry.record(_EVENT),
                "before": _record_before_tree(before),
            }
            for run in runs.values():
                _appends(run, 300)  # warm
            for _ in range(rounds):
                for name, run in runs.items():
                    samples, seconds = _appends(run, count // rounds)
                    wall[name] += samples
                    cpu[name] += seconds
    finally:
        before.close()
    figures = {f"{name} wall": _median_us(samples) for name, samples in wall.items()}
    means = {f"{name} cpu": seconds * 1e6 / len(wall[name]) for name, seconds in cpu.items()}
    return figures | means


def _fill_tiles(url: str, leaves: int) -> None:
    """A tree of ``leaves`` leaves as the registry keeps it: its tiles, and the leaf hashes
    of the partial level-0 tile in (stand-in) event rows."""
    hashes = [hashlib.sha256(b"%d" % i).digest() for i in range(leaves)]
    full = leaves - leaves % merkle.TILE_WIDTH
    tiles = [
        {"level": k[0], "idx": k[1], "hashes": v}
        for k, v in merkle.tiles_of(hashes).items()
        if k[0] > 0 or (k[1] + 1) * merkle.TILE_WIDTH <= full
    ]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        {"seq": n + 1, "at": at, "actor": "bench", "action": "plugin.load", "outcome": "allowed",
         "keyids": "", "details": "{}", "prev_hash": "", "hash": "", "leaf": hashes[n]}
        for n in range(full, leaves)
    ]  # fmt: skip
    with Registry.open(url) as registry, registry.engine.begin() as connection:
        connection.execute(sa.insert(AuditTile), tiles)
        if events:
            connection.execute(sa.insert(AuditRow), events)
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
        _appends(lambda: registry.record(_EVENT), events - 1)
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


def _print_appends(engine: str, f: dict[str, float]) -> None:
    print(
        f"  {engine}: with the tree {f['tree wall']:.0f} / {f['tree cpu']:.0f}, "
        f"as before the tree {f['before wall']:.0f} / {f['before cpu']:.0f}"
    )


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
        print("append (us: median by the wall clock / mean CPU time of this process):")
        figures = _append_figures(
            f"sqlite:///{work / 'appends.db'}", f"sqlite:///{work / 'before.db'}", args.appends
        )
        _print_appends("SQLite", figures)
        if args.pg:
            with _scratch_postgres(args.pg) as url, _scratch_postgres(args.pg) as before:
                figures = _append_figures(url, before, args.appends)
            _print_appends("PostgreSQL", figures)
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
