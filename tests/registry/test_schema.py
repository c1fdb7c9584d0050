"""Schema ownership by Alembic: fresh at head, models == migrations, upgrades from older revisions."""

from __future__ import annotations

import collections
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from tests.helpers import run_cli
from tests.registry.conftest import SignedPlugin
from vtreg.loader.protocols import AuditEvent
from vtreg.registry import audit
from vtreg.registry.db import alembic_config, connect, ensure_schema, head_revision
from vtreg.registry.models import Plugin
from vtreg.registry.service import Registry
from vtreg.registry.statements import Statements
from vtreg.verifier.errors import RegistryError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.manifest import SemVer
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture


def test_the_revision_list_matches_the_shipped_migrations() -> None:
    from alembic.script import ScriptDirectory

    from vtreg.registry.db import REVISIONS

    script = ScriptDirectory.from_config(alembic_config())
    assert tuple(reversed([r.revision for r in script.walk_revisions()])) == REVISIONS
    assert script.get_current_head() == head_revision()


def test_a_fresh_database_is_created_at_head(database_url: str) -> None:
    with Registry.open(database_url) as registry, registry.engine.connect() as connection:
        version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        head = connection.execute(sa.text("SELECT seq, hash FROM audit_chain_head")).one()
    assert version == head_revision()
    assert tuple(head) == (0, audit.GENESIS_HASH)


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = connect(database_url)
    try:
        ensure_schema(engine)
        with engine.begin() as connection:
            command.check(alembic_config(connection))  # raises if autogenerate sees any difference
    finally:
        engine.dispose()


def _events_at_first_revision(engine: sa.Engine) -> None:
    """Write a valid two-event chain the way vtreg 0001 did (no chain head table yet)."""
    prev = audit.GENESIS_HASH
    with engine.begin() as connection:
        for seq in (1, 2):
            at = datetime(2026, 1, seq, tzinfo=UTC)
            fields = (seq, at, "old@host", "key.add", "ok", None, None, None, "", None, "{}")
            digest = audit.chain_hash(prev, audit.canonical(*fields))
            connection.execute(
                sa.text(
                    "INSERT INTO audit_events (seq, at, actor, action, outcome, keyids, details,"
                    " prev_hash, hash) VALUES (:seq, :at, 'old@host', 'key.add', 'ok', '', '{}',"
                    " :prev, :hash)"
                ),
                {
                    "seq": seq,
                    "at": Statements.of(engine).time_out(at),  # as vtreg stores it
                    "prev": prev,
                    "hash": digest,
                },
            )
            prev = digest


def test_an_older_registry_is_refused_until_upgraded(database_url: str) -> None:
    engine = connect(database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0001")
        _events_at_first_revision(engine)
    finally:
        engine.dispose()

    with pytest.raises(
        RegistryError, match=r"at revision 0001, this vtreg needs .*run `vtreg db upgrade`"
    ):
        Registry.open(database_url)
    refused = run_cli("list", "--db", database_url)
    assert refused.code == 3
    assert "run `vtreg db upgrade`" in refused.stderr

    upgraded = run_cli("db", "upgrade", "--db", database_url, "--json")
    assert upgraded.code == 0, upgraded.stderr
    assert upgraded.json()["from"] == "0001"

    with Registry.open(database_url) as registry:
        report = registry.verify_audit()
        assert report.ok, report.problem
        assert report.events == 2  # the head was filled from the existing log
        registry.record(AuditEvent("key.add", "ok"))
        assert registry.verify_audit().events == 3
    again = run_cli("db", "upgrade", "--db", database_url)
    assert "is at revision" in again.stdout


# (version, platform, revoked) of plugin "hello" rows as 0002 stored them: no version key.
_OLD_PLUGINS = [
    ("1.2.0", "linux-x86_64", False),
    ("1.10.0-rc.1", "linux-x86_64", False),  # text order would put 1.2.0 above it
    ("1.10.0", "linux-x86_64", True),  # revoked: not a floor
    ("1.9.0+build.7", "linux-x86_64", False),
    ("2.0.0", "darwin-arm64", False),  # another platform's floor
]


def _plugins_at_second_revision(engine: sa.Engine) -> None:
    """Trusted plugins and their signers, written the way vtreg 0002 did."""
    sql = Statements.of(engine)
    at = sql.time_out(datetime(2026, 2, 1, tzinfo=UTC))
    with engine.begin() as connection:
        for n, (version, platform, revoked) in enumerate(_OLD_PLUGINS, start=1):
            connection.execute(
                sa.text(
                    "INSERT INTO plugins (id, name, version, content_digest, platform, library,"
                    " envelope, threshold, pinned, trusted_at, trusted_by, revoked_at) VALUES"
                    " (:id, 'hello', :version, :digest, :platform, 'libhello.so', :envelope, 1,"
                    " :pinned, :at, 'old@host', :revoked)"
                ),
                {"id": n, "version": version, "digest": f"sha256:{n:064x}", "platform": platform,
                 "envelope": b"{}", "pinned": False, "at": at, "revoked": at if revoked else None},
            )  # fmt: skip
            connection.execute(
                sa.text("INSERT INTO plugin_signers (plugin_id, keyid) VALUES (:id, :keyid)"),
                [{"id": n, "keyid": f"{k:064x}"} for k in (n, n + 100)],
            )


def _table(engine: sa.Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(sql))]


