"""DSSE PAE, envelope and statement parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtreg.verifier.envelope import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    PluginPredicate,
    Statement,
    Subject,
    b64decode,
    b64encode,
    encode_envelope,
    pae,
    parse_envelope,
    parse_statement,
)
from vtreg.verifier.errors import FormatError


def test_pae_matches_the_dsse_spec_example() -> None:
    # From the DSSE protocol specification.
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t\u00e9", b"\x00\xff") == b"DSSEv1 3 t\xc3\xa9 2 \x00\xff"


@given(st.binary(max_size=300))
def test_base64_round_trips(data: bytes) -> None:
    assert b64decode(b64encode(data), "x") == data


def test_url_safe_base64_is_accepted_as_dsse_allows() -> None:
    assert b64decode("-_8=", "x") == b"\xfb\xff"


def _statement(**predicate: object) -> Statement:
    fields: dict[str, object] = {
        "name": "hello",
        "version": "1.0.0",
        "abi_version": 1,
        "platform": "linux-x86_64",
        "library": "libhello.so",
        "signed_at": datetime(2026, 11, 24, 8, 0, tzinfo=UTC),
        "expires": None,
        "lengths": {"libhello.so": 4096},
    }
    fields.update(predicate)
    return Statement(
        type=STATEMENT_TYPE,
        subject=[Subject(name="libhello.so", digest={"sha256": "a" * 64})],
        predicateType=PREDICATE_TYPE,
        predicate=PluginPredicate.model_validate(fields),
    )


def test_statement_payload_is_an_in_toto_statement_v1() -> None:
    payload = json.loads(_statement().to_payload())

    assert payload == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "libhello.so", "digest": {"sha256": "a" * 64}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "name": "hello",
            "version": "1.0.0",
            "abi_version": 1,
            "platform": "linux-x86_64",
            "library": "libhello.so",
            "signed_at": "2026-11-24T08:00:00Z",
            "expires": None,
            "lengths": {"libhello.so": 4096},
        },
    }
    assert parse_statement(_statement().to_payload()) == _statement()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"),
            "_type",
            id="old-statement-type",
        ),
        pytest.param(
            lambda s: s.update(predicateType="https://slsa.dev/provenance/v1"),
            "predicateType",
            id="other-predicate",
        ),
        pytest.param(lambda s: s.update(extra=1), "extra: unexpected field", id="extra-field"),
        pytest.param(
            lambda s: s["predicate"].update(signed_at="2026-11-24T08:00:00+01:00"),
            "ending in 'Z'",
            id="non-utc-time",
        ),
        *[
            pytest.param(
                lambda s, t=t: s["predicate"].update(signed_at=t), "RFC 3339 UTC time", id=i
            )
            for t, i in [
                ("2099-01-01+00:00", "date-with-offset"),
                ("2099-01-01Z", "date-only"),
                ("2026-W48-2T08:00:00Z", "week-date"),
                ("20261124T080000Z", "iso-basic"),
                ("2026-11-24 08:00:00Z", "space-separator"),
                ("2026-11-24T08:00Z", "no-seconds"),
                ("\uff12026-11-24T08:00:00Z", "fullwidth-digit"),
            ]
        ],
        pytest.param(
            lambda s: s["predicate"].update(signed_at="2026-02-30T08:00:00Z"),
            "not a valid time",
            id="no-such-day",
        ),
        pytest.param(
            lambda s: s["predicate"].update(platform="Linux x86"),
            "not a platform",
            id="bad-platform",
        ),
        pytest.param(lambda s: s["predicate"].update(abi_version=0), "abi_version", id="abi-zero"),
        pytest.param(
            lambda s: s["subject"][0].update(name="../etc/passwd"),
            "not a relative path",
            id="path-escape",
        ),
        pytest.param(
            lambda s: s["subject"][0].update(name="/abs"), "not a relative path", id="absolute-path"
        ),
        pytest.param(
            lambda s: s["subject"][0]["digest"].update(sha256="A" * 64),
            "lowercase hex",
            id="uppercase-hex",
        ),
        pytest.param(
            lambda s: s["subject"][0]["digest"].update(sha256="a" * 63),
            "64 lowercase hex",
            id="short-digest",
        ),
        pytest.param(
            lambda s: s["subject"][0].update(digest={}), "empty digest set", id="no-digest"
        ),
        pytest.param(
            lambda s: s["subject"].append(dict(s["subject"][0])),
            "same file twice",
            id="duplicate-subject",
        ),
        pytest.param(lambda s: s.update(subject=[]), "subject", id="no-subjects"),
    ],
)
def test_malformed_statements_are_refused(edit: object, message: str) -> None:
    obj = json.loads(_statement().to_payload())
    edit(obj)  # type: ignore[operator]
    with pytest.raises(FormatError, match=message):
        parse_statement(json.dumps(obj).encode())


def test_rfc3339_lowercase_t_and_z_and_fine_fractions_are_read() -> None:
    statement = json.loads(_statement().to_payload())
    statement["predicate"]["signed_at"] = "2026-11-24t08:00:00.123456789z"
    parsed = parse_statement(json.dumps(statement).encode())
    assert parsed.predicate.signed_at == datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=UTC)


def test_envelope_round_trip() -> None:
    data = encode_envelope(PAYLOAD_TYPE, b'{"x":1}', [("kid", b"\x01" * 64)])
    envelope = parse_envelope(data)
    assert envelope.payloadType == PAYLOAD_TYPE
    assert envelope.payload_bytes() == b'{"x":1}'
    assert envelope.signatures[0].keyid == "kid"
    assert envelope.signatures[0].signature_bytes() == b"\x01" * 64


def test_envelope_may_omit_keyid() -> None:
    data = json.dumps(
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": "e30=",
            "signatures": [{"sig": b64encode(bytes(64))}],
        }
    ).encode()
    assert parse_envelope(data).signatures[0].keyid == ""


def test_too_many_signatures_are_refused() -> None:
    data = encode_envelope(PAYLOAD_TYPE, b"{}", [("k", bytes(64))] * 33)
    with pytest.raises(FormatError, match="signatures: List should have at most 32 items"):
        parse_envelope(data)
