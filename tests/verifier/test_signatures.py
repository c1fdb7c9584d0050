"""Sign/verify round trips and every offline threat of docs/threats.md."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.signing import add_sha512, sign_custom_statement, sign_with_sha512_and_urlsafe_alphabet
from vtreg.verifier.envelope import PAYLOAD_TYPE, encode_envelope, pae, parse_envelope
from vtreg.verifier.errors import (
    ContentError,
    ExpiredError,
    FormatError,
    SignatureError,
    UnsafeFileError,
    UsageError,
    VerificationError,
    VtregError,
)
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signatures import content_digest, verify, verify_directory
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import CapturedFile, PluginTree, capture
from vtreg.verifier.trust import TrustedKey

PluginFactory = Callable[..., Path]


def sign_dir(path: Path, key: SigningKey, at: datetime, expires: datetime | None = None) -> bytes:
    result = sign(capture(path), key, at=at, expires=expires)
    (path / "plugin.sig").write_bytes(result.envelope)
    return result.envelope


def test_sign_then_verify(plugin_factory: PluginFactory, key: SigningKey, now: datetime) -> None:
    plugin = plugin_factory("hello", "1.2.3", extra_files={"scripts/run.sh": b"#!/bin/sh\n"})
    sign_dir(plugin, key, now)

    result = verify_directory(str(plugin), [key.public_key], at=now)

    assert (result.name, result.version, result.platform) == ("hello", "1.2.3", "linux-x86_64")
    assert result.library == "libhello.so"
    assert result.signers == (key.keyid,)
    assert set(result.files) == {"libhello.so", "plugin.json", "scripts/run.sh"}
    assert result.content_digest.startswith("sha256:")
    assert result.signed_at == now


def test_content_digest_is_stable_across_cosigning(
    plugin_factory: PluginFactory, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    first = verify_directory(str(plugin), [key.public_key], at=now)

    cosigned = sign(capture(plugin), other_key, at=now + timedelta(days=3))
    (plugin / "plugin.sig").write_bytes(cosigned.envelope)
    both = verify_directory(
        str(plugin), [key.public_key, other_key.public_key], at=now, threshold=2
    )

    assert cosigned.cosigned
    assert cosigned.signatures == 2
    assert both.content_digest == first.content_digest == cosigned.content_digest
    assert both.signers == tuple(sorted([key.keyid, other_key.keyid]))
    assert both.signed_at == now  # the co-signer signed the same payload


def test_a_cosignature_keeps_what_is_signed_and_drops_ignored_fields(
    plugin_factory: PluginFactory, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    envelope = json.loads(sign_dir(plugin, key, now))
    envelope["signatures"][0]["extension"] = {"kind": "x"}
    envelope["note"] = "unsigned"
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    cosigned = json.loads(sign_dir(plugin, other_key, now))

    assert cosigned["payload"] == envelope["payload"]
    assert cosigned["signatures"][0] == {k: envelope["signatures"][0][k] for k in ("keyid", "sig")}
    assert "note" not in cosigned
    both = [key.public_key, other_key.public_key]
    assert len(verify_directory(str(plugin), both, at=now, threshold=2).signers) == 2


def test_signing_twice_with_one_key_changes_nothing(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    envelope = sign_dir(plugin, key, now)

    again = sign(capture(plugin), key, at=now)

    assert again.already_signed
    assert again.envelope == envelope


def test_content_digest_does_not_depend_on_who_signed_or_when(
    plugin_factory: PluginFactory, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    a = sign(capture(plugin), key, at=now).content_digest
    b = sign(capture(plugin), other_key, at=now + timedelta(days=1)).content_digest
    tree = capture(plugin)

    assert (
        a
        == b
        == content_digest("basic", "1.0.0", {p: f.digests["sha256"] for p, f in tree.files.items()})
    )


def test_resigning_changed_content_replaces_old_signatures(
    plugin_factory: PluginFactory, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    (plugin / "README.md").write_text("new file\n")

    result = sign(capture(plugin), other_key, at=now)

    assert result.replaced
    assert result.signatures == 1


# --- threats: the directory changed after signing ---


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_flipped_byte_in_any_file_is_refused(
    data: st.DataObject,
    plugin_factory: PluginFactory,
    key: SigningKey,
    now: datetime,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    plugin = plugin_factory(
        parent=tmp_path_factory.mktemp("flip"), extra_files={"templates/t.txt": b"template\n"}
    )
    sign_dir(plugin, key, now)
    files = sorted(p for p in plugin.rglob("*") if p.is_file())
    target = data.draw(st.sampled_from(files), label="file")
    offset = data.draw(
        st.integers(min_value=0, max_value=target.stat().st_size - 1), label="offset"
    )

    signed = _what_is_checked(plugin)
    _flip(target, offset)

    try:
        verify_directory(str(plugin), [key.public_key], at=now)
    except VerificationError:
        return
    # Only plugin.sig has bytes that no signature covers and nothing reads: a keyid
    # hint, or (renamed) a field that DSSE says to ignore. Everything that counts
    # is what it was.
    assert target.name == "plugin.sig"
    assert _what_is_checked(plugin) == signed


def _what_is_checked(plugin: Path) -> tuple[str, bytes, list[bytes]]:
    """plugin.sig's payload type, payload and signatures: all a verifier decides on."""
    envelope = parse_envelope((plugin / "plugin.sig").read_bytes())
    signatures = [s.signature_bytes() for s in envelope.signatures]
    return envelope.payloadType, envelope.payload_bytes(), signatures


