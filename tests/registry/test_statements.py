"""The hand-written hot-path SQL names only columns the schema (owned by Alembic) has."""

from __future__ import annotations

import re

from vtreg.registry.models import (
    AuditEvent,
    AuditEventKey,
    AuditTile,
    ChainHead,
    Key,
    Plugin,
    PluginEnvelope,
    PluginPlatform,
    PluginSigner,
)
from vtreg.registry.statements import Statements
from vtreg.verifier.audit_event import COLUMNS

_SUBQUERY = re.compile(r"\((SELECT [^()]*(?:\([^()]*\)[^()]*)*)\)")


def _subquery_columns(statement: str) -> set[str]:
    """Columns compared inside the statement's subqueries (all over plugin_platforms)."""
    found: set[str] = set()
    for sub in _SUBQUERY.findall(statement):
        assert " FROM plugin_platforms " in sub, sub
        found |= set(re.findall(r"(\w+) (?:= |IS NULL|DESC|ASC)", sub))
        found |= set(re.findall(r"\((\w+), ", sub))  # an aggregate's column
    return found


def _columns(statement: str) -> set[str]:
    statement = _SUBQUERY.sub("1", statement)
    # Columns compared, tested for NULL or sorted by, in any statement...
    used = set(re.findall(r"(\w+) (?:= |IS NULL|DESC|ASC)", statement))
    if statement.startswith("INSERT"):
        listed = re.search(r"\(([^)]*)\) VALUES", statement)
    elif statement.startswith("SELECT"):
        listed = re.search(r"SELECT (.*) FROM", statement)
    else:
        return used
    assert listed is not None, statement
    # ... and those listed.
    return used | {c.strip() for c in listed.group(1).split(",")}


def test_event_fields_are_the_columns_of_the_model_in_order() -> None:
    # Then the leaf hash, which is the tree's, not the event's.
    assert tuple(c.name for c in AuditEvent.__table__.columns) == (*COLUMNS, "leaf")


def test_statements_name_only_real_columns() -> None:
    sql = Statements("postgresql", "pyformat")
    for table, statement in (
        (Key, sql.keys),
        (Plugin, sql.content),
        (Plugin, sql.contents_of_version),
        (Plugin, sql.floor),
        (Plugin, sql.record),
        (PluginSigner, sql.signers),
        (PluginEnvelope, sql.accepted_signers),
        (AuditEvent, sql.insert_event),
        (AuditEventKey, sql.insert_key),
        (ChainHead, sql.move_head),
        (AuditTile, sql.new_tile),
        (AuditTile, sql.extend_tile),
        (AuditTile, sql.fill_tile),
        (AuditTile, sql.tile),
        (AuditEvent, sql.leaves),
        (AuditEvent, sql.walk_events),
        (AuditEventKey, sql.walk_keys),
    ):
        columns = {c.name for c in table.__table__.columns}
        assert _columns(statement) - {"1"} <= columns, statement
        assert _subquery_columns(statement) <= {"plugin_id", "platform"}, statement
    assert {c.name for c in PluginPlatform.__table__.columns} == {"plugin_id", "platform"}
    assert sql.lock_head.endswith("FOR UPDATE OF h")
    assert "FOR UPDATE" not in Statements("sqlite", "qmark").lock_head


def test_the_head_statement_names_only_real_columns() -> None:
    # It joins the head (h) to the event it points at (e).
    statement = Statements("postgresql", "pyformat").lock_head
    for alias, table in (("h", ChainHead), ("e", AuditEvent)):
        named = set(re.findall(rf"\b{alias}\.(\w+)", statement))
        assert named
        assert named <= {c.name for c in table.__table__.columns}, (alias, named)


def test_the_one_statement_append_is_the_three_statements_of_sqlite() -> None:
    # PostgreSQL's append is insert_event, the key rows and move_head in one statement.
    postgresql, sqlite = Statements("postgresql", "pyformat"), Statements("sqlite", "qmark")
    assert sqlite.append is None
    assert postgresql.append is not None
    assert postgresql.insert_event in postgresql.append
    assert postgresql.append.endswith(postgresql.move_head)
    assert "INSERT INTO audit_event_keys (keyid, seq) SELECT unnest(" in postgresql.append
