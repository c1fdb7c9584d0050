"""The state a decision reads: one content and one indexed rollback floor, however many versions."""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.registry.conftest import SignedPlugin
from tests.signing import sign_custom_statement
from vtreg.registry.models import Plugin, PluginPlatform
from vtreg.registry.service import Registry
from vtreg.registry.state import read_state
from vtreg.registry.statements import Cursor, HotPath, Statements
from vtreg.verifier.errors import ContentError, PolicyError, RegistryError, UsageError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.manifest import SemVer
from vtreg.verifier.tree import capture
from vtreg.verifier.trust import TrustedContent, TrustState

MANY = 4_000
OTHER_PLATFORM = "darwin-arm64"


def _version(rng: random.Random) -> str:
    """Releases and prereleases, with numbers past 64 bits and identifiers with hyphens."""
    numbers = [rng.choice([rng.randrange(4), rng.randrange(40), rng.randrange(10**25)])]
    numbers += [rng.randrange(12) for _ in range(2)]
    text = ".".join(map(str, numbers))
    if rng.random() < 0.5:
        pool = ["alpha", "beta", "rc", "rc-1", "x-y-z", "0a", "-", str(rng.randrange(30))]
        text += "-" + ".".join(rng.choice(pool) for _ in range(rng.randrange(1, 4)))
    return text + (f"+build.{rng.randrange(9)}" if rng.random() < 0.2 else "")


def _distinct_versions(rng: random.Random, count: int) -> list[str]:
    """``count`` versions of distinct precedence (build metadata alone does not differ)."""
    found: dict[SemVer, str] = {}
    while len(found) < count:
        text = _version(rng)
        found.setdefault(SemVer.parse(text), text)
    return list(found.values())


def _row(n: int, name: str, version: str, platform: str, revoked: bool) -> dict[str, object]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "name": name,
        "version": version,
        "version_key": SemVer.parse(version).sort_key(),
        "content_digest": "sha256:" + hashlib.sha256(b"row %d" % n).hexdigest(),
        "platform": platform,
        "library": f"lib{name}.so",
        "envelope": b"{}",
        "threshold": 1,
        "pinned": False,
        "trusted_at": at,
        "trusted_by": "test@host",
        "revoked_at": at if revoked else None,
        "revoked_by": "test@host" if revoked else None,
        "revoked_reason": "bad build" if revoked else None,
    }


@dataclass
class Many:
    """A registry holding MANY versions of "hello" besides one real, signed plugin."""

    registry: Registry
    plugin: Path
    platform: str
    rows: list[dict[str, object]]


@pytest.fixture
def many(registry: Registry, signed_plugin: SignedPlugin, key: SigningKey) -> Many:
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "0.5.0", key)
    platform = registry.trust(capture(plugin)).plugin.platform
    rng = random.Random(27)  # noqa: S311 - picks test data, nothing secret
    versions = _distinct_versions(rng, MANY)
    newest = sorted(versions, key=SemVer.parse)[-40:]
    # The 40 newest are revoked, and a third of the rest: the floor is below them all.
    revoked = set(newest) | {v for v in versions if rng.random() < 0.33}
    rows = [_row(n, "hello", v, platform, v in revoked) for n, v in enumerate(versions)]
    # Newer versions elsewhere that must not count: another platform, another name.
    rows += [_row(MANY + 1, "hello", "999.0.0", OTHER_PLATFORM, False)]
    rows += [_row(MANY + 2, "hello-x", "999.0.0", platform, False)]
    ids = range(10, 10 + len(rows))  # after the real plugin's row
    with registry.engine.begin() as connection:
        connection.execute(
            sa.insert(Plugin),
            [
                {k: v for k, v in r.items() if k != "platform"} | {"id": i}
                for i, r in zip(ids, rows, strict=True)
            ],
        )
        connection.execute(
            sa.insert(PluginPlatform),
            [{"plugin_id": i, "platform": r["platform"]} for i, r in zip(ids, rows, strict=True)],
        )
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE plugins")  # plan with the tables as they are
            connection.exec_driver_sql("ANALYZE plugin_platforms")
    return Many(registry, plugin, platform, rows)