def test_edited_plugin_json_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    manifest = json.loads((plugin / "plugin.json").read_text())
    manifest["allowed_tools"] = ["shell"]
    (plugin / "plugin.json").write_text(json.dumps(manifest))

    # Another length is refused before plugin.json is read at all.
    with pytest.raises(ContentError, match=r"plugin\.json is \d+ bytes; \d+ were signed"):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_plugin_json_edited_to_the_same_length_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    text = (plugin / "plugin.json").read_text()
    (plugin / "plugin.json").write_text(text.replace('"1.0.0"', '"9.0.0"'))

    with pytest.raises(ContentError, match=r"digest of plugin\.json is sha256:[0-9a-f]+…, signed"):
        verify_directory(str(plugin), [key.public_key], at=now)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda p: (p / "extra.txt").write_text("x"), r"extra\.txt not covered", id="file-added"
        ),
        pytest.param(
            lambda p: (p / "sub").mkdir() or (p / "sub" / "x.py").write_text("x"),
            r"sub/x\.py not covered",
            id="file-added-in-subdir",
        ),
        pytest.param(
            lambda p: (p / "README.md").unlink(),
            r"README\.md is signed but missing",
            id="file-removed",
        ),
        pytest.param(
            lambda p: (p / "README.md").rename(p / "README.txt"),
            r"README\.txt not covered",
            id="file-renamed",
        ),
        pytest.param(
            lambda p: (p / "libbasic.so").unlink(),
            r"libbasic\.so is signed but missing",
            id="library-removed",
        ),
    ],
)
def test_added_removed_or_renamed_file_is_refused(
    plugin_factory: PluginFactory,
    key: SigningKey,
    now: datetime,
    change: Callable[[Path], object],
    message: str,
) -> None:
    plugin = plugin_factory(extra_files={"README.md": b"# basic\n"})
    sign_dir(plugin, key, now)

    change(plugin)

    with pytest.raises(ContentError, match=message):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_symlink_inside_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path
) -> None:
    plugin = plugin_factory(extra_files={"README.md": b"readme\n"})
    sign_dir(plugin, key, now)
    outside = tmp_path / "outside.txt"
    outside.write_text("readme\n")
    (plugin / "README.md").unlink()
    (plugin / "README.md").symlink_to(outside)

    with pytest.raises(UnsafeFileError, match=r"README\.md is a symlink"):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_library_swapped_for_another_plugins_library_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path
) -> None:
    plugin = plugin_factory("alpha")
    evil = plugin_factory("alpha", "6.6.6", parent=tmp_path / "evil", defines={"EVIL": "1"})
    sign_dir(plugin, key, now)
    shutil.copyfile(evil / "libalpha.so", plugin / "libalpha.so")

    with pytest.raises(ContentError, match=r"digest of libalpha\.so"):
        verify_directory(str(plugin), [key.public_key], at=now)


