"""The pure trust decision, against hand-built TrustStates: every rule and its refusal code.

No database here: the SQL store's part (building the state) is tested in
tests/registry/test_policy.py, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from vtreg.verifier.decision import decide, decide_trust
from vtreg.verifier.envelope import PAYLOAD_TYPE, encode_envelope, pae
from vtreg.verifier.errors import REFUSAL_CODES, UnsafeFileError, VerificationError, VtregError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signatures import VerifiedPlugin
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import PluginTree, capture
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState

PluginFactory = Callable[..., Path]
Signed = Callable[..., Path]


@pytest.fixture
def signed(plugin_factory: PluginFactory, now: datetime) -> Signed:
    """A plugin directory signed by each of ``keys`` in turn (co-signatures)."""

    def make(*keys: SigningKey, expires: datetime | None = None, **kwargs: object) -> Path:
        plugin = plugin_factory("hello", "1.0.0", **kwargs)
        for key in keys:
            result = sign(capture(plugin), key, at=now, expires=expires)
            (plugin / "plugin.sig").write_bytes(result.envelope)
        return plugin

    return make


def _content(verified: VerifiedPlugin, **changes: object) -> TrustedContent:
    content = TrustedContent(
        verified.name, verified.version, verified.platforms, verified.content_digest
    )
    return replace(content, **changes)  # type: ignore[arg-type]


def _verified(tree: PluginTree, key: SigningKey, now: datetime) -> VerifiedPlugin:
    return decide(tree, TrustState.of_keys([key.public_key]), at=now)


def _code(tree: PluginTree, state: TrustState, at: datetime) -> str:
    with pytest.raises(VerificationError) as refused:
        decide(tree, state, at=at)
    return refused.value.code


def test_keys_alone_trust_what_they_signed(signed: Signed, key: SigningKey, now: datetime) -> None:
    tree = capture(signed(key))

    verified = decide(tree, TrustState.of_keys([key.public_key]), at=now)

    assert (verified.name, verified.version, verified.signers) == ("hello", "1.0.0", (key.keyid,))


def _corrupt_signature(plugin: Path) -> None:
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    (plugin / "plugin.sig").write_text(json.dumps(envelope))


def _sign_twice_with(plugin: Path, key: SigningKey) -> None:
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    payload = base64.b64decode(envelope["payload"])
    sig = key.sign(pae(PAYLOAD_TYPE, payload))
    (plugin / "plugin.sig").write_bytes(
        encode_envelope(PAYLOAD_TYPE, payload, [(key.keyid, sig), (key.keyid, sig)])
    )


def _flip_library_byte(plugin: Path) -> None:
    library = plugin / "libhello.so"
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("attack", "trusted", "expected"),
    [
        pytest.param(lambda p, k, o: (p / "plugin.sig").unlink(), "key", "unsigned", id="unsigned"),
        pytest.param(
            lambda p, k, o: (p / "plugin.sig").write_text("{"), "key", "malformed", id="garbage-sig"
        ),
        pytest.param(lambda p, k, o: None, "other", "unknown-key", id="unknown-key"),
        pytest.param(
            lambda p, k, o: _corrupt_signature(p), "key", "bad-signature", id="bad-signature"
        ),
        pytest.param(lambda p, k, o: None, "both-threshold-2", "threshold", id="threshold"),
        pytest.param(
            lambda p, k, o: _sign_twice_with(p, k),
            "both-threshold-2",
            "threshold",
            id="one-key-twice",
        ),
        pytest.param(lambda p, k, o: None, "revoked", "key-revoked", id="key-revoked"),
        pytest.param(lambda p, k, o: None, "expired", "key-expired", id="key-expired"),
        pytest.param(lambda p, k, o: None, "scoped", "out-of-scope", id="out-of-scope"),
        pytest.param(
            lambda p, k, o: _flip_library_byte(p), "key", "digest-mismatch", id="flipped-byte"
        ),
        pytest.param(
            lambda p, k, o: (p / "README.md").unlink(), "key", "file-missing", id="file-removed"
        ),
        pytest.param(
            lambda p, k, o: (p / "extra.txt").write_text("x"), "key", "file-added", id="file-added"
        ),
        pytest.param(
            lambda p, k, o: (p / "plugin.json").write_text(
                (p / "plugin.json").read_text().replace("1.0.0", "2.0.0")
            ),
            "key",
            "digest-mismatch",
            id="edited-plugin-json",
        ),
    ],
)
def test_each_refusal_has_its_code(
    signed: Signed,
    key: SigningKey,
    other_key: SigningKey,
    now: datetime,
    attack: Callable[[Path, SigningKey, SigningKey], None],
    trusted: str,
    expected: str,
) -> None:
    plugin = signed(key, extra_files={"README.md": b"hello\n"})
    attack(plugin, key, other_key)
    mine = key.public_key
    states = {
        "key": TrustState.of_keys([mine]),
        "other": TrustState.of_keys([other_key.public_key]),
        "both-threshold-2": TrustState.of_keys([mine, other_key.public_key], threshold=2),
        "revoked": TrustState.of_keys([TrustedKey(mine, revoked="laptop stolen")]),
        "expired": TrustState.of_keys([TrustedKey(mine, expires=now - timedelta(seconds=1))]),
        "scoped": TrustState.of_keys([TrustedKey(mine, scopes=("acme-*",))]),
    }

    assert _code(capture(plugin), states[trusted], now) == expected


def test_an_expired_signature_is_refused(signed: Signed, key: SigningKey, now: datetime) -> None:
    tree = capture(signed(key, expires=now + timedelta(hours=1)))
    state = TrustState.of_keys([key.public_key])

    assert decide(tree, state, at=now + timedelta(minutes=59)).expires
    assert _code(tree, state, now + timedelta(hours=1)) == "signature-expired"


def test_a_key_problem_explains_the_shortfall_before_the_count(
    signed: Signed, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    tree = capture(signed(key, other_key))
    state = TrustState.of_keys(
        [key.public_key, TrustedKey(other_key.public_key, revoked="stolen")], threshold=2
    )

    with pytest.raises(VerificationError, match=r"signed by 1/2 .*key revoked \(stolen\)") as e:
        decide(tree, state, at=now)
    assert e.value.code == "key-revoked"
    assert e.value.keyids == tuple(sorted((key.keyid, other_key.keyid)))


def test_unsafe_files_are_refused_by_the_capture_with_their_code(
    signed: Signed, key: SigningKey
) -> None:
    plugin = signed(key)
    (plugin / "link").symlink_to("/etc/passwd")

    with pytest.raises(UnsafeFileError) as refused:
        capture(plugin)
    assert refused.value.code == "unsafe-path"


# --- trusted contents ---


def test_trusted_content_loads(signed: Signed, key: SigningKey, now: datetime) -> None:
    tree = capture(signed(key))
    verified = _verified(tree, key, now)
    state = TrustState.build([key.public_key], [_content(verified)], names=["hello"])

    assert decide(tree, state, at=now).content_digest == verified.content_digest


@pytest.mark.parametrize(
    ("content_of", "expected"),
    [
        pytest.param(lambda v: [], "content-not-trusted", id="not-trusted"),
        pytest.param(
            lambda v: [_content(v, revoked="bad build", revoked_at=v.signed_at)],
            "content-revoked",
            id="revoked",
        ),
        pytest.param(
            lambda v: [_content(v, threshold=2)], "threshold", id="trusted-with-threshold-2"
        ),
        pytest.param(
            lambda v: [
                _content(v),
                _content(v, version="1.1.0", content_digest="sha256:" + "1" * 64),
            ],
            "rollback",
            id="rollback",
        ),
    ],
)
def test_content_rules(
    signed: Signed,
    key: SigningKey,
    now: datetime,
    content_of: Callable[[VerifiedPlugin], list[TrustedContent]],
    expected: str,
) -> None:
    tree = capture(signed(key))
    contents = content_of(_verified(tree, key, now))
    state = TrustState.build([key.public_key], contents, names=["hello"])

    with pytest.raises(VerificationError) as refused:
        decide(tree, state, at=now)
    assert refused.value.code == expected
    assert refused.value.subject is not None
    assert refused.value.subject[:2] == ("hello", "1.0.0")


@pytest.mark.parametrize(
    "newer",
    [
        pytest.param({"pinned": True}, id="this-version-pinned"),
        pytest.param({"platforms": ("darwin-arm64",)}, id="newer-on-another-platform"),
        pytest.param({"revoked": "broken"}, id="newer-revoked"),
    ],
)
def test_an_older_version_loads_when_the_floor_does_not_apply(
    signed: Signed, key: SigningKey, now: datetime, newer: dict[str, object]
) -> None:
    tree = capture(signed(key))
    verified = _verified(tree, key, now)
    this = _content(verified, pinned=newer.get("pinned", False))
    other = _content(
        verified,
        version="1.1.0",
        content_digest="sha256:" + "1" * 64,
        platforms=newer.get("platforms", verified.platforms),
        revoked=newer.get("revoked"),
    )
    state = TrustState.build([key.public_key], [this, other], names=["hello"])

    assert decide(tree, state, at=now).version == "1.0.0"


def test_build_metadata_never_makes_a_rollback(
    signed: Signed, key: SigningKey, now: datetime
) -> None:
    # Semver ignores build metadata for precedence: 1.0.0 and 1.0.0+build.2 are the
    # same version, so neither is older. Each still loads only as trusted content.
    tree = capture(signed(key))
    verified = _verified(tree, key, now)
    rebuilt = _content(verified, version="1.0.0+build.2", content_digest="sha256:" + "4" * 64)
    state = TrustState.build([key.public_key], [_content(verified), rebuilt])

    assert decide(tree, state, at=now).version == "1.0.0"
    untrusted = TrustState.build([key.public_key], [rebuilt])
    assert _code(tree, untrusted, now) == "content-not-trusted"


def test_floors_are_per_name_and_platform(signed: Signed, key: SigningKey, now: datetime) -> None:
    tree = capture(signed(key))
    verified = _verified(tree, key, now)
    darwin = _content(
        verified,
        version="9.0.0",
        platforms=("darwin-arm64",),
        content_digest="sha256:" + "2" * 64,
    )
    state = TrustState.build([key.public_key], [_content(verified), darwin])

    assert state.floors == {
        ("hello", verified.platform): "1.0.0",
        ("hello", "darwin-arm64"): "9.0.0",
    }


def test_floors_a_store_found_are_taken_as_given(
    signed: Signed, key: SigningKey, now: datetime
) -> None:
    # A store that found the floor with an index hands over one content and the floor.
    tree = capture(signed(key))
    verified = _verified(tree, key, now)
    floors = {("hello", verified.platform): "1.0.1-rc.1"}
    state = TrustState.build([key.public_key], [_content(verified)], names=["hello"], floors=floors)

    assert state.floors == floors
    assert _code(tree, state, now) == "rollback"
    pinned = TrustState.build(
        [key.public_key], [_content(verified, pinned=True)], names=["hello"], floors=floors
    )
    assert decide(tree, pinned, at=now).version == "1.0.0"


def test_a_state_without_the_plugins_name_cannot_decide(
    signed: Signed, key: SigningKey, now: datetime
) -> None:
    tree = capture(signed(key))
    state = TrustState.build([key.public_key], [], names=["other"])

    with pytest.raises(VtregError, match="does not hold hello") as undecided:
        decide(tree, state, at=now)
    assert not isinstance(undecided.value, VerificationError)


# --- trusting ---


def test_new_and_older_content_may_be_trusted_but_revoked_content_never(
    signed: Signed, key: SigningKey, now: datetime
) -> None:
    tree = capture(signed(key))
    verified = _verified(tree, key, now)
    newer = _content(verified, version="2.0.0", content_digest="sha256:" + "3" * 64)

    assert decide_trust(tree, TrustState.build([key.public_key], [newer]), at=now)
    revoked = _content(verified, revoked="malware", revoked_at=now)
    with pytest.raises(VerificationError, match="revocation is final") as refused:
        decide_trust(tree, TrustState.build([key.public_key], [revoked]), at=now)
    assert refused.value.code == "content-revoked"


@pytest.mark.parametrize(
    "state_of",
    [
        pytest.param(lambda k: TrustState.of_keys([k]), id="keys-only"),
        pytest.param(lambda k: TrustState.build([k], [], names=["other"]), id="another-name"),
    ],
)
def test_trusting_without_the_names_contents_cannot_decide(
    signed: Signed, key: SigningKey, now: datetime, state_of: Callable[..., TrustState]
) -> None:
    # Without the name's contents there is no knowing whether the content was
    # revoked, and revocation is final.
    tree = capture(signed(key))

    with pytest.raises(VtregError, match="does not hold hello") as undecided:
        decide_trust(tree, state_of(key.public_key), at=now)
    assert not isinstance(undecided.value, VerificationError)


def test_trusting_checks_signatures_like_loading(
    signed: Signed, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    tree = capture(signed(other_key))

    with pytest.raises(VerificationError) as refused:
        decide_trust(tree, TrustState.build([key.public_key], []), at=now)
    assert refused.value.code == "unknown-key"


# --- the codes themselves ---


def test_an_unknown_code_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown refusal code"):
        VerificationError("no", code="nope")


def test_every_code_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "codes.md").read_text()
    documented = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")}
    assert documented == set(REFUSAL_CODES)


# --- what a refusal is filed under ---


def test_a_refusal_after_the_signature_checked_out_names_the_signed_plugin(
    signed: Signed, key: SigningKey, now: datetime
) -> None:
    plugin = signed(key)
    manifest = json.loads((plugin / "plugin.json").read_text())
    (plugin / "plugin.json").write_text(json.dumps({**manifest, "name": "innocent"}))

    with pytest.raises(VerificationError) as refused:
        decide(capture(plugin), TrustState.of_keys([key.public_key]), at=now)

    assert refused.value.code == "digest-mismatch"
    assert refused.value.subject == ("hello", "1.0.0", None)  # not what plugin.json now claims
    assert refused.value.keyids == (key.keyid,)


@pytest.mark.parametrize(
    ("trusted", "at_offset", "expected"),
    [
        pytest.param({}, timedelta(hours=2), "signature-expired", id="expired-signature"),
        pytest.param({"revoked": "stolen"}, timedelta(0), "key-revoked", id="revoked-signer"),
    ],
)
def test_refusals_of_a_signed_statement_name_it_and_its_signers(
    signed: Signed,
    key: SigningKey,
    now: datetime,
    trusted: dict[str, str],
    at_offset: timedelta,
    expected: str,
) -> None:
    tree = capture(signed(key, expires=now + timedelta(hours=1)))
    state = TrustState.of_keys([TrustedKey(key.public_key, **trusted)])  # type: ignore[arg-type]

    with pytest.raises(VerificationError) as refused:
        decide(tree, state, at=now + at_offset)

    assert refused.value.code == expected
    assert refused.value.subject == ("hello", "1.0.0", None)
    assert refused.value.keyids == (key.keyid,)