@contextlib.contextmanager
def _cursor(registry: Registry) -> Iterator[Cursor]:
    with (
        contextlib.closing(HotPath.of(registry.engine)) as hot,
        hot.transaction(write=False) as cursor,
    ):
        yield cursor


def _state(many: Many) -> TrustState:
    with _cursor(many.registry) as cursor:
        return read_state(cursor, (many.plugin / "plugin.sig").read_bytes())


def _scanned_floor(many: Many) -> str:
    """The floor as it was found before the index: from every content of the name, in Python."""
    contents = [
        TrustedContent(
            name=str(r["name"]),
            version=str(r["version"]),
            platforms=(str(r["platform"]),),
            content_digest=str(r["content_digest"]),
            revoked=None if r["revoked_at"] is None else "bad build",
        )
        for r in many.rows
    ]
    contents.append(TrustedContent("hello", "0.5.0", (many.platform,), "sha256:the-real-one"))
    return TrustState.build([], contents).floors["hello", many.platform]


def test_the_floor_of_many_versions_is_their_newest_unrevoked_one(many: Many) -> None:
    state = _state(many)

    [(where, floor)] = state.floors.items()
    assert where == ("hello", many.platform)
    assert SemVer.parse(floor) == SemVer.parse(_scanned_floor(many))
    revoked = [SemVer.parse(str(r["version"])) for r in many.rows if r["revoked_at"] is not None]
    assert max(revoked) > SemVer.parse(floor)  # the newest versions are revoked ones
    assert state.contents is not None
    [content] = state.contents.values()  # the one the envelope claims, not 4,000
    assert (content.version, content.revoked) == ("0.5.0", None)

    with pytest.raises(PolicyError, match=rf"older than the trusted hello {re.escape(floor)} "):
        many.registry.verify_plugin(capture(many.plugin))
    many.registry.trust(capture(many.plugin), pin=True)
    assert many.registry.verify_plugin(capture(many.plugin)).version == "0.5.0"

    many.registry.revoke(name="hello", version=floor, reason="bad build")
    below = _state(many).floors["hello", many.platform]
    assert SemVer.parse(below) < SemVer.parse(floor)
    for row in many.rows:
        if row["version"] == floor:
            row["revoked_at"] = datetime.now(UTC)
    assert SemVer.parse(below) == SemVer.parse(_scanned_floor(many))


def test_the_floor_is_one_index_probe(many: Many) -> None:
    engine = many.registry.engine
    sql = Statements.of(engine)
    explain = "EXPLAIN QUERY PLAN" if sql.sqlite else "EXPLAIN"
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"{explain} {sql.floor}", ("hello", many.platform))
        plan = [str(row[-1]) for row in rows]
    # The name's range of the index read from its end, each entry checked by one
    # probe of plugin_platforms' primary key (the newest usually covers the
    # platform): no scan of a table, no sort, whatever the planner thinks of a LIMIT.
    if sql.sqlite:
        assert plan == [
            "SEARCH plugins USING INDEX ix_plugins_floor (name=?)",
            "CORRELATED SCALAR SUBQUERY 1",
            "SEARCH plugin_platforms USING COVERING INDEX sqlite_autoindex_plugin_platforms_1 "
            "(plugin_id=? AND platform=?)",
        ]
    else:
        assert plan[0].startswith("Limit ")
        assert any("Index Scan Backward using ix_plugins_floor on plugins" in p for p in plan)
        assert any("Index Only Scan using pk_plugin_platforms" in p for p in plan), plan
        assert not any("Sort" in line or "Seq Scan" in line for line in plan), plan