# --- threats: who signed ---


def test_unsigned_plugin_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    with pytest.raises(SignatureError, match=r"unsigned: there is no plugin\.sig"):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_signature_by_unknown_key_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, other_key, now)

    with pytest.raises(
        SignatureError, match=r"signed by 0/1 required trusted keys .*not signed by a trusted key"
    ):
        verify_directory(str(plugin), [key.public_key], at=now)


def _resign(plugin: Path, hints: list[str], signer: SigningKey) -> None:
    """plugin.sig with ``signer``'s signature once per hint, each carrying that keyid."""
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    sig = envelope["signatures"][0]["sig"]
    for entry in envelope["signatures"]:
        assert signer.public_key.verify(
            base64.b64decode(entry["sig"]), pae(PAYLOAD_TYPE, base64.b64decode(envelope["payload"]))
        )
    envelope["signatures"] = [{"keyid": hint, "sig": sig} for hint in hints]
    (plugin / "plugin.sig").write_text(json.dumps(envelope))


@pytest.mark.parametrize(
    "hint",
    [
        pytest.param(lambda k, o: "", id="empty"),
        pytest.param(lambda k, o: o.keyid, id="another-trusted-key"),
        pytest.param(lambda k, o: "a" * 64, id="an-unknown-key"),
        pytest.param(lambda k, o: "my-kms-key/1", id="not-a-key-id"),
    ],
)
def test_keyid_is_only_a_hint(
    plugin_factory: PluginFactory,
    key: SigningKey,
    other_key: SigningKey,
    now: datetime,
    hint: Callable[[SigningKey, SigningKey], str],
) -> None:
    # DSSE: keyid "MUST NOT be used for security decisions". A valid signature by a
    # trusted key counts whatever its hint says (securesystemslib and in-toto write
    # keyids of their own).
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    _resign(plugin, [hint(key, other_key)], key)

    result = verify_directory(str(plugin), [other_key.public_key, key.public_key], at=now)

    assert result.signers == (key.keyid,)
    assert [c.status for c in result.checks] == ["valid"]


