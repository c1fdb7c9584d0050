"""The audit log: atomic with changes, hash-chained, tamper-evident, queryable. Both engines."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import invoke_cli, run_cli
from tests.registry.conftest import SignedPlugin
from tests.registry.test_audit_format import KNOWN_ACTOR, KNOWN_AT, KNOWN_EVENT, KNOWN_HASH
from vtreg.loader.protocols import AuditEvent
from vtreg.registry import audit
from vtreg.registry.audit import QueryFilters
from vtreg.registry.service import Registry
from vtreg.registry.statements import Statements
from vtreg.verifier.audit_event import COLUMNS, HASHED_FIELDS
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.tree import capture


@pytest.fixture
def busy_registry(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey, other_key: SigningKey
) -> Registry:
    """A registry with ten events of several kinds."""
    registry.add_key(key.public_key)  # 1
    registry.add_key(other_key.public_key)  # 2
    hello = signed_plugin("hello", "1.0.0", key)
    other = signed_plugin("other", "2.0.0", other_key)
    registry.trust(capture(hello))  # 3
    registry.trust(capture(other))  # 4
    registry.verify_plugin(capture(hello))  # 5
    registry.verify_plugin(capture(other))  # 6
    registry.revoke(name="other", reason="recalled")  # 7
    with pytest.raises(Exception, match="revoked"):
        registry.verify_plugin(capture(other))  # 8 (refused)
    registry.record(AuditEvent("plugin.load", "allowed", plugin="hello", keyids=(key.keyid,)))  # 9
    registry.revoke_key(other_key.keyid, "rotated")  # 10
    return registry


def test_every_change_and_decision_is_recorded(busy_registry: Registry) -> None:
    events = busy_registry.audit_events()
    assert [(e.seq, e.action, e.outcome) for e in reversed(events)] == [
        (1, "key.add", "ok"),
        (2, "key.add", "ok"),
        (3, "plugin.trust", "ok"),
        (4, "plugin.trust", "ok"),
        (5, "plugin.verify", "allowed"),
        (6, "plugin.verify", "allowed"),
        (7, "plugin.revoke", "ok"),
        (8, "plugin.verify", "refused"),
        (9, "plugin.load", "allowed"),
        (10, "key.revoke", "ok"),
    ]
    refused = events[2]
    assert refused.reason is not None
    assert refused.reason.startswith("other 2.0.0 was revoked")
    assert refused.digest is not None  # the refusal came after the signature checked out
    assert all(e.actor for e in events)
    assert busy_registry.verify_audit().ok


def test_a_change_and_its_event_commit_together(
    registry: Registry,
    signed_plugin: SignedPlugin,
    key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)

    def failing_append(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full while writing the audit event")

    monkeypatch.setattr(audit, "append", failing_append)
    with pytest.raises(RuntimeError):
        registry.trust(capture(plugin))
    monkeypatch.undo()

    assert registry.plugins() == []  # the trust did not happen without its event
    assert [e.action for e in registry.audit_events()] == ["key.add"]
    assert registry.verify_audit().ok


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"plugin": "hello"}, [9, 5, 3], id="plugin"),
        pytest.param({"action": "plugin.verify"}, [8, 6, 5], id="action"),
        pytest.param({"outcome": "refused"}, [8], id="outcome"),
        pytest.param({"plugin": "other", "outcome": "allowed"}, [6], id="combined"),
        pytest.param({"action": "plugin.trust", "limit": 1}, [4], id="limit-newest-first"),
    ],
)
def test_queries(busy_registry: Registry, filters: QueryFilters, expected: list[int]) -> None:
    assert [e.seq for e in busy_registry.audit_events(**filters)] == expected


def test_query_by_key(busy_registry: Registry, key: SigningKey, other_key: SigningKey) -> None:
    assert [e.seq for e in busy_registry.audit_events(keyid=key.keyid)] == [9, 5, 3, 1]
    assert [e.seq for e in busy_registry.audit_events(keyid=other_key.keyid)] == [10, 8, 7, 6, 4, 2]


def test_query_by_time(busy_registry: Registry) -> None:
    everything = busy_registry.audit_events()
    middle = everything[5].at
    assert [e.seq for e in busy_registry.audit_events(until=middle)] == [
        e.seq for e in everything if e.at < middle
    ]
    assert busy_registry.audit_events(since=datetime.now(UTC) + timedelta(hours=1)) == []


# --- tampering, with plain SQL, as someone with write access to the database would ---


def _sql(registry: Registry, statement: str, **params: object) -> None:
    """Run SQL as an attacker with write access would: foreign keys are no obstacle."""
    if registry.engine.dialect.name == "sqlite":
        import sqlite3

        database = registry.engine.url.database
        assert database is not None
        connection = sqlite3.connect(database)  # foreign keys are off by default, as in the shell
        try:
            with connection:
                connection.execute(statement, params)
        finally:
            connection.close()
        return
    with registry.engine.begin() as pg:
        pg.execute(sa.text("SET LOCAL session_replication_role = replica"))  # skips FK triggers
        pg.execute(sa.text(statement), params)


@pytest.mark.parametrize(
    ("tamper", "broken_at", "problem"),
    [
        pytest.param("UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 8", 8, "event 8 does not match its hash: edited", id="edited-reason"),
        pytest.param("UPDATE audit_events SET outcome = 'allowed' WHERE seq = 8", 8, "event 8 does not match its hash", id="refusal-turned-into-allowed"),
        pytest.param("DELETE FROM audit_events WHERE seq = 5", 5, "event 5 is missing", id="deleted-middle"),
        pytest.param("DELETE FROM audit_events WHERE seq = 10", 10, "the chain head names event 10 but the log ends at event 9", id="deleted-last"),
        pytest.param("DELETE FROM audit_events WHERE seq >= 6", 6, "the chain head names event 10 but the log ends at event 5", id="truncated"),
        pytest.param("DELETE FROM audit_event_keys WHERE seq = 3", 3, "the key index of event 3 does not match its key ids", id="unindexed-key"),
        pytest.param("UPDATE audit_event_keys SET keyid = '" + "ef" * 32 + "' WHERE seq = 9", 9, "the key index of event 9 does not match its key ids", id="reattributed-key"),
        pytest.param("INSERT INTO audit_event_keys (keyid, seq) VALUES ('" + "cd" * 32 + "', 5)", 5, "the key index of event 5 does not match its key ids", id="extra-indexed-key"),
        pytest.param("INSERT INTO audit_event_keys (keyid, seq) VALUES ('" + "cd" * 32 + "', 11)", 11, "the key index names event 11, which is not in the log", id="index-past-the-end"),
    ],
)  # fmt: skip
def test_tampering_is_pinpointed(
    busy_registry: Registry, tamper: str, broken_at: int, problem: str
) -> None:
    _sql(busy_registry, tamper)

    report = busy_registry.verify_audit()

    assert not report.ok
    assert report.broken_at == broken_at
    assert report.problem is not None
    assert problem in report.problem


def test_reordered_events_are_pinpointed(busy_registry: Registry) -> None:
    # Swap the contents of events 3 and 4 (keeping their sequence numbers).
    rows = {row["seq"]: row for row in _stored_rows(busy_registry, "WHERE seq IN (3, 4)")}
    moved = [c for c in COLUMNS if c != "seq"]
    assignments = ", ".join(f"{c} = :{c}" for c in moved)
    for seq, other in ((3, 4), (4, 3)):
        _sql(
            busy_registry,
            f"UPDATE audit_events SET {assignments} WHERE seq = :seq",
            seq=seq,
            **{c: rows[other][c] for c in moved},
        )

    report = busy_registry.verify_audit()
    assert report.broken_at == 3
    assert (
        report.problem
        == "event 3 does not follow event 2 (prev_hash differs): inserted, deleted or reordered?"
    )


def test_inserted_event_is_pinpointed(busy_registry: Registry) -> None:
    # A forged event at the end, hashed correctly, but the head was not moved.
    [last] = busy_registry.audit_events(limit=1)
    at = datetime.now(UTC)
    event = AuditEvent("plugin.trust", "ok", plugin="evil", version="6.6.6")
    hashed = (11, at, "mallory@evil", *event.stored())
    forged = audit.chain_hash(last.hash, audit.canonical(*hashed))
    stored = dict(zip(COLUMNS, (*hashed, last.hash, forged), strict=True))
    stored["at"] = Statements.of(busy_registry.engine).time_out(at)  # as vtreg stores it
    _sql(
        busy_registry,
        f"INSERT INTO audit_events ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join(':' + c for c in COLUMNS)})",
        **stored,
    )

    report = busy_registry.verify_audit()
    assert report.broken_at == 11
    assert report.problem is not None
    assert "the log goes on past the chain head (event 10) to event 11" in report.problem


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("replace(at, ' ', 'T')", id="T-separator"),
        # exactly the hashed form: the hash still matches, the text sorts elsewhere
        pytest.param("replace(at, ' ', 'T') || '+00:00'", id="hashed-form"),
        pytest.param("substr(at, 1, 19)", id="no-microseconds"),
    ],
)
def test_an_event_moved_in_time_is_found(busy_registry: Registry, spelling: str) -> None:
    # SQLite keeps times as text and --since/--until compare that text: the same
    # instant spelled another way sorts elsewhere, so it must not verify. On
    # PostgreSQL the column is typed; there the move is a real change of time.
    if busy_registry.engine.dialect.name == "sqlite":
        _sql(busy_registry, f"UPDATE audit_events SET at = {spelling} WHERE seq = 6")
        problem = "event 6 holds a value vtreg never writes (a wrong type, or a time not in vtreg's form): edited?"
    else:
        _sql(
            busy_registry,
            "UPDATE audit_events SET at = at + interval '1 microsecond' WHERE seq = 6",
        )
        problem = "event 6 does not match its hash: edited or moved?"

    report = busy_registry.verify_audit()

    assert report.broken_at == 6
    assert report.problem == problem


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        pytest.param("UPDATE audit_events SET at = 12345 WHERE seq = 2", "at event 2: event 2 holds a value vtreg never writes", id="number-for-time"),
        pytest.param("UPDATE audit_events SET keyids = x'00ff' WHERE seq = 2", "at event 2: event 2 holds a value vtreg never writes", id="blob-for-text"),
        pytest.param("UPDATE audit_event_keys SET seq = 'two' WHERE seq = 2", "at event 2: the key index of event 2 does not match its key ids", id="text-in-key-index"),
        pytest.param("INSERT INTO audit_event_keys VALUES ('" + "ab" * 32 + "', 'zzz')", "at event 3: the key index holds a malformed row ('zzz')", id="extra-text-index-row"),
        pytest.param("UPDATE audit_chain_head SET seq = 'three'", "the chain head row is malformed", id="text-in-head"),
    ],
)  # fmt: skip
def test_wrong_typed_values_are_reported_not_crashed(
    tmp_path: Path, tamper: str, problem: str
) -> None:
    # Only SQLite lets a column hold a value of another type; PostgreSQL's typed
    # columns refuse the write itself.
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with Registry.open(url) as registry:
        for n in range(3):
            registry.record(AuditEvent("key.add", "ok", keyids=(f"{n}" * 64,)))
        _sql(registry, tamper)

    result = run_cli("audit", "verify", "--db", url)

    assert result.code == 1, result.stderr
    assert "audit log BROKEN" in result.stdout
    assert problem in result.stdout


@pytest.mark.parametrize("keyid", ["a b", "", "tab\there"])
def test_a_key_id_that_cannot_be_indexed_is_not_recorded(registry: Registry, keyid: str) -> None:
    with pytest.raises(ValueError, match="non-empty word without spaces"):
        registry.record(AuditEvent("plugin.load", "allowed", keyids=(keyid,)))
    assert registry.audit_events() == []
    assert registry.verify_audit().ok


def test_key_ids_sort_the_same_in_the_log_and_the_index(registry: Registry) -> None:
    # Upper case sorts before lower case in code point order, after it in most
    # locales; the index must be read back in the order append() wrote, whatever
    # collation the database was created with.
    if registry.engine.dialect.name == "postgresql":
        _sql(
            registry,
            'ALTER TABLE audit_event_keys ALTER COLUMN keyid TYPE varchar(64) COLLATE "und-x-icu"',
        )
    registry.record(AuditEvent("plugin.load", "allowed", keyids=("b", "B", "a", "_")))
    assert registry.verify_audit().ok


def test_a_naive_time_is_never_hashed() -> None:
    with pytest.raises(ValueError, match="naive"):
        audit.canonical(1, datetime(2026, 1, 1), "a", *AuditEvent("key.add", "ok").stored())


def _stored_rows(registry: Registry, clause: str) -> list[sa.RowMapping]:
    """audit_events rows exactly as stored (``at`` as the driver returns it), by column name."""
    with registry.engine.connect() as connection:
        query = sa.text(f"SELECT {', '.join(COLUMNS)} FROM audit_events {clause}")
        return list(connection.execute(query).mappings())


def _rewrite_chain_from(registry: Registry, start: int) -> None:
    """Recompute every hash from event ``start`` on and move the head: the
    attacker who can write the database rebuilds a chain that verifies."""
    rows = _stored_rows(registry, "ORDER BY seq")
    prev = audit.GENESIS_HASH
    for row in rows:
        if row["seq"] >= start:
            new = audit.chain_hash(prev, audit.canonical(*(row[c] for c in HASHED_FIELDS)))
            _sql(
                registry,
                "UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s",
                p=prev,
                h=new,
                s=row["seq"],
            )
            prev = new
        else:
            prev = row["hash"]
    _sql(registry, "UPDATE audit_chain_head SET seq = :s, hash = :h", s=rows[-1]["seq"], h=prev)


def test_an_anchor_catches_a_truncated_log_with_its_head_moved_back(
    busy_registry: Registry,
) -> None:
    anchor = busy_registry.verify_audit()
    fifth = busy_registry.audit_events(limit=6)[-1]  # newest first: 10 down to 5
    assert fifth.seq == 5
    _sql(busy_registry, "DELETE FROM audit_event_keys WHERE seq > 5")
    _sql(busy_registry, "DELETE FROM audit_events WHERE seq > 5")
    _sql(busy_registry, "UPDATE audit_chain_head SET seq = 5, hash = :h", h=fifth.hash)

    assert busy_registry.verify_audit().ok  # the chain alone cannot tell
    report = busy_registry.verify_audit(anchor=(anchor.events, anchor.head))

    assert report.broken_at == 6
    assert report.problem == (
        "the log ends at event 5, before the anchored event 10: "
        "events deleted from the end, and the head moved back?"
    )


def test_an_anchor_catches_a_rebuilt_chain(busy_registry: Registry) -> None:
    anchor = busy_registry.verify_audit()
    _sql(busy_registry, "UPDATE audit_events SET outcome = 'allowed', reason = NULL WHERE seq = 8")
    _rewrite_chain_from(busy_registry, 8)

    assert busy_registry.verify_audit().ok  # the chain alone cannot tell
    report = busy_registry.verify_audit(anchor=(anchor.events, anchor.head))

    assert report.broken_at == 10
    assert report.problem is not None
    assert report.problem.startswith("event 10 is not the event anchored earlier")
    # an anchor older than the rewritten part still holds, as it should
    assert busy_registry.verify_audit(anchor=(7, busy_registry.audit_events(limit=4)[-1].hash)).ok


def test_audit_verify_cli_prints_and_checks_an_anchor(
    busy_registry: Registry, database_url: str
) -> None:
    first = run_cli("audit", "verify", "--db", database_url, "--json")
    anchor = first.json()["anchor"]
    assert first.json()["head"] == f"sha256:{anchor.removeprefix('10:')}"  # the head's hex
    assert f"anchor {anchor}" in run_cli("audit", "verify", "--db", database_url).stdout

    busy_registry.record(AuditEvent("plugin.load", "allowed", plugin="hello"))
    later = run_cli("audit", "verify", "--db", database_url, "--anchor", anchor)
    assert later.code == 0, later.stderr
    assert "audit log intact: 11 events (still holds anchor 10)" in later.stdout
    as_json_writes_it = f"10:{first.json()['head']}"  # SEQ:sha256:HEX is taken too
    assert run_cli("audit", "verify", "--db", database_url, "--anchor", as_json_writes_it).code == 0

    _sql(busy_registry, "UPDATE audit_events SET actor = 'x' WHERE seq = 10")
    _rewrite_chain_from(busy_registry, 10)
    assert run_cli("audit", "verify", "--db", database_url).code == 0
    caught = run_cli("audit", "verify", "--db", database_url, "--anchor", anchor)
    assert caught.code == 1
    assert "event 10 is not the event anchored earlier" in caught.stdout

    for bad in ("10", "0:" + "a" * 64, "10:" + "A" * 64, "x:y", "\u00b2:" + "a" * 64):
        refused = run_cli("audit", "verify", "--db", database_url, "--anchor", bad)
        assert refused.code == 2, bad
        assert "is not an anchor" in refused.stderr


def test_audit_verify_cli_exits_1_and_names_the_event(
    busy_registry: Registry, database_url: str
) -> None:
    ok = run_cli("audit", "verify", "--db", database_url)
    assert ok.code == 0, ok.stderr
    assert "audit log intact: 10 events" in ok.stdout

    _sql(busy_registry, "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 4")
    broken = run_cli("audit", "verify", "--db", database_url, "--json")

    assert broken.code == 1
    doc = broken.json()
    assert doc["intact"] is False
    assert doc["broken_seq"] == 4


def test_audit_cli_outputs(busy_registry: Registry, database_url: str, key: SigningKey) -> None:
    table = run_cli("audit", "--db", database_url, "--plugin", "hello")
    as_json = run_cli("audit", "--db", database_url, "--key", key.keyid[:12], "--json").json()
    as_csv = run_cli("audit", "--db", database_url, "--outcome", "refused", "--csv")

    assert table.code == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == [
        "SEQ", "AT", "ACTION", "OUTCOME", "PLUGIN", "DIGEST", "KEYS", "ACTOR", "REASON"
    ]  # fmt: skip
    assert [e["seq"] for e in as_json["events"]] == [9, 5, 3, 1]
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["seq"] for r in rows] == ["8"]
    assert json.loads(rows[0]["details"])["error"] == "PolicyError"


@pytest.mark.parametrize(
    "actor",
    ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"],
    ids=["equals", "plus", "minus", "at", "tab", "carriage-return"],
)
def test_csv_cells_never_start_a_formula(database_url: str, actor: str) -> None:
    with Registry.open(database_url) as registry:
        registry.actor = actor
        registry.record(AuditEvent("plugin.load", "refused", reason="=1+1"))

    result = invoke_cli("audit", "--db", database_url, "--csv")

    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert (row["actor"], row["reason"]) == ("'" + actor, "'=1+1")
    as_json = invoke_cli("audit", "--db", database_url, "--json").json()
    assert as_json["events"][0]["actor"] == actor  # --json stays exact


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["--since", "yesterday-ish"], 2, "is neither a date/time", id="bad-since"),
        pytest.param(["--limit", "0"], 2, "--limit", id="bad-limit"),
        pytest.param(["--action", "plugin.fly"], 2, "--action", id="bad-action"),
        pytest.param(["--key", "0123456789abcdef"], 3, "no key 0123456789abcdef", id="unknown-key"),
        pytest.param(["--csv", "--json"], 2, "alternatives", id="two-formats"),
    ],
)
def test_audit_cli_bad_input(
    busy_registry: Registry, database_url: str, args: list[str], code: int, message: str
) -> None:
    result = run_cli("audit", "--db", database_url, *args)
    assert result.code == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_appended_event_hashes_to_the_known_answer(registry: Registry) -> None:
    # Through the registry, on each engine: the same bytes as the pure encoding.
    registry.actor = KNOWN_ACTOR
    registry.record(KNOWN_EVENT, at=KNOWN_AT)

    [record] = registry.audit_events()
    assert (record.seq, record.prev_hash, record.hash) == (1, audit.GENESIS_HASH, KNOWN_HASH)
    assert record.at == KNOWN_AT
    assert record.stored() == KNOWN_EVENT.stored()
    assert registry.verify_audit().ok


def test_event_times_never_go_back_along_the_chain(registry: Registry) -> None:
    # A host whose clock is an hour behind writes after one that is right: its
    # event takes the previous event's time, so a --since window still finds it.
    ahead = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    registry.record(AuditEvent("plugin.load", "allowed", plugin="a"), at=ahead)
    registry.record(AuditEvent("plugin.load", "allowed", plugin="b"), at=ahead - timedelta(hours=1))
    registry.record(
        AuditEvent("plugin.load", "allowed", plugin="c"), at=ahead + timedelta(seconds=1)
    )

    events = registry.audit_events(since=ahead)

    assert [(e.plugin, e.at) for e in reversed(events)] == [
        ("a", ahead), ("b", ahead), ("c", ahead + timedelta(seconds=1))
    ]  # fmt: skip
    assert registry.verify_audit().ok


def test_the_audit_table_shows_control_characters_inert(database_url: str) -> None:
    # A reason (or a row someone edited) holding escape sequences must not repaint
    # the operator's terminal; --json keeps the exact text.
    with Registry.open(database_url) as registry:
        registry.record(AuditEvent("plugin.load", "refused", reason="\x1b[2J\x1b[32mallowed\u202e"))

    table = invoke_cli("audit", "--db", database_url)
    as_json = invoke_cli("audit", "--db", database_url, "--json").json()

    assert "\x1b" not in table.stdout
    assert "\u202e" not in table.stdout
    assert "\\x1b[2J\\x1b[32mallowed\\u202e" in table.stdout
    assert as_json["events"][0]["reason"] == "\x1b[2J\x1b[32mallowed\u202e"
