"""The Merkle tiles are written with each event, on both engines, and built by the migration."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from pymerkle import InmemoryTree

from vtreg.loader.protocols import AuditEvent
from vtreg.registry import audit
from vtreg.registry.db import alembic_config, connect, ensure_schema
from vtreg.registry.service import Registry
from vtreg.registry.statements import Statements
from vtreg.registry.tlog import TreeReader, event_leaves
from vtreg.verifier import merkle
from vtreg.verifier.audit_event import HASHED_FIELDS, canonical
from vtreg.verifier.errors import RegistryError


def _event_bytes(registry: Registry) -> list[bytes]:
    columns = ", ".join(HASHED_FIELDS)
    with registry.engine.connect() as connection:
        rows = connection.execute(sa.text(f"SELECT {columns} FROM audit_events ORDER BY seq"))
        return [canonical(*row) for row in rows]


def _stored_tiles(engine: sa.Engine) -> dict[tuple[int, int], bytes]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT level, idx, hashes FROM audit_tiles"))
        return {(level, n): bytes(data) for level, n, data in rows}


def _record(registry: Registry, count: int) -> None:
    for i in range(count):
        registry.record(
            AuditEvent("plugin.load", "allowed", plugin=f"p{i % 7}", keyids=("k" * 64,))
        )


def test_every_append_extends_the_tiles_in_its_transaction(registry: Registry) -> None:
    _record(registry, 600)  # two full level-0 tiles and the level-1 tile above them
    events = _event_bytes(registry)
    assert len(events) == 600
    assert _stored_tiles(registry.engine) == merkle.tiles_of(map(merkle.leaf_hash, events))
    reference = InmemoryTree(algorithm="sha256")
    for event in events:
        reference.append_entry(event)
    with registry.engine.connect() as connection:
        tree = TreeReader(connection)
        assert tree.size() == 600
        for size in (1, 255, 256, 257, 512, 600):
            assert tree.root(size) == reference.get_root(size)
        edge = tree.edge(300)
        for leaf in event_leaves(connection, 300, 600):
            edge.append(leaf)
        assert edge.root() == reference.get_root(600)


def test_a_refused_decision_and_a_change_are_leaves_too(registry: Registry) -> None:
    registry.record(AuditEvent("plugin.load", "refused", reason="unsigned"))
    registry.record(AuditEvent("key.add", "ok"))
    first, second = map(merkle.leaf_hash, _event_bytes(registry))
    with registry.engine.connect() as connection:
        assert TreeReader(connection).root(2) == merkle.node_hash(first, second)


def test_an_append_refuses_tiles_out_of_step_with_the_log(registry: Registry) -> None:
    _record(registry, 3)
    with registry.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM audit_tiles"))
    with pytest.raises(RegistryError, match="out of step"):
        _record(registry, 1)
    with registry.engine.connect() as connection:  # nothing of the refused append was kept
        assert connection.execute(sa.text("SELECT count(*) FROM audit_events")).scalar() == 3


def _events_at_revision_3(engine: sa.Engine, count: int) -> list[bytes]:
    """A valid chain as vtreg wrote it before the tree existed; its canonical bytes."""
    prev, written = audit.GENESIS_HASH, []
    sql = Statements.of(engine)
    with engine.begin() as connection:
        for seq in range(1, count + 1):
            at = datetime(2026, 1, 1, 0, 0, seq % 60, seq, tzinfo=UTC)
            fields = (seq, at, "old@host", "key.add", "ok", None, None, None, "", None, "{}")
            event = canonical(*fields)
            digest = audit.chain_hash(prev, event)
            connection.execute(
                sa.text(
                    "INSERT INTO audit_events (seq, at, actor, action, outcome, keyids, details,"
                    " prev_hash, hash) VALUES (:seq, :at, 'old@host', 'key.add', 'ok', '', '{}',"
                    " :prev, :hash)"
                ),
                {"seq": seq, "at": sql.time_out(at), "prev": prev, "hash": digest},
            )
            connection.execute(
                sa.text("UPDATE audit_chain_head SET seq = :seq, hash = :hash"),
                {"seq": seq, "hash": digest},
            )
            prev = digest
            written.append(event)
    return written


def test_the_migration_builds_the_tree_of_an_existing_log(database_url: str) -> None:
    engine = connect(database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0003")
        events = _events_at_revision_3(engine, 300)
        ensure_schema(engine, upgrade=True)
        assert _stored_tiles(engine) == merkle.tiles_of(map(merkle.leaf_hash, events))
    finally:
        engine.dispose()
    with Registry.open(database_url) as registry:  # and the live path carries on from there
        registry.record(AuditEvent("key.add", "ok"))
        events = _event_bytes(registry)
        assert _stored_tiles(registry.engine) == merkle.tiles_of(map(merkle.leaf_hash, events))
        assert registry.verify_audit().ok