def test_a_hint_naming_a_trusted_key_does_not_make_someone_elses_signature_count(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    attacker = SigningKey.generate()
    plugin = plugin_factory()
    sign_dir(plugin, attacker, now)
    _resign(plugin, [key.keyid], attacker)

    with pytest.raises(SignatureError, match="bad signature") as refused:
        verify_directory(str(plugin), [key.public_key], at=now)
    assert refused.value.code == "bad-signature"


@pytest.mark.parametrize(
    "hints",
    [
        pytest.param(lambda k, o: [k.keyid, o.keyid], id="own-then-other"),
        pytest.param(lambda k, o: [o.keyid, k.keyid], id="other-then-own"),
        pytest.param(lambda k, o: [o.keyid, o.keyid], id="other-twice"),
        pytest.param(lambda k, o: [o.keyid, ""], id="other-and-none"),
    ],
)
def test_a_hint_cannot_make_one_key_count_twice(
    plugin_factory: PluginFactory,
    key: SigningKey,
    other_key: SigningKey,
    now: datetime,
    hints: Callable[[SigningKey, SigningKey], list[str]],
) -> None:
    # One signature of one key, copied with the hint naming a second trusted key.
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    _resign(plugin, hints(key, other_key), key)

    with pytest.raises(SignatureError, match=r"signed by 1/2 required .*counts once") as refused:
        verify_directory(str(plugin), [key.public_key, other_key.public_key], at=now, threshold=2)
    assert refused.value.code == "threshold"
    assert refused.value.keyids == (key.keyid,)


@pytest.mark.parametrize(
    ("problem", "code"),
    [
        pytest.param(lambda k: TrustedKey(k, revoked="stolen"), "key-revoked", id="revoked"),
        pytest.param(
            lambda k: TrustedKey(k, expires=datetime(2026, 1, 1, tzinfo=UTC)),
            "key-expired",
            id="expired",
        ),
        pytest.param(
            lambda k: TrustedKey(k, scopes=("acme-*",)), "out-of-scope", id="out-of-scope"
        ),
    ],
)
def test_a_hint_neither_costs_a_good_signature_nor_saves_a_bad_key(
    plugin_factory: PluginFactory,
    key: SigningKey,
    other_key: SigningKey,
    now: datetime,
    problem: Callable[..., TrustedKey],
    code: str,
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    _resign(plugin, [other_key.keyid], key)

    # The good key's signature, hinted as the bad key's, counts for the good key ...
    good = verify_directory(str(plugin), [problem(other_key.public_key), key.public_key], at=now)
    assert good.signers == (key.keyid,)

    # ... and the bad key's signature, hinted as the good key's, counts for nobody.
    with pytest.raises(SignatureError) as refused:
        verify_directory(str(plugin), [problem(key.public_key), other_key.public_key], at=now)
    assert refused.value.code == code
    assert refused.value.keyids == (key.keyid,)


def test_threshold_counts_one_key_once(
    plugin_factory: PluginFactory, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    envelope = json.loads(sign_dir(plugin, key, now))
    envelope["signatures"].append(dict(envelope["signatures"][0]))  # the same key, twice
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    with pytest.raises(SignatureError, match=r"signed by 1/2 required .*counts once"):
        verify_directory(str(plugin), [key.public_key, other_key.public_key], at=now, threshold=2)


def test_threshold_met_by_two_distinct_keys(
    plugin_factory: PluginFactory, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    sign_dir(plugin, other_key, now)

    result = verify_directory(
        str(plugin), [key.public_key, other_key.public_key], at=now, threshold=2
    )

    assert len(result.signers) == 2


@pytest.mark.parametrize(
    ("trusted", "message"),
    [
        pytest.param(
            lambda k: TrustedKey(k, revoked="laptop stolen"),
            r"key revoked \(laptop stolen\)",
            id="revoked-key",
        ),
        pytest.param(
            lambda k: TrustedKey(k, expires=datetime(2026, 1, 1, tzinfo=UTC)),
            r"key expired at 2026-01-01T00:00:00Z",
            id="expired-key",
        ),
        pytest.param(
            lambda k: TrustedKey(k, scopes=("acme-*", "tools")),
            r"key may not sign 'basic' \(scope: acme-\*, tools\)",
            id="out-of-scope-key",
        ),
    ],
)
def test_key_status_is_enforced(
    plugin_factory: PluginFactory,
    key: SigningKey,
    now: datetime,
    trusted: Callable[..., TrustedKey],
    message: str,
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)

    with pytest.raises(SignatureError, match=message):
        verify_directory(str(plugin), [trusted(key.public_key)], at=now)


def test_scope_that_covers_the_name_is_accepted(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory("acme-tool")
    sign_dir(plugin, key, now)

    result = verify_directory(str(plugin), [TrustedKey(key.public_key, scopes=("acme-*",))], at=now)

    assert result.name == "acme-tool"


# --- threats: replay and envelope tampering ---


def test_signature_moved_onto_another_plugin_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path
) -> None:
    good = plugin_factory("good")
    other = plugin_factory("other", parent=tmp_path / "o")
    (other / "plugin.sig").write_bytes(sign_dir(good, key, now))

    with pytest.raises(ContentError):
        verify_directory(str(other), [key.public_key], at=now)


def test_signature_moved_onto_another_version_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path
) -> None:
    v1 = plugin_factory("tool", "1.0.0", parent=tmp_path / "v1")
    v2 = plugin_factory("tool", "2.0.0", parent=tmp_path / "v2")
    (v2 / "plugin.sig").write_bytes(sign_dir(v1, key, now))

    with pytest.raises(ContentError, match=r"digest of (libtool\.so|plugin\.json)"):
        verify_directory(str(v2), [key.public_key], at=now)


def test_changed_payload_type_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    envelope = json.loads(sign_dir(plugin, key, now))
    envelope["payloadType"] = "application/json"
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    with pytest.raises(FormatError, match="payloadType is 'application/json'"):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_payload_type_resigned_by_attacker_still_fails_signature(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    # The signature covers the payloadType through PAE: re-labelling breaks it.
    plugin = plugin_factory()
    envelope = json.loads(sign_dir(plugin, key, now))
    payload = base64.b64decode(envelope["payload"])
    assert key.public_key.verify(
        base64.b64decode(envelope["signatures"][0]["sig"]), pae(PAYLOAD_TYPE, payload)
    )
    assert not key.public_key.verify(
        base64.b64decode(envelope["signatures"][0]["sig"]), pae("application/other", payload)
    )


def test_tampered_payload_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    envelope = json.loads(sign_dir(plugin, key, now))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["version"] = "9.9.9"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    with pytest.raises(SignatureError, match="bad signature"):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_unauthenticated_payload_is_never_parsed(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    # Garbage in an unsigned payload must give a signature error, not a parse error.
    plugin = plugin_factory()
    envelope = encode_envelope(PAYLOAD_TYPE, b"{not json", [(key.keyid, b"\0" * 64)])
    (plugin / "plugin.sig").write_bytes(envelope)

    with pytest.raises(SignatureError):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_expired_signature_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now - timedelta(days=30), expires=now - timedelta(days=1))

    with pytest.raises(ExpiredError, match=r"signature expired at 2026-11-23T12:00:00Z"):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_signature_is_valid_until_it_expires(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now, expires=now + timedelta(hours=1))

    assert verify_directory(str(plugin), [key.public_key], at=now + timedelta(minutes=59)).expires
    with pytest.raises(ExpiredError):
        verify_directory(str(plugin), [key.public_key], at=now + timedelta(hours=1))


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        pytest.param(b"", FormatError, "not valid JSON", id="empty"),
        pytest.param(
            b'{"payloadType": "application/vnd.in-toto+json", "payl',
            FormatError,
            "not valid JSON",
            id="truncated",
        ),
        pytest.param(os.urandom(512), FormatError, "not valid", id="garbage"),
        pytest.param(b"[]", FormatError, "must be a JSON object", id="not-an-object"),
        pytest.param(
            b'{"payloadType":"a","payloadType":"b","payload":"","signatures":[]}',
            FormatError,
            "duplicate key",
            id="duplicate-key",
        ),
        pytest.param(
            b'{"payloadType":"application/vnd.in-toto+json","payload":"!!","signatures":[{"sig":"'
            + base64.b64encode(bytes(64))
            + b'"}]}',
            FormatError,
            "payload: is not valid base64",
            id="bad-base64",
        ),
        pytest.param(
            b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":64}]}',
            FormatError,
            r"signatures\.0\.sig: Input should be a valid string",
            id="signature-not-a-string",
        ),
        pytest.param(
            b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"k"}]}',
            FormatError,
            r"signatures\.0\.sig: Field required",
            id="signature-missing",
        ),
        pytest.param(
            b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":["AAAA"]}',
            FormatError,
            r"signatures\.0: Input should be a valid dictionary",
            id="entry-not-an-object",
        ),
        pytest.param(
            b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":{}}',
            FormatError,
            r"signatures: Input should be a valid list",
            id="signatures-not-a-list",
        ),
        pytest.param(
            b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"'
            + base64.b64encode(bytes(769))
            + b'"}]}',
            FormatError,
            r"signatures\.0\.sig: String should have at most 1024 characters",
            id="signature-too-long",
        ),
        pytest.param(
            b" " * (1024 * 1024 + 1),
            FormatError,
            "larger than the 1048576-byte limit",
            id="oversize",
        ),
        pytest.param(
            b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AB=="}]}',
            FormatError,
            "not canonical base64",
            id="non-canonical-base64",
        ),
    ],
)
def test_malformed_signature_file_is_refused(
    plugin_factory: PluginFactory,
    key: SigningKey,
    now: datetime,
    content: bytes,
    error: type[Exception],
    message: str,
) -> None:
    plugin = plugin_factory()
    (plugin / "plugin.sig").write_bytes(content)

    with pytest.raises(error, match=message):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_subject_with_only_weak_digest_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()

    def only_sha1(subject: dict[str, object]) -> None:
        if subject["name"] == "plugin.json":
            subject["digest"] = {"sha1": "0" * 40}

    sign_custom_statement(plugin, key, now, only_sha1)

    with pytest.raises(FormatError, match=r"plugin\.json has no trusted digest \(found sha1"):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_every_trusted_algorithm_in_a_subject_is_checked(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()

    def add_wrong_sha512(subject: dict[str, object]) -> None:
        if subject["name"] == "libbasic.so":
            subject["digest"] = {**subject["digest"], "sha512": "ab" * 64}  # type: ignore[dict-item]

    sign_custom_statement(plugin, key, now, add_wrong_sha512)

    with pytest.raises(ContentError, match=r"digest of libbasic\.so is sha512:"):
        verify_directory(str(plugin), [key.public_key], at=now)


def _digest_edit(plugin: Path, digests: dict[str, str]) -> Callable[[dict[str, object]], None]:
    """A subject edit giving libbasic.so these digests: "good" is the real one, else a value."""

    def edit(subject: dict[str, object]) -> None:
        if subject["name"] != "libbasic.so":
            return
        data = (plugin / "libbasic.so").read_bytes()
        subject["digest"] = {
            a: hashlib.new(a, data).hexdigest() if v == "good" else v for a, v in digests.items()
        }

    return edit


@pytest.mark.parametrize(
    ("digests", "refusal"),
    [
        pytest.param({"sha256": "good", "sha512": "good"}, None, id="all-match"),
        # in-toto's DigestSet says two sets SHOULD match if ANY accepted field does;
        # vtreg requires every accepted one (docs/formats.md), so no checker disagrees.
        pytest.param({"sha256": "good", "sha512": "ab" * 64}, "sha512", id="one-of-two-differs"),
        pytest.param({"sha256": "cd" * 32, "sha512": "good"}, "sha256", id="sha256-differs"),
        # Unaccepted (md5, sha1) and unrecognised algorithms are ignored, as in-toto says.
        pytest.param(
            {"sha256": "good", "md5": "0" * 32, "sha1": "1" * 40}, None, id="weak-ignored"
        ),
        pytest.param(
            {"sha256": "good", "gitBlob": "2" * 40, "dirHash1": "x", "sha224": "3" * 56},
            None,
            id="unrecognised-ignored",
        ),
        pytest.param(
            {"gitBlob": "2" * 40, "sha224": "3" * 56}, "no trusted digest", id="none-accepted"
        ),
    ],
)
def test_a_digest_set_matches_when_every_accepted_algorithm_matches(
    plugin_factory: PluginFactory,
    key: SigningKey,
    now: datetime,
    digests: dict[str, str],
    refusal: str | None,
) -> None:
    plugin = plugin_factory()
    sign_custom_statement(plugin, key, now, _digest_edit(plugin, digests))

    if refusal is None:
        result = verify_directory(str(plugin), [key.public_key], at=now)
        assert set(result.files["libbasic.so"]) == {"sha256"} | (set(digests) & {"sha512"})
        return
    with pytest.raises(VerificationError, match=f"libbasic\\.so.*{refusal}"):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_extra_algorithms_that_match_are_accepted(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_custom_statement(plugin, key, now, add_sha512(plugin))

    result = verify_directory(str(plugin), [key.public_key], at=now)
    assert all("sha512" in d for d in result.files.values())


def test_the_capture_computes_every_algorithm_the_statement_names(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_custom_statement(plugin, key, now, add_sha512(plugin))

    tree = capture(plugin)  # no algorithms asked for: plugin.sig names sha512 (and md5)

    assert tree.algorithms == {"sha256", "sha512"}  # md5 is never computed: never trusted
    assert verify(tree, [key.public_key], at=now).files["libbasic.so"]["sha512"]


def test_a_url_safe_payload_is_read_alike_by_the_capture_and_the_verifier(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    # The capture picks its digests from plugin.sig before the envelope parser
    # runs: it must decode the payload exactly as the parser does, or a valid
    # plugin cannot be decided and a tampered one escapes its refusal.
    plugin = plugin_factory()
    sign_with_sha512_and_urlsafe_alphabet(plugin, key, now)

    assert "sha512" in capture(plugin).algorithms
    assert verify(capture(plugin), [key.public_key], at=now).files["libbasic.so"]["sha512"]
    library = plugin / "libbasic.so"
    data = bytearray(library.read_bytes())
    data[-1] ^= 1  # the same length: only the digests can tell
    library.write_bytes(bytes(data))
    with pytest.raises(ContentError, match=r"digest of libbasic\.so") as refused:
        verify(capture(plugin), [key.public_key], at=now)
    assert refused.value.code == "digest-mismatch"


def test_a_capture_lacking_a_named_algorithm_cannot_decide(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    # A tree built by someone else with fewer digests than the statement names is
    # "could not decide", never a check of only some digests.
    plugin = plugin_factory()
    sign_custom_statement(plugin, key, now, add_sha512(plugin))
    full = capture(plugin)
    files = {
        path: CapturedFile(path, f.size, {"sha256": f.digests["sha256"]}, f.head)
        for path, f in full.files.items()
    }
    partial = PluginTree(full.root, files, full.manifest, full.signature, frozenset({"sha256"}))

    with pytest.raises(VtregError, match="has no sha512 digests") as undecided:
        verify(partial, [key.public_key], at=now)
    assert not isinstance(undecided.value, VerificationError)


def test_statement_inconsistent_with_plugin_json_is_refused(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    envelope = json.loads(sign(capture(plugin), key, at=now).envelope)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["version"] = "1.0.1"
    payload = json.dumps(statement).encode()
    (plugin / "plugin.sig").write_bytes(
        encode_envelope(PAYLOAD_TYPE, payload, [(key.keyid, key.sign(pae(PAYLOAD_TYPE, payload)))])
    )

    with pytest.raises(
        FormatError, match=r"the signature says version '1\.0\.1' but plugin\.json says '1\.0\.0'"
    ):
        verify_directory(str(plugin), [key.public_key], at=now)


def test_verify_uses_the_tree_it_is_given(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    tree = capture(plugin)
    (plugin / "libbasic.so").write_bytes(b"changed after capture")

    assert verify(tree, [key.public_key], at=now).name == "basic"


def test_threshold_below_one_is_a_usage_error(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    with pytest.raises(UsageError):
        verify_directory(str(plugin), [key.public_key], at=now, threshold=0)


def test_signing_refuses_a_past_expiry(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    with pytest.raises(UsageError, match="not in the future"):
        sign(capture(plugin_factory()), key, at=now, expires=now - timedelta(seconds=1))


def test_signing_needs_a_real_library(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    (plugin / "libbasic.so").write_bytes(b"not a library")
    with pytest.raises(FormatError, match=r"libbasic\.so is not a shared library"):
        sign(capture(plugin), key, at=now)


def test_cosigning_stops_at_the_signature_limit(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    # Someone who can write the directory stuffs plugin.sig with junk signatures.
    plugin = plugin_factory()
    envelope = json.loads(sign_dir(plugin, SigningKey.generate(), now))
    junk = {"keyid": "", "sig": base64.b64encode(os.urandom(64)).decode()}
    envelope["signatures"] += [junk] * 31
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    with pytest.raises(UsageError, match="already carries 32 signatures"):
        sign(capture(plugin), key, at=now)
    fresh = sign(capture(plugin), key, at=now, fresh=True)
    assert fresh.signatures == 1
    assert fresh.replaced


def test_sign_never_writes_a_signature_verify_cannot_read(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    sign_dir(plugin, key, now)
    before = (plugin / "plugin.sig").read_bytes()
    for n in range(8000):
        (plugin / f"asset-{n:05d}-{'x' * 60}.txt").write_bytes(b"")

    with pytest.raises(FormatError, match=r"would be [\d,]+ bytes, more than the 1,048,576"):
        sign(capture(plugin), key, at=now, fresh=True)
    assert (plugin / "plugin.sig").read_bytes() == before  # sign is pure; nothing was written


def test_a_path_no_statement_may_name_is_a_clear_refusal(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    fd = os.open(plugin, os.O_RDONLY | os.O_DIRECTORY)
    for n in range(20):  # 20 x 251 bytes: past what a subject name may be (4096 bytes)
        name = f"{n:02d}{'d' * 249}"
        os.mkdir(name, dir_fd=fd)  # step by step: the whole path is past PATH_MAX
        fd, parent = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)

    with pytest.raises(FormatError, match=r"cannot sign .*not a relative path"):
        sign(capture(plugin), key, at=now)
