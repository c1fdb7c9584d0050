"""A registry with a log key, and the database owner's tools for rewriting its history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import CliResult, invoke_cli, ok
from vtreg.loader.protocols import AuditEvent
from vtreg.registry import audit
from vtreg.registry.db import connect
from vtreg.registry.service import Registry
from vtreg.registry.statements import Statements
from vtreg.verifier.audit_event import COLUMNS, HASHED_FIELDS, canonical
from vtreg.verifier.merkle import HASH_SIZE, TILE_WIDTH, leaf_hash, tiles_of

ORIGIN = "example.com/vtreg-audit"


@dataclass
class Log:
    """A registry at ``url`` whose audit log is signed by ``keys/log.key``."""

    url: str
    keys: Path
    home: Path
    vkey: str = ""

    def cli(self, *args: str | Path, db: bool = True) -> CliResult:
        extra: tuple[str | Path, ...] = ("--db", self.url) if db else ()
        return invoke_cli(*args, *extra, env={"VTREG_HOME": str(self.home)})

    def record(self, count: int, **fields: Any) -> None:
        with Registry.open(self.url) as registry:
            for i in range(count):
                registry.record(AuditEvent("plugin.load", "allowed", plugin=f"p{i}", **fields))

    def checkpoint(self, *args: str | Path) -> CliResult:
        return self.cli("audit", "checkpoint", "--key", self.keys / "log.key", *args)


@pytest.fixture
def log(database_url: str, tmp_path: Path) -> Log:
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("log", "witness", "witness2", "alice"):
        ok(invoke_cli("keygen", name, "--out", keys, "--unencrypted"))
    log = Log(database_url, keys, tmp_path / "home")
    log.home.mkdir(mode=0o700)
    init = ok(log.cli("audit", "init", "--key", keys / "log.key", "--origin", ORIGIN))
    log.vkey = init.stdout.strip()
    return log


def rewrite_history(url: str, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """What a database owner can do: change the events, then recompute every hash,
    the chain, the key index, the head, the leaf hashes and the Merkle tiles, so that all
    of them agree."""
    engine = connect(url)
    sql = Statements.of(engine)
    try:
        with engine.begin() as connection:
            rows = connection.execute(
                sa.text(f"SELECT {', '.join(COLUMNS)} FROM audit_events ORDER BY seq")
            )
            events = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
            events = edit(events)
            for table in ("audit_event_keys", "audit_events", "audit_tiles"):
                connection.execute(sa.text(f"DELETE FROM {table}"))
            prev, leaves = audit.GENESIS_HASH, []
            for seq, event in enumerate(events, start=1):
                event["seq"] = seq
                at = sql.time_in(event["at"])
                assert at is not None
                fields = [at if name == "at" else event[name] for name in HASHED_FIELDS]
                data = canonical(*fields)
                event.update(at=sql.time_out(at), prev_hash=prev, hash=audit.chain_hash(prev, data))
                prev = event["hash"]
                event["leaf"] = leaf_hash(data)
                leaves.append(event["leaf"])
                names = ", ".join((*COLUMNS, "leaf"))
                marks = ", ".join(f":{c}" for c in (*COLUMNS, "leaf"))
                connection.execute(
                    sa.text(f"INSERT INTO audit_events ({names}) VALUES ({marks})"), event
                )
                for keyid in event["keyids"].split():
                    connection.execute(
                        sa.text("INSERT INTO audit_event_keys (keyid, seq) VALUES (:k, :s)"),
                        {"k": keyid, "s": seq},
                    )
            for (level, n), data in tiles_of(leaves).items():
                if level == 0 and len(data) < TILE_WIDTH * HASH_SIZE:
                    continue  # the partial level-0 tile is the events' leaf hashes
                connection.execute(
                    sa.text("INSERT INTO audit_tiles (level, idx, hashes) VALUES (:l, :n, :h)"),
                    {"l": level, "n": n, "h": data},
                )
            connection.execute(
                sa.text("UPDATE audit_chain_head SET seq = :s, hash = :h"),
                {"s": len(events), "h": prev},
            )
    finally:
        engine.dispose()
