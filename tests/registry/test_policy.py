"""Trust decisions against the registry, on both engines: every registry threat of docs/threats.md."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.registry.conftest import SignedPlugin
from vtreg.registry.models import Key, Plugin
from vtreg.registry.service import Registry
from vtreg.registry.statements import Cursor
from vtreg.verifier.errors import (
    NotFoundError,
    PolicyError,
    SignatureError,
    UsageError,
    VerificationError,
)
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture


def _last_event(registry: Registry) -> tuple[str, str, str | None]:
    [event] = registry.audit_events(limit=1)
    return event.action, event.outcome, event.reason


def test_trust_then_verify(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)

    result = registry.trust(capture(plugin))
    verified = registry.verify_plugin(capture(plugin))

    assert result.created
    assert result.plugin.signers == (key.keyid,)
    assert verified.content_digest == result.plugin.content_digest
    assert registry.lookup(verified.content_digest) == result.plugin
    assert _last_event(registry) == ("plugin.verify", "allowed", None)


def test_trusting_twice_changes_nothing(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)
    registry.trust(capture(plugin))
    events = len(registry.audit_events())

    again = registry.trust(capture(plugin))

    assert not again.created
    assert not again.changed
    assert len(registry.audit_events()) == events


def _refused(
    registry: Registry, plugin: Path, error: type[VerificationError], match: str, code: str
) -> None:
    with pytest.raises(error, match=match) as refused:
        registry.verify_plugin(capture(plugin))
    assert refused.value.code == code
    [event] = registry.audit_events(limit=1)
    assert (event.action, event.outcome) == ("plugin.verify", "refused")
    assert event.reason is not None
    assert re.search(match, event.reason), event.reason
    assert event.details["code"] == code


def test_unknown_key_is_refused(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey, other_key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    _refused(
        registry,
        signed_plugin("hello", "1.0.0", other_key),
        SignatureError,
        "signed by 0/1",
        "unknown-key",
    )


def test_signed_but_untrusted_content_is_refused(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    _refused(
        registry,
        signed_plugin("hello", "1.0.0", key),
        PolicyError,
        r"hello 1.0.0 \(sha256:.*\) is signed but not trusted",
        "content-not-trusted",
    )


def test_revoked_key_is_refused(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)
    registry.trust(capture(plugin))

    registry.revoke_key(key.keyid, "laptop stolen")

    _refused(
        registry,
        plugin,
        SignatureError,
        r"signed by 0/1 .*key revoked \(laptop stolen\)",
        "key-revoked",
    )


def test_revoking_one_signer_leaves_plugins_other_keys_signed(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey, other_key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    registry.add_key(other_key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key, other_key)
    strict = signed_plugin("strict", "1.0.0", key, other_key)
    registry.trust(capture(plugin))
    registry.trust(capture(strict), threshold=2)

    registry.revoke_key(key.keyid, "compromised")

    assert registry.verify_plugin(capture(plugin)).signers == (other_key.keyid,)
    _refused(registry, strict, SignatureError, "signed by 1/2", "threshold")


def test_expired_key_is_refused(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    registry.add_key(key.public_key, expires=expires)
    plugin = signed_plugin("hello", "1.0.0", key)
    registry.trust(capture(plugin))

    with pytest.raises(SignatureError, match="key expired at") as refused:
        registry.verify_plugin(capture(plugin), at=expires + timedelta(seconds=1))
    assert refused.value.code == "key-expired"
    assert _last_event(registry)[:2] == ("plugin.verify", "refused")


def test_out_of_scope_key_is_refused(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key, scopes=["acme-*"])
    ours = signed_plugin("acme-tool", "1.0.0", key)
    theirs = signed_plugin("hello", "1.0.0", key)
    registry.trust(capture(ours))

    assert registry.verify_plugin(capture(ours)).name == "acme-tool"
    with pytest.raises(SignatureError, match=r"key may not sign 'hello' \(scope: acme-\*\)") as e:
        registry.trust(capture(theirs))
    assert e.value.code == "out-of-scope"
    assert _last_event(registry)[:2] == ("plugin.trust", "refused")


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        pytest.param({"name": "hello"}, 2, id="by-name"),
        pytest.param({"name": "hello", "version": "1.0.0"}, 1, id="by-version"),
        pytest.param({"digest": "FIRST"}, 1, id="by-digest"),
    ],
)
def test_revoked_plugin_is_refused(
    registry: Registry,
    signed_plugin: SignedPlugin,
    key: SigningKey,
    how: dict[str, str],
    expected: int,
) -> None:
    registry.add_key(key.public_key)
    v1 = signed_plugin("hello", "1.0.0", key)
    v2 = signed_plugin("hello", "1.1.0", key)
    first = registry.trust(capture(v1), pin=True).plugin
    registry.trust(capture(v2))
    if how.get("digest") == "FIRST":
        how = {"digest": first.content_digest}

    revoked = registry.revoke(reason="bad build", **how)

    assert len(revoked) == expected
    _refused(
        registry, v1, PolicyError, r"hello 1.0.0 was revoked at .*\(bad build\)", "content-revoked"
    )
    revocations = registry.audit_events(action="plugin.revoke")
    assert len(revocations) == expected
    assert {e.reason for e in revocations} == {"bad build"}
    with pytest.raises(PolicyError, match="revocation is final"):
        registry.trust(capture(v1))


def test_rollback_to_an_older_trusted_version_is_refused_unless_pinned(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    old = signed_plugin("hello", "1.0.0", key)
    new = signed_plugin("hello", "1.1.0", key)
    registry.trust(capture(old))
    result = registry.trust(capture(new))
    assert result.newer is None

    _refused(
        registry,
        old,
        PolicyError,
        r"rollback: hello 1.0.0 is older than the trusted hello 1.1.0",
        "rollback",
    )
    assert registry.verify_plugin(capture(new)).version == "1.1.0"

    registry.trust(capture(old), pin=True)
    assert registry.verify_plugin(capture(old)).version == "1.0.0"


def test_threshold_recorded_at_trust_time_is_enforced_later(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey, other_key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    registry.add_key(other_key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)

    with pytest.raises(SignatureError, match="signed by 1/2"):
        registry.trust(capture(plugin), threshold=2)
    assert _last_event(registry)[:2] == ("plugin.trust", "refused")

    both = signed_plugin("hello", "1.0.0", key, other_key)
    registry.trust(capture(both), threshold=2)
    # The same content with one signature stripped: not enough for what was trusted.
    (both / "plugin.sig").write_bytes((plugin / "plugin.sig").read_bytes())
    _refused(
        registry,
        both,
        SignatureError,
        r"signed by 1/2 trusted keys required when hello 1.0.0 was trusted",
        "threshold",
    )


def test_unsigned_plugin_is_refused(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    _refused(registry, signed_plugin("hello", "1.0.0"), SignatureError, "unsigned", "unsigned")


def test_tampered_trusted_plugin_is_refused(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)
    registry.trust(capture(plugin))
    (plugin / "extra.txt").write_text("x")
    _refused(registry, plugin, VerificationError, r"extra\.txt not covered", "file-added")


# --- keys ---


def test_key_lifecycle(registry: Registry, key: SigningKey) -> None:
    expires = datetime.now(UTC) + timedelta(days=90)
    info, added = registry.add_key(key.public_key, name="alice", scopes=["a-*"], expires=expires)
    # The same terms again (a relative expiry re-run a moment later included): nothing changes.
    again, added_again = registry.add_key(
        key.public_key, scopes=["a-*"], expires=expires + timedelta(seconds=5)
    )

    assert added
    assert not added_again
    assert again == info
    for other_name, other_scopes in (
        ("alice", []),  # no --scope: any plugin, wider
        ("alice", ["b-*"]),
        ("bob", ["a-*"]),
    ):
        with pytest.raises(UsageError, match="already trusted as alice, may sign a-\\*"):
            registry.add_key(key.public_key, name=other_name, scopes=other_scopes, expires=expires)
    # Another expiry is not another key: the stored one stands (the CLI warns).
    assert registry.add_key(key.public_key, scopes=["a-*"], expires=None) == (info, False)
    assert registry.list_keys() == [info]
    assert [e.action for e in registry.audit_events()] == ["key.add"]
    assert registry.resolve_keyid(key.keyid[:10]) == key.keyid
    assert [k.keyid for k in registry.list_keys()] == [key.keyid]

    revocation = registry.revoke_key(key.keyid, "rotated")
    assert revocation.changed
    assert revocation.key.revoked_reason == "rotated"
    assert registry.revoke_key(key.keyid, "again").changed is False
    with pytest.raises(PolicyError, match="cannot be trusted again"):
        registry.add_key(key.public_key, scopes=["a-*"], expires=expires)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param("0" * 64, NotFoundError, id="unknown"),
        pytest.param("abc", UsageError, id="too-short"),
        pytest.param("zzz", UsageError, id="not-hex"),
        pytest.param("zzzzzzzzzz", NotFoundError, id="no-such-name"),
    ],
)
def test_resolving_bad_key_ids(registry: Registry, text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        registry.resolve_keyid(text)


def test_key_input_is_validated(registry: Registry, key: SigningKey) -> None:
    with pytest.raises(UsageError, match="not in the future"):
        registry.add_key(key.public_key, expires=datetime.now(UTC) - timedelta(days=1))
    with pytest.raises(UsageError, match="scope"):
        registry.add_key(key.public_key, scopes=[""])
    with pytest.raises(UsageError, match="needs a --reason"):
        registry.revoke_key(key.keyid, " ")
    assert registry.list_keys() == []
    assert registry.audit_events() == []


def test_revoking_nothing_is_an_error(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="nothing trusted matches ghost"):
        registry.revoke(name="ghost", reason="x")


def test_list_by_signer(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey, other_key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    registry.add_key(other_key.public_key)
    registry.trust(capture(signed_plugin("a", "1.0.0", key)))
    registry.trust(capture(signed_plugin("b", "1.0.0", other_key)))
    registry.trust(capture(signed_plugin("c", "1.0.0", key, other_key)))

    assert [p.name for p in registry.plugins(signed_by=key.keyid)] == ["a", "c"]
    registry.revoke(name="a", reason="x")
    assert [p.name for p in registry.plugins(signed_by=key.keyid, revoked=False)] == ["c"]
    assert [p.name for p in registry.plugins(revoked=True)] == ["a"]


def test_a_co_signature_is_kept_when_trusted_again(
    registry: Registry,
    signed_plugin: SignedPlugin,
    key: SigningKey,
    other_key: SigningKey,
    now: datetime,
) -> None:
    registry.add_key(key.public_key)
    registry.add_key(other_key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)
    single = (plugin / "plugin.sig").read_bytes()
    first = registry.trust(capture(plugin))
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), other_key, at=now).envelope)

    cosigned = registry.trust(capture(plugin))

    both = tuple(sorted((key.keyid, other_key.keyid)))
    assert first.plugin.signers == (key.keyid,)
    assert (cosigned.created, cosigned.changed) == (False, True)
    assert cosigned.plugin.signers == both
    stored = registry.lookup(first.plugin.content_digest)
    assert stored is not None
    assert stored.signers == both
    [event] = registry.audit_events(limit=1)
    assert (event.action, event.outcome) == ("plugin.trust", "ok")
    assert event.details["signers"] == list(both)
    assert (
        _stored_envelope(registry, first.plugin.content_digest)
        == (plugin / "plugin.sig").read_bytes()
    )

    # The fewer-signature envelope again changes nothing: the co-signed one stays.
    (plugin / "plugin.sig").write_bytes(single)
    again = registry.trust(capture(plugin))
    assert not again.changed
    assert again.plugin.signers == both
    assert _stored_envelope(registry, first.plugin.content_digest) != single


def _stored_envelope(registry: Registry, digest: str) -> bytes:
    with registry.engine.connect() as connection:
        envelope = connection.execute(
            sa.select(Plugin.envelope).where(Plugin.content_digest == digest)
        ).scalar_one()
    return bytes(envelope)


@contextlib.contextmanager
def _revoking_meanwhile(registry: Registry, keyid: str) -> Iterator[Callable[[], None]]:
    """Another operator's key revocation, caught half-way: the chain head is
    locked and the key row updated, nothing committed yet. Yields ``commit``."""
    with registry.engine.connect() as connection:
        transaction = connection.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT seq FROM audit_chain_head FOR UPDATE"))
        connection.execute(
            sa.update(Key)
            .where(Key.keyid == keyid)
            .values(revoked_at=datetime.now(UTC), revoked_by="other@host", revoked_reason="stolen")
        )
        try:
            yield transaction.commit
        finally:
            if transaction.is_active:
                transaction.rollback()


def _wait_until_blocked(registry: Registry, worker: threading.Thread) -> None:
    """Until ``worker`` waits for the lock the revocation holds."""
    if registry.engine.dialect.name == "sqlite":
        # SQLite cannot show who waits; a reader that did not wait would have
        # read the keys (WAL readers never block) well within this.
        worker.join(0.5)
        assert worker.is_alive(), "the decision did not wait for the writer"
        return
    with registry.engine.connect() as probe:
        for _ in range(1000):
            waiting = probe.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting or not worker.is_alive():
                break
            worker.join(0.01)
    assert worker.is_alive(), "the decision did not wait for the writer"


@pytest.mark.parametrize("decision", ["trust", "verify"])
def test_a_key_revoked_while_deciding_is_seen(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey, decision: str
) -> None:
    # The keys are read inside the transaction that locks the chain head, so a
    # revocation that holds the lock is waited for, never decided around.
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)
    if decision == "verify":
        registry.trust(capture(plugin))
    tree = capture(plugin)
    decide = registry.trust if decision == "trust" else registry.verify_plugin
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            decide(tree)
        except BaseException as e:
            outcome.append(e)
        else:
            outcome.append(None)

    with _revoking_meanwhile(registry, key.keyid) as commit:
        worker = threading.Thread(target=run)
        worker.start()
        _wait_until_blocked(registry, worker)
        commit()
    worker.join(60)

    [error] = outcome
    assert isinstance(error, SignatureError), error
    assert "revoked" in str(error)
    assert _last_event(registry)[:2] == (f"plugin.{decision}", "refused")


def test_tampering_is_filed_under_the_signed_name(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey
) -> None:
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", key)
    registry.trust(capture(plugin))
    manifest = (plugin / "plugin.json").read_text()
    (plugin / "plugin.json").write_text(manifest.replace('"hello"', '"innocent"'))

    with pytest.raises(
        VerificationError, match=r"plugin\.json is [\d,]+ bytes; [\d,]+ were signed"
    ):
        registry.verify_plugin(capture(plugin))

    [event] = registry.audit_events(plugin="hello", outcome="refused")
    assert (event.version, event.digest, event.keyids) == ("1.0.0", None, (key.keyid,))
    assert "unverified_name" not in event.details


def test_a_load_decides_from_one_snapshot(
    registry: Registry,
    database_url: str,
    signed_plugin: SignedPlugin,
    key: SigningKey,
    other_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Between the decision's read of the keys and of the contents (one statement:
    # after its first row, a key, is fetched, before the rest are), another host
    # revokes the signer and trusts the same content as co-signed by another key.
    # In no order of those events may the load be allowed.
    registry.add_key(key.public_key)
    registry.add_key(other_key.public_key)
    by_other = capture(signed_plugin("hello", "1.0.0", other_key))
    by_key = capture(signed_plugin("hello", "1.0.0", key))
    other_host = Registry.open(database_url)
    interleaved: list[bool] = []

    def rows(self: Cursor, statement: str, params: Sequence[object] = ()) -> list[object]:
        dbapi = self._cursor
        dbapi.execute(statement, tuple(params))
        if dbapi.description is None:
            return []
        first = dbapi.fetchone()  # SQLite computes the rest as they are fetched
        if " FROM keys " in statement and " FROM plugins " in statement and not interleaved:
            interleaved.append(True)  # once: the other host's own reads pass through here too
            other_host.revoke_key(key.keyid, "compromised")
            other_host.trust(by_other)
        return [first, *dbapi.fetchall()] if first is not None else []

    monkeypatch.setattr(Cursor, "rows", rows)
    try:
        with pytest.raises(VerificationError) as refused:
            registry.authorize(by_key, at=datetime.now(UTC))
    finally:
        other_host.close()
    assert interleaved
    assert refused.value.code == "content-not-trusted"  # the keys as they were, and no content


def test_hostile_keyid_hints_neither_reach_the_terminal_nor_stop_the_audit(
    registry: Registry, signed_plugin: SignedPlugin, key: SigningKey, other_key: SigningKey
) -> None:
    # The hint is unauthenticated: an escape sequence in it must not repaint the
    # refusal, and a NUL (which PostgreSQL text cannot hold) must not make the
    # refusal unrecordable, hiding attempts from `vtreg audit`.
    registry.add_key(key.public_key)
    plugin = signed_plugin("hello", "1.0.0", other_key)
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    envelope["signatures"][0]["keyid"] = "\x00\x1b[2K\rverified\u202e"
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    with pytest.raises(SignatureError) as refused:
        registry.verify_plugin(capture(plugin))

    assert refused.value.code == "unknown-key"
    [event] = registry.audit_events(limit=1)
    assert event.outcome == "refused"
    assert event.reason is not None
    assert "\\x00\\x1b[2K\\x0dverified\\u202e" in event.reason
    assert event.reason.isprintable()
