"""in-toto Statement v1 interoperability with in-toto-attestation's Python bindings.

The bindings validate the Statement vtreg signs; and a Statement the bindings write
(every number a double, ResourceDescriptor fields vtreg does not read) verifies with
vtreg once a trusted key has signed it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.v1.statement_pb2 import Statement as StatementProto

from tests.helpers import ok, run_cli
from vtreg.verifier.envelope import PAYLOAD_TYPE, PREDICATE_TYPE, encode_envelope, pae
from vtreg.verifier.errors import FormatError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signatures import verify_directory
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

PluginFactory = Callable[..., Path]


def _payload(envelope: bytes) -> bytes:
    return base64.b64decode(json.loads(envelope)["payload"])


def _parsed(payload: bytes) -> Statement:
    return Statement.copy_from_pb(json_format.Parse(payload, StatementProto()))


def test_the_statement_vtreg_signs_validates_with_in_toto_attestation(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory(extra_files={"scripts/run.sh": b"#!/bin/sh\n"})
    payload = _payload(sign(capture(plugin), key, at=now).envelope)

    statement = _parsed(payload)
    statement.validate()

    assert statement.pb.predicate_type == PREDICATE_TYPE
    subjects = {s.name: dict(s.digest) for s in statement.pb.subject}
    assert subjects == {
        name: {"sha256": hashlib.sha256((plugin / name).read_bytes()).hexdigest()}
        for name in ("libbasic.so", "plugin.json", "scripts/run.sh")
    }
    assert statement.pb.predicate["name"] == "basic"
    # A positive control: the bindings do refuse a statement without subjects.
    broken = json.loads(payload)
    broken["subject"] = []
    with pytest.raises(ValueError, match="At least one subject required"):
        _parsed(json.dumps(broken).encode()).validate()


def _bindings_statement(plugin: Path, predicate: dict[str, Any]) -> bytes:
    """The statement vtreg would sign, rebuilt and written by the bindings."""
    subjects = [
        ResourceDescriptor(
            name=name,
            digest={"sha256": hashlib.sha256((plugin / name).read_bytes()).hexdigest()},
            uri=f"https://plugins.example.com/basic/1.0.0/{name}",
            media_type="application/octet-stream",
            annotations={"built-by": "ci"},
        ).pb
        for name in sorted(predicate["lengths"])
    ]
    statement = Statement(subjects, PREDICATE_TYPE, predicate)
    statement.validate()
    return str(json_format.MessageToJson(statement.pb)).encode()


def _sign_payload(plugin: Path, key: SigningKey, payload: bytes) -> None:
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    (plugin / "plugin.sig").write_bytes(encode_envelope(PAYLOAD_TYPE, payload, [("", signature)]))


def test_a_statement_the_bindings_write_verifies_with_vtreg(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path
) -> None:
    plugin = plugin_factory()
    predicate = json.loads(_payload(sign(capture(plugin), key, at=now).envelope))["predicate"]
    payload = _bindings_statement(plugin, predicate)
    _sign_payload(plugin, key, payload)

    result = verify_directory(str(plugin), [key.public_key], at=now)

    written = json.loads(payload)
    assert written["predicate"]["abi_version"] == 1.0  # how protobuf's Struct writes 1
    assert written["subject"][0]["mediaType"] == "application/octet-stream"
    assert isinstance(written["predicate"]["lengths"]["libbasic.so"], float)
    assert result.abi_version == 1
    assert result.signers == (key.keyid,)
    # The real command line too, whose capture starts from the lengths plugin.sig claims.
    pub = tmp_path / "key.pub"
    pub.write_bytes(key.public_key.to_file_bytes())
    verified = ok(run_cli("--json", "verify", plugin, "--key", pub)).json()
    assert verified["plugin"]["abi_version"] == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            {"abi_version": 1.5}, "abi_version: Input should be a valid integer", id="abi-fraction"
        ),
        pytest.param(
            {"abi_version": True}, "abi_version: Input should be a valid integer", id="abi-true"
        ),
        pytest.param(
            {"abi_version": "1"}, "abi_version: Input should be a valid integer", id="abi-string"
        ),
        pytest.param({"abi_version": 2}, "abi_version 2 but plugin.json says 1", id="abi-other"),
    ],
)
def test_a_predicate_number_that_is_no_such_integer_is_refused(
    plugin_factory: PluginFactory,
    key: SigningKey,
    now: datetime,
    edit: dict[str, object],
    message: str,
) -> None:
    plugin = plugin_factory()
    predicate = json.loads(_payload(sign(capture(plugin), key, at=now).envelope))["predicate"]
    _sign_payload(plugin, key, _bindings_statement(plugin, {**predicate, **edit}))

    with pytest.raises(FormatError, match=message) as refused:
        verify_directory(str(plugin), [key.public_key], at=now)
    assert refused.value.code == "malformed"
