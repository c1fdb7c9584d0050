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


def _tile_rows(events: list[bytes]) -> dict[tuple[int, int], bytes]:
    """The rows of audit_tiles for ``events``: every tile but the partial one of level 0."""
    tiles = merkle.tiles_of(map(merkle.leaf_hash, events))
    return {
        key: data
        for key, data in tiles.items()
        if key[0] > 0 or len(data) == merkle.TILE_WIDTH * merkle.HASH_SIZE
    }


def _stored_leaves(engine: sa.Engine) -> list[bytes | None]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT leaf FROM audit_events ORDER BY seq"))
        return [None if leaf is None else bytes(leaf) for (leaf,) in rows]


def _record(registry: Registry, count: int) -> None:
    for i in range(count):
        registry.record(
            AuditEvent("plugin.load", "allowed", plugin=f"p{i % 7}", keyids=("k" * 64,))
        )


def test_every_append_extends_the_tiles_in_its_transaction(registry: Registry) -> None:
    _record(registry, 600)  # two full level-0 tiles and the level-1 tile above them
    events = _event_bytes(registry)
    assert len(events) == 600
    assert _stored_tiles(registry.engine) == _tile_rows(events)
    assert _stored_leaves(registry.engine) == list(map(merkle.leaf_hash, events))
    reference = InmemoryTree(algorithm="sha256")
    for event in events:
        reference.append_entry(event)
    with registry.engine.connect() as connection:
        tree = TreeReader(connection)
        assert tree.size() == 600
        for size in (1, 255, 256, 257, 512, 600):
            assert tree.root(size) == reference.get_root(size)
        # The partial level-0 tile, read from its events, as tlog-tiles has it.
        assert tree.tile(0, 2) == merkle.tiles_of(map(merkle.leaf_hash, events))[0, 2]
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


@pytest.mark.parametrize(
    ("before", "edit"),
    [
        pytest.param(3, "UPDATE audit_events SET leaf = NULL WHERE seq = 2", id="leaf-erased"),
        pytest.param(3, "UPDATE audit_events SET leaf = NULL WHERE seq = 3", id="last-leaf-erased"),
        pytest.param(3, "DELETE FROM audit_events WHERE seq = 2", id="event-deleted"),
        pytest.param(259, "DELETE FROM audit_tiles", id="tiles-deleted"),
    ],
)
def test_an_append_refuses_tiles_out_of_step_with_the_log(
    registry: Registry, before: int, edit: str
) -> None:
    _record(registry, before)
    with registry.engine.begin() as connection:
        if edit.startswith("DELETE FROM audit_events"):
            connection.execute(sa.text("DELETE FROM audit_event_keys WHERE seq = 2"))
        connection.execute(sa.text(edit))
    # The next tile filled (event 256, or 512) finds the tree out of step, and refuses.
    fills = 256 * (before // 256 + 1)
    _record(registry, fills - before - 1)
    with registry.engine.connect() as connection:
        kept = connection.execute(sa.text("SELECT max(seq) FROM audit_events")).scalar()
    with pytest.raises(RegistryError, match="out of step"):
        _record(registry, 1)
    with registry.engine.connect() as connection:  # nothing of the refused append was kept
        assert connection.execute(sa.text("SELECT max(seq) FROM audit_events")).scalar() == kept


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
        with engine.begin() as connection:  # 0005 builds the tiles, partial ones too
            command.upgrade(alembic_config(connection), "0007")
        assert _stored_tiles(engine) == merkle.tiles_of(map(merkle.leaf_hash, events))
        ensure_schema(engine, upgrade=True)  # 0008 gives every event its leaf hash
        assert _stored_tiles(engine) == _tile_rows(events)
        assert _stored_leaves(engine) == list(map(merkle.leaf_hash, events))
    finally:
        engine.dispose()
    with Registry.open(database_url) as registry:  # and the live path carries on from there
        for _ in range(300):  # across the next tile filled
            registry.record(AuditEvent("key.add", "ok"))
        events = _event_bytes(registry)
        assert _stored_tiles(registry.engine) == _tile_rows(events)
        assert registry.verify_audit().ok
        reference = InmemoryTree(algorithm="sha256")
        for event in events:
            reference.append_entry(event)
        with registry.engine.connect() as connection:
            assert TreeReader(connection).root(len(events)) == reference.get_root(len(events))


def test_the_leaf_migration_goes_back_to_a_partial_tile_row(database_url: str) -> None:
    with Registry.open(database_url) as registry:
        _record(registry, 300)
        events = _event_bytes(registry)
    engine = connect(database_url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0007")
        assert _stored_tiles(engine) == merkle.tiles_of(map(merkle.leaf_hash, events))
        ensure_schema(engine, upgrade=True)
        assert _stored_tiles(engine) == _tile_rows(events)
        if engine.dialect.name == "sqlite":  # the key index is its primary key alone
            with engine.connect() as connection:
                table = connection.execute(
                    sa.text("SELECT sql FROM sqlite_master WHERE name = 'audit_event_keys'")
                ).scalar_one()
            assert table.rstrip().endswith("WITHOUT ROWID")
    finally:
        engine.dispose()
    with Registry.open(database_url) as registry:  # the key rows came through both ways
        assert registry.verify_audit().ok
        assert registry.verify_audit().events == 300