def test_an_upgrade_gives_every_trusted_plugin_its_version_key(database_url: str) -> None:
    engine = connect(database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0002")
        _plugins_at_second_revision(engine)
        signers = _table(engine, "SELECT plugin_id, keyid FROM plugin_signers ORDER BY 1, 2")

        assert ensure_schema(engine, upgrade=True) == ("0002", head_revision())

        keys = _table(engine, "SELECT version, version_key FROM plugins ORDER BY id")
        assert keys == [(v, SemVer.parse(v).sort_key()) for v, _, _ in _OLD_PLUGINS]
        assert (
            _table(engine, "SELECT plugin_id, keyid FROM plugin_signers ORDER BY 1, 2") == signers
        )
        floor = Statements.of(engine).floor
        with engine.connect() as connection:
            for platform, newest in (("linux-x86_64", "1.10.0-rc.1"), ("darwin-arm64", "2.0.0")):
                assert connection.exec_driver_sql(floor, ("hello", platform)).all() == [(newest,)]
        indexes = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("plugins")}
        assert indexes["ix_plugins_floor"] == ["name", "version_key"]
        # Each content's one platform, moved to plugin_platforms by migration 0006.
        assert _table(
            engine, "SELECT platform, count(*) FROM plugin_platforms GROUP BY platform ORDER BY 1"
        ) == sorted(collections.Counter(p for _, p, _ in _OLD_PLUGINS).items())
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
            connection.execute(sa.text("UPDATE plugins SET version_key = NULL WHERE id = 1"))

        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0002")
        assert (
            _table(engine, "SELECT plugin_id, keyid FROM plugin_signers ORDER BY 1, 2") == signers
        )
        assert "version_key" not in {c["name"] for c in sa.inspect(engine).get_columns("plugins")}
    finally:
        engine.dispose()


def _execute(database_url: str, sql: str) -> None:
    engine = connect(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(sql))
    finally:
        engine.dispose()


def test_a_database_of_something_else_is_refused(database_url: str) -> None:
    _execute(database_url, "CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with pytest.raises(RegistryError, match="holds tables but is not a vtreg registry"):
        Registry.open(database_url)


def test_a_newer_schema_is_refused(database_url: str) -> None:
    Registry.open(database_url).close()
    _execute(database_url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(RegistryError, match="newer than this vtreg knows"):
        Registry.open(database_url)


def test_an_upgrade_gives_every_trusted_plugin_its_signature_expiry(
    database_url: str, signed_plugin: SignedPlugin
) -> None:
    """Migration 0007 reads each stored envelope's `expires` into plugins.signature_expires
    (what `vtreg list` judges by), NULL for one that never expires or does not parse."""
    key = SigningKey.generate("alice")
    expires = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    now = datetime.now(UTC)
    envelopes = []
    for version, until in (("1.0.0", expires), ("2.0.0", None)):
        plugin = signed_plugin("hello", version)
        envelopes.append(sign(capture(plugin), key, at=now, expires=until).envelope)
    envelopes.append(b"not an envelope")
    engine = connect(database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0005")
        sql = Statements.of(engine)
        with engine.begin() as connection:
            for n, envelope in enumerate(envelopes, start=1):
                connection.execute(
                    sa.text(
                        "INSERT INTO plugins (id, name, version, version_key, content_digest,"
                        " platform, library, envelope, threshold, pinned, trusted_at, trusted_by)"
                        " VALUES (:id, 'hello', :version, :key, :digest, 'linux-x86_64',"
                        " 'libhello.so', :envelope, 1, :pinned, :at, 'old@host')"
                    ),
                    {"id": n, "version": f"{n}.0.0", "key": SemVer.parse(f"{n}.0.0").sort_key(),
                     "digest": f"sha256:{n:064x}", "envelope": envelope, "pinned": False,
                     "at": sql.time_out(now)},
                )  # fmt: skip

        assert ensure_schema(engine, upgrade=True) == ("0005", head_revision())

        with engine.connect() as connection:
            found = connection.execute(
                sa.select(Plugin.id, Plugin.signature_expires).order_by(Plugin.id)
            ).all()
        assert [tuple(row) for row in found] == [(1, expires), (2, None), (3, None)]
    finally:
        engine.dispose()
