"""The few statements run for every load and every decision, in the driver's own SQL.

Loading a plugin reads the keys, the trust record of one content and the
rollback floor of one name and platform (in one statement, which needs no
transaction of its own), then appends one audit event.
Through SQLAlchemy's statement and transaction machinery that costs about a
millisecond; on a DBAPI connection of the same engine it costs a tenth of
that (:class:`HotPath`: on SQLite one kept connection per thread, so not even
a pool checkout is paid per load; a registry opened by the driver alone,
:mod:`vtreg.registry.driver`, never imports SQLAlchemy at all). Only
these statements, whose tables and columns are fixed by migrations/, are
written out here (tests/registry/test_statements.py checks them against the
models); everything else goes through SQLAlchemy.

The transactions keep the registry's rules, begun on SQLite by
:func:`vtreg.registry.driver.begin_sqlite` as every other transaction is; on
PostgreSQL the chain head is locked with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vtreg.verifier.audit_event import COLUMNS
from vtreg.verifier.errors import UsageError

from .driver import begin_sqlite
from .reader import time_in

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["Cursor", "HotPath", "Statements"]


_PG_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


class Statements:
    """Hot-path SQL for one dialect."""

    def __init__(self, dialect_name: str, paramstyle: str) -> None:
        self.sqlite = dialect_name == "sqlite"
        mark = "?" if paramstyle == "qmark" else "%s"

        def marks(n: int) -> str:
            return ", ".join([mark] * n)

        self._key_columns = (
            "name, public_key, scopes, expires_at, revoked_at, revoked_reason, keyid"
        )
        self.keys = f"SELECT {self._key_columns} FROM keys"
        # A content's platforms, space-separated (the reader sorts them).
        aggregate = "group_concat(platform, ' ')" if self.sqlite else "string_agg(platform, ' ')"
        platforms = f"(SELECT {aggregate} FROM plugin_platforms WHERE plugin_id = plugins.id)"
        self._content_columns = (
            f"name, version, {platforms}, content_digest, threshold, pinned, revoked_at, "
            "revoked_reason"
        )
        contents = f"SELECT {self._content_columns} FROM plugins"
        self.all_contents = contents  # a fleet publishes every one
        # One content's whole record (a lookup), its counted signers, and the signers of
        # every envelope accepted for it.
        self.record = (
            "SELECT id, name, version, content_digest, threshold, pinned, trusted_at, "
            f"trusted_by, revoked_at, revoked_reason, envelope, {platforms} FROM plugins "
            f"WHERE content_digest = {mark}"
        )
        self.signers = f"SELECT keyid FROM plugin_signers WHERE plugin_id = {mark}"
        self.accepted_signers = f"SELECT signers FROM plugin_envelopes WHERE plugin_id = {mark}"
        self._states: dict[tuple[bool, int], str] = {}  # built by state()
        self._contents, self._mark = contents, mark
        # What changed the trust since a fleet publish: the events every such write logs.
        self.trust_changes = (
            f"SELECT action, plugin FROM audit_events WHERE seq > {mark} AND outcome = 'ok' "
            "AND action IN ('plugin.trust', 'plugin.untrust', 'plugin.revoke', 'key.add', "
            "'key.revoke', 'key.set')"
        )
        self.head_seq = "SELECT seq FROM audit_chain_head WHERE id = 1"
        content = contents + " WHERE "
        self.content = content + f"content_digest = {mark}"
        # For a statement that names no sha256 of some file: its content digest is
        # one of this version's (ix_plugins_name_version).
        self.contents_of_version = content + f"name = {mark} AND version = {mark}"
        # The rollback floor of (name, platform): ix_plugins_floor's range of the name
        # walked from its newest end to the first content covering the platform (a
        # partial index of unrevoked rows; its condition is repeated word for word
        # so that SQLite's planner sees the query implies it).
        self.floor = (
            f"SELECT version FROM plugins WHERE name = {mark} AND EXISTS (SELECT 1 FROM "
            f"plugin_platforms WHERE plugin_id = plugins.id AND platform = {mark}) "
            "AND revoked_at IS NULL ORDER BY version_key DESC LIMIT 1"
        )
        # The head, and the time of the event it points at, in one statement.
        self.lock_head = (
            "SELECT h.seq, h.hash, e.at FROM audit_chain_head h "
            "LEFT JOIN audit_events e ON e.seq = h.seq WHERE h.id = 1"
        ) + ("" if self.sqlite else " FOR UPDATE OF h")
        # Every column, in the order append() gives the values (the event format's, then
        # the leaf hash).
        self.insert_event = (
            f"INSERT INTO audit_events ({', '.join(COLUMNS)}, leaf) "
            f"VALUES ({marks(len(COLUMNS) + 1)})"
        )
        self.insert_key = f"INSERT INTO audit_event_keys (keyid, seq) VALUES ({marks(2)})"
        self.move_head = f"UPDATE audit_chain_head SET seq = {mark}, hash = {mark} WHERE id = 1"
        # PostgreSQL: the event, its key rows and the head in one statement, one round trip
        # (insert_event's values, then the key ids as an array and the seq, then move_head's).
        # A key row's foreign key is checked at the end of the statement, the event in place.
        self.append = (
            None
            if self.sqlite
            else f"WITH event AS ({self.insert_event}), keys AS (INSERT INTO audit_event_keys "
            f"(keyid, seq) SELECT unnest({mark}::text[]), {mark}) {self.move_head}"
        )
        # The leaf hashes of events (start, end]: the partial level-0 tile (registry.tlog).
        self.leaves = (
            f"SELECT leaf FROM audit_events WHERE seq > {mark} AND seq <= {mark} ORDER BY seq"
        )
        # The Merkle tree's tiles (registry.tlog): a hash starts a tile or is appended to
        # it; SQLite's || makes text of blobs, so the result is cast back, byte for byte.
        self.new_tile = f"INSERT INTO audit_tiles (level, idx, hashes) VALUES ({marks(3)})"
        extend = (
            "UPDATE audit_tiles SET hashes = "
            + (f"CAST(hashes || {mark} AS BLOB)" if self.sqlite else f"hashes || {mark}")
            + f" WHERE level = {mark} AND idx = {mark} RETURNING "
        )
        self.extend_tile = extend + "length(hashes)"
        self.fill_tile = extend + "hashes"
        self.tile = f"SELECT hashes FROM audit_tiles WHERE level = {mark} AND idx = {mark}"
        # The audit walk (registry.audit.verify_chain): every event in order, `at` as the
        # driver returns it, and the key index in the same order, key ids in code point
        # order (as append() sorts them) whatever the database's collation (SQLite's
        # BINARY is code point order for UTF-8).
        self.walk_events = f"SELECT {', '.join(COLUMNS)} FROM audit_events ORDER BY seq"
        self.walk_keys = "SELECT seq, keyid FROM audit_event_keys ORDER BY seq, keyid" + (
            "" if self.sqlite else ' COLLATE "C"'
        )

    def state(self, *, by_digest: bool, platforms: int) -> str:
        """:attr:`keys`, :attr:`content` (or :attr:`contents_of_version`) and :attr:`floor`
        for each of ``platforms`` platforms as one statement, so that one statement sees
        one snapshot of them all (:meth:`HotPath.statement`).

        Each row is a tag and the columns of all three side by side, NULL where they
        are another's (so that no column mixes types): 0 and a key's seven columns,
        1 and a content's eight, 2 + i and the floor of the i-th platform (NULL:
        none). The parameters: those of the content's statement, then each
        platform's name and platform.
        """
        cached = self._states.get((by_digest, platforms))
        if cached is not None:
            return cached

        def nulls(n: int) -> str:
            return ", ".join(["NULL"] * n)

        mark = self._mark
        where = f"content_digest = {mark}" if by_digest else f"name = {mark} AND version = {mark}"
        parts = [
            f"SELECT 0, {self._key_columns}, {nulls(9)} FROM keys",
            f"SELECT 1, {nulls(7)}, {self._content_columns}, NULL FROM plugins WHERE {where}",
        ]
        parts += [f"SELECT {2 + i}, {nulls(15)}, ({self.floor})" for i in range(platforms)]
        statement = self._states[by_digest, platforms] = " UNION ALL ".join(parts)
        return statement

    def contents_of_names(self, count: int) -> str:
        """Every content of ``count`` names (the parameters), for an incremental publish."""
        return f"{self._contents} WHERE name IN ({', '.join([self._mark] * count)})"

    @classmethod
    def of(cls, engine: Engine) -> Statements:
        """The statements of ``engine``'s dialect (built once per dialect)."""
        return cls.of_dialect(engine.dialect.name, engine.dialect.paramstyle)

    @staticmethod
    def of_dialect(dialect_name: str, paramstyle: str) -> Statements:
        """The statements of a dialect by name and its driver's paramstyle (built once)."""
        return _statements(dialect_name, paramstyle)

    def time_out(self, value: datetime) -> datetime | str:
        """A time as a parameter: SQLite gets the naive UTC text SQLAlchemy stores there."""
        if not self.sqlite:
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    time_in = staticmethod(time_in)  # a time as read back, as an aware UTC datetime

    def within(self, connection: Connection) -> Cursor:
        """A cursor in ``connection``'s current SQLAlchemy transaction (for ORM writes)."""
        return Cursor(connection.connection.cursor(), self)


