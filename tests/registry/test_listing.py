"""The read paths (registry.reader, registry.listing) against the registry's own answers.

The effective status ``vtreg list`` shows is judged from columns alone
(vtreg.verifier.status); here every refusal it can name is brought about in a
real registry, on SQLite and PostgreSQL, and the status of every content is
compared with what the decision core says of its stored envelope at the same
time, before and after the moments keys and signatures expire.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.registry.conftest import SignedPlugin
from vtreg.registry.audit_read import count_events, event_stream
from vtreg.registry.listing import PluginQuery, key_infos, plugin_documents, registry_info
from vtreg.registry.reader import open_reader, read_registry
from vtreg.registry.service import Registry
from vtreg.verifier.decision import decide_envelope
from vtreg.verifier.errors import RegistryError, UsageError, VerificationError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

_DAY = timedelta(days=1)


def _core_status(envelope: bytes, registry: Registry, at: datetime) -> str:
    try:
        decide_envelope(envelope, registry.full_state(), at=at)
    except VerificationError as e:
        return e.code
    return "loadable"


def _signed(plugin: Path, *keys: SigningKey, expires: datetime | None = None) -> Path:
    for key in keys:
        result = sign(capture(plugin), key, at=datetime.now(UTC), expires=expires)
        (plugin / "plugin.sig").write_bytes(result.envelope)
    return plugin


def _fill(registry: Registry, signed_plugin: SignedPlugin) -> None:
    """One content for each refusal a status can name, and some that load."""
    now = datetime.now(UTC)
    keys = {name: SigningKey.generate(name) for name in ("main", "gone", "brief", "narrow")}
    registry.add_key(keys["main"].public_key)
    registry.add_key(keys["gone"].public_key)
    registry.add_key(keys["brief"].public_key, expires=now + 2 * _DAY)
    registry.add_key(keys["narrow"].public_key, scopes=["scoped*"])
    trust = registry.trust
    trust(capture(_signed(signed_plugin("plain", "1.0.0"), keys["main"])))
    trust(capture(_signed(signed_plugin("revokedkey", "1.0.0"), keys["gone"])))
    trust(capture(_signed(signed_plugin("expiring", "1.0.0"), keys["brief"])))
    trust(capture(_signed(signed_plugin("scoped-a", "1.0.0"), keys["narrow"])))
    late = _signed(signed_plugin("sigexp", "1.0.0"), keys["main"], expires=now + 4 * _DAY)
    trust(capture(late))
    both = _signed(signed_plugin("pair", "1.0.0"), keys["main"], keys["brief"])
    trust(capture(both), threshold=2)
    trust(capture(_signed(signed_plugin("cut", "1.0.0"), keys["main"])))
    trust(capture(_signed(signed_plugin("roll", "1.0.0"), keys["main"])))
    trust(capture(_signed(signed_plugin("roll", "2.0.0"), keys["main"])))
    trust(capture(_signed(signed_plugin("pinned", "1.0.0"), keys["main"])), pin=True)
    trust(capture(_signed(signed_plugin("pinned", "2.0.0"), keys["main"])))
    registry.revoke_key(keys["gone"].keyid, "compromised")
    registry.set_key(keys["narrow"].keyid, scopes=["other*"])
    registry.revoke(name="cut", reason="withdrawn")


@pytest.mark.parametrize("days", [0, 3, 5], ids=["now", "key-expired", "signature-expired"])
def test_status_from_columns_is_the_decision_cores(
    database_url: str, signed_plugin: SignedPlugin, days: int
) -> None:
    at = datetime.now(UTC) + days * _DAY
    with Registry.open(database_url) as registry:
        _fill(registry, signed_plugin)
        with registry.snapshot() as connection:
            envelopes: dict[str, bytes] = dict(
                connection.execute(sa.text("SELECT content_digest, envelope FROM plugins")).all()
            )
        expected = {d: _core_status(bytes(e), registry, at) for d, e in envelopes.items()}

    with read_registry(database_url) as reader:
        listed = {
            p["content_digest"]: p["status"] for p in plugin_documents(reader, PluginQuery(), at=at)
        }

    assert listed == expected
    codes = set(listed.values())
    assert {"loadable", "key-revoked", "out-of-scope", "content-revoked", "rollback"} <= codes
    assert ("key-expired" in codes) == (days >= 3)
    assert ("threshold" in codes) == (days >= 3)  # pair: one of its two keys expired
    assert ("signature-expired" in codes) == (days >= 5)


def test_the_listing_is_the_registrys(database_url: str, signed_plugin: SignedPlugin) -> None:
    with Registry.open(database_url) as registry:
        _fill(registry, signed_plugin)
        expected_plugins = [p.to_json() for p in registry.plugins()]
        expected_keys = registry.list_keys()
        expected_info = registry.info()

    reader = open_reader(database_url)
    assert reader is not None  # the common case is the read path's own
    with reader:
        assert list(plugin_documents(reader, PluginQuery())) == expected_plugins
        assert key_infos(reader) == expected_keys
        assert registry_info(reader) == expected_info
        revoked = list(plugin_documents(reader, PluginQuery(revoked=True)))
        assert [p["name"] for p in revoked] == ["cut"]
        rolled = list(plugin_documents(reader, PluginQuery(name="roll")))
        assert [p["version"] for p in rolled] == ["1.0.0", "2.0.0"]


def test_after_continues_in_list_order(database_url: str, signed_plugin: SignedPlugin) -> None:
    with Registry.open(database_url) as registry:
        _fill(registry, signed_plugin)
    with read_registry(database_url) as reader:
        every = [p["content_digest"] for p in plugin_documents(reader, PluginQuery())]
        for index, digest in enumerate(every):
            rest = plugin_documents(reader, PluginQuery(after=digest))
            assert [p["content_digest"] for p in rest] == every[index + 1 :]
        with pytest.raises(UsageError, match="no such content"):
            list(plugin_documents(reader, PluginQuery(after="sha256:" + "0" * 64)))


def test_an_older_schema_is_left_to_the_registry_which_refuses_it(database_url: str) -> None:
    with Registry.open(database_url):
        pass
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    engine.dispose()

    assert open_reader(database_url) is None
    with pytest.raises(RegistryError, match=r"revision 0005.*run `vtreg db upgrade`"):
        read_registry(database_url).__enter__()


def test_a_missing_registry_is_not_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(RegistryError, match="no registry at"):
        read_registry(url).__enter__()
    assert not (tmp_path / "typo.db").exists()


def test_audit_filters_are_the_registrys(database_url: str, signed_plugin: SignedPlugin) -> None:
    with Registry.open(database_url) as registry:
        _fill(registry, signed_plugin)
        events = registry.audit_events(limit=None)
        some_key = events[-1].keyids[0]  # the first key added
        digest = next(e.digest for e in events if e.digest)
        middle = events[len(events) // 2]
        cases: list[dict[str, object]] = [
            {},
            {"plugin": "roll"},
            {"plugin": "scoped-*"},
            {"plugin": "r?ll"},
            {"keyid": some_key},
            {"keyid": some_key, "after": middle.seq},
            {"action": "plugin.trust"},
            {"outcome": "ok", "action": "key.add"},
            {"actor": events[0].actor},
            {"actor": "nobody"},
            {"digest": digest},
            {"digest": digest[: len("sha256:") + 8]},
            {"since": middle.at},
            {"until": middle.at},
            {"after": middle.seq},
        ]
        expected = [registry.audit_events(**case, limit=None) for case in cases]  # type: ignore[arg-type]

    with read_registry(database_url) as reader:
        for case, wanted in zip(cases, expected, strict=True):
            found = list(event_stream(reader, **case))  # type: ignore[arg-type]
            assert found == wanted, case
            assert count_events(reader, **case) == len(wanted), case  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="a name glob may use"):
            event_stream(reader, plugin="h[ab]")
        with pytest.raises(UsageError, match="not a content digest"):
            event_stream(reader, digest="sha256:12")
    assert all(expected[1:3])  # the cases do select something
    assert not expected[9]
