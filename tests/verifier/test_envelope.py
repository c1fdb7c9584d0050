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
        pytest.param(
            lambda s: s["predicate"].update(extra=1),
            r"predicate\.extra: unexpected field",
            id="extra-predicate-field",
        ),
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
        *[
            pytest.param(
                lambda s, v=v: s["predicate"].update(abi_version=v),
                "abi_version: Input should be a valid integer",
                id=i,
            )
            for v, i in [
                (1.5, "abi-fraction"),
                (True, "abi-true"),
                ("1", "abi-string"),
                (1e300, "abi-huge-float"),
                (2.0**53, "abi-inexact-float"),
            ]
        ],
        pytest.param(
            lambda s: s["predicate"]["lengths"].update({"libhello.so": 4096.5}),
            "lengths.libhello.so: Input should be a valid integer",
            id="length-fraction",
        ),
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


def test_integers_written_as_doubles_are_read_as_integers() -> None:
    # protobuf's Struct (in-toto-attestation's bindings) writes every number as a double.
    statement = json.loads(_statement().to_payload())
    statement["predicate"].update(abi_version=1.0, lengths={"libhello.so": 4096.0})

    parsed = parse_statement(json.dumps(statement).encode())

    assert parsed == _statement()
    assert type(parsed.predicate.abi_version) is int
    assert parsed.lengths is not None
    assert type(parsed.lengths["libhello.so"]) is int


ESCAPE = "\x1b[2J\x1b[32mverified\u202e"  # clears a terminal, paints it green, reverses text


def test_unknown_fields_are_ignored_where_dsse_and_in_toto_say_so() -> None:
    statement = json.loads(_statement().to_payload())
    statement[ESCAPE] = {"anything": [1, 2]}
    statement["subject"][0].update(
        uri="https://example.com/libhello.so",
        mediaType="application/x-sharedlib",
        annotations={"note": "ok"},
        downloadLocation="https://example.com/dl",
        content="aGVsbG8=",
        **{ESCAPE: 1},
    )
    payload = json.dumps(statement).encode()
    envelope = json.dumps(
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": b64encode(payload),
            "signatures": [
                {"keyid": "k", "sig": b64encode(bytes(64)), "extension": {"kind": "x"}, ESCAPE: 0}
            ],
            ESCAPE: True,
        }
    ).encode()

    parsed = parse_envelope(envelope)

    assert parsed.signatures[0].signature_bytes() == bytes(64)
    assert parse_statement(parsed.payload_bytes()) == _statement()


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(lambda e, s: e, id="envelope"),
        pytest.param(lambda e, s: e["signatures"][0], id="signature-entry"),
        pytest.param(lambda e, s: s, id="statement"),
        pytest.param(lambda e, s: s["subject"][0], id="subject"),
        pytest.param(lambda e, s: s["predicate"], id="predicate"),
    ],
)
def test_a_duplicate_key_is_refused_wherever_unknown_fields_are_ignored(where: object) -> None:
    statement = json.loads(_statement().to_payload())
    envelope = {"payloadType": PAYLOAD_TYPE, "payload": "", "signatures": [{"sig": ""}]}
    target = where(envelope, statement)  # type: ignore[operator]
    target["__dup__"] = 1
    envelope["payload"] = b64encode(
        json.dumps(statement).encode().replace(b'"__dup__": 1', b'"x": 1, "x": 2')
    )
    data = json.dumps(envelope).encode().replace(b'"__dup__": 1', b'"x": 1, "x": 2')

    with pytest.raises(FormatError, match="duplicate key 'x'"):
        parse_statement(parse_envelope(data).payload_bytes())


def test_an_unknown_predicate_field_is_shown_inert() -> None:
    statement = json.loads(_statement().to_payload())
    statement["predicate"][ESCAPE] = 1

    with pytest.raises(FormatError) as refused:
        parse_statement(json.dumps(statement).encode())

    assert "unexpected field" in str(refused.value)
    assert not any(c in str(refused.value) for c in "\x1b\u202e")
    assert "\\x1b[2J" in str(refused.value)


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