def test_an_envelope_of_trusted_content_over_other_files_is_a_mismatch(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    # The state holds only the content the envelope claims; a directory that is not
    # that content must still be refused for what it is, never "not trusted".
    registry.add_key(key.public_key)
    old = signed_plugin("hello", "1.0.0", key)
    new = signed_plugin("hello", "1.1.0", key)
    registry.trust(capture(old))
    registry.trust(capture(new))
    shutil.copyfile(new / "plugin.sig", old / "plugin.sig")  # 1.0.0's files, 1.1.0's claim
    with (new / "libhello.so").open("ab") as library:
        library.write(b"\0")  # the claimed, trusted content, one byte longer

    for plugin in (old, new):
        with pytest.raises(
            ContentError, match=r"libhello\.so is .*, signed |were signed"
        ) as refused:
            registry.verify_plugin(capture(plugin))
        assert refused.value.code == "digest-mismatch"


def test_a_corrupt_rollback_floor_is_named(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    # The floor's statement reads only the newest version: its row is named by name and
    # version, and a corrupt one decides nothing (before: an internal ValueError).
    registry.add_key(key.public_key)
    old = signed_plugin("hello", "1.0.0", key)
    registry.trust(capture(old))
    registry.trust(capture(signed_plugin("hello", "2.0.0", key)))
    with registry.engine.begin() as connection:
        connection.execute(sa.text("UPDATE plugins SET version = 'x.y' WHERE version = '2.0.0'"))

    with pytest.raises(
        RegistryError,
        match=r"^could not decide: the registry's plugins row hello 'x\.y' \(the floor on "
        r"[a-z0-9_-]+\) is corrupt: version 'x\.y' is not a semantic version$",
    ):
        registry.verify_plugin(capture(old))


def _sha512_only(plugin: Path) -> Callable[[dict[str, object]], None]:
    def edit(subject: dict[str, object]) -> None:
        data = (plugin / str(subject["name"])).read_bytes()
        subject["digest"] = {"sha512": hashlib.sha512(data).hexdigest()}

    return edit


def test_a_statement_without_sha256_digests_finds_its_trusted_content(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey, now: datetime
) -> None:
    # The content digest is over sha256 digests, which such a statement does not
    # name: its content is found among the rows of its name and version instead.
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0")
    sign_custom_statement(plugin, key, now, _sha512_only(plugin))
    trusted = registry.trust(capture(plugin))
    assert registry.verify_plugin(capture(plugin)).content_digest == trusted.plugin.content_digest

    registry.revoke(digest=trusted.plugin.content_digest, reason="bad build")
    with pytest.raises(PolicyError) as refused:
        registry.verify_plugin(capture(plugin))
    assert refused.value.code == "content-revoked"


# SQLite alone: its connection traces the statements sent; PostgreSQL's hot path runs on
# pooled connections (the snapshot itself is tested on both engines:
# tests/registry/test_policy.py::test_a_load_decides_from_one_snapshot).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_decision_reads_its_state_in_one_statement_outside_a_transaction(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    # One statement sees one snapshot by itself: neither BEGIN nor COMMIT is sent for it.
    assert registry.engine.dialect.name == "sqlite"
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)
    registry.trust(capture(plugin), pin=True)
    envelope = (plugin / "plugin.sig").read_bytes()
    registry.state_for(envelope)  # the kept connection opened
    traced: list[str] = []
    connection = registry._hot._connection()[0]
    connection.set_trace_callback(traced.append)
    try:
        state = registry.state_for(envelope)
    finally:
        connection.set_trace_callback(None)
    assert len(traced) == 1, traced
    assert traced[0].startswith("SELECT 0, name, public_key")
    assert state.contents is not None
    [content] = state.contents.values()
    assert (content.version, content.pinned) == ("1.0.0", True)
    assert state.floors == {("hello", content.platforms[0]): "1.0.0"}


def test_a_cursor_for_one_statement_runs_no_second(registry: Registry) -> None:
    with contextlib.closing(HotPath.of(registry.engine)) as hot, hot.statement() as cursor:
        cursor.rows(cursor.sql.keys)
        with pytest.raises(UsageError, match="another state"):
            cursor.rows(cursor.sql.keys)