class HotPath:
    """The per-load transactions, on DBAPI connections outside SQLAlchemy's machinery.

    On SQLite each thread keeps one connection for them (``keep``), out of any
    pool: a pool checkout and its reset on return cost more than the statements
    themselves. On PostgreSQL every transaction takes a connection from the
    engine's pool, which pings it first, so a restarted server costs no load its
    connection.

    ``connect`` returns a DBAPI connection and its info dict (see
    :func:`~vtreg.registry.driver.begin_sqlite`); closing a connection that is not
    kept gives it back to its pool.
    """

    def __init__(
        self, sql: Statements, connect: Callable[[], tuple[Any, dict[Any, Any]]], *, keep: bool
    ) -> None:
        self.sql = sql
        self._connect = connect
        self._keep = keep
        self._local = threading.local()
        self._kept: list[Any] = []  # every thread's connection, closed by close()
        self._lock = threading.Lock()

    @classmethod
    def of(cls, engine: Engine) -> HotPath:
        """The hot path on ``engine``'s connections: on SQLite detached from its pool."""
        sql = Statements.of(engine)
        if not sql.sqlite:

            def pooled() -> tuple[Any, dict[Any, Any]]:
                fairy = engine.raw_connection()
                return fairy, fairy.info

            return cls(sql, pooled, keep=False)

        def detached() -> tuple[Any, dict[Any, Any]]:
            fairy = engine.raw_connection()
            info = dict(fairy.info)
            fairy.detach()  # ours from now on, closed by close()
            return fairy.dbapi_connection, info

        return cls(sql, detached, keep=True)

    def _connection(self) -> tuple[Any, dict[Any, Any], bool]:
        """A DBAPI connection, its info dict, and whether it goes back to the pool after."""
        if not self._keep:
            return *self._connect(), True
        kept = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = self._connect()
            with self._lock:
                self._kept.append(kept[0])
        return kept[0], kept[1], False

    @contextlib.contextmanager
    def transaction(self, *, write: bool, decision_record: bool = False) -> Iterator[Cursor]:
        """A transaction; a read-only one sees one snapshot throughout on either engine
        (SQLite's transactions always do; PostgreSQL's default READ COMMITTED would let
        the keys and the contents of one decision come from two different states)."""
        raw, info, pooled = self._connection()
        cursor = raw.cursor()
        try:
            if self.sql.sqlite:
                begin_sqlite(cursor.execute, info, write=write, decision_record=decision_record)
            elif not write:
                cursor.execute(_PG_SNAPSHOT)
            yield Cursor(cursor, self.sql)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            cursor.close()
            if pooled:
                raw.close()  # back to the pool

    @contextlib.contextmanager
    def statement(self) -> Iterator[Cursor]:
        """A cursor for one read-only statement, which sees one snapshot by itself on
        either engine, so none is begun for it: on SQLite no BEGIN or COMMIT is sent
        (SQLite reads the statement in a transaction of its own), on PostgreSQL no
        snapshot is set up first (READ COMMITTED takes one per statement). A second
        statement through the cursor is refused: it could see another state."""
        raw, _, pooled = self._connection()
        cursor = raw.cursor()
        try:
            yield _OneStatement(cursor, self.sql)
            if not self.sql.sqlite:
                raw.commit()  # the transaction the driver began for the statement
        except BaseException:
            raw.rollback()
            raise
        finally:
            cursor.close()
            if pooled:
                raw.close()  # back to the pool

    def close(self) -> None:
        """Close the connections kept for threads (a later transaction opens a new one)."""
        with self._lock:
            kept, self._kept = self._kept, []
            self._local = threading.local()
        for connection in kept:
            connection.close()


class Cursor:
    """A DBAPI cursor and the statements of its dialect."""

    def __init__(self, cursor: Any, statements: Statements) -> None:
        self._cursor = cursor
        self.sql = statements

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run ``statement``; its rows (none for a statement that returns none)."""
        self._cursor.execute(statement, tuple(params))
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``statement`` once for each parameter row."""
        self._cursor.executemany(statement, [tuple(r) for r in rows])


class _OneStatement(Cursor):
    """A cursor that runs one statement (see :meth:`HotPath.statement`)."""

    _used = False

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._used:
            raise UsageError("a second statement outside a transaction would see another state")
        self._used = True
        return super().rows(statement, params)

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        raise UsageError("statements that write run in a transaction")


@functools.cache
def _statements(dialect_name: str, paramstyle: str) -> Statements:
    return Statements(dialect_name, paramstyle)
