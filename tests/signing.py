"""Statements our own signer would not write, signed all the same (foreign or hostile signers)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from vtreg.verifier.envelope import PAYLOAD_TYPE, encode_envelope, pae
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture


def sign_custom_statement(
    plugin: Path,
    key: SigningKey,
    now: datetime,
    edit_subject: Callable[[dict[str, object]], object],
) -> None:
    """Sign a statement that our own signer would not produce (a foreign or hostile signer)."""
    envelope = json.loads(sign(capture(plugin), key, at=now).envelope)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    for subject in statement["subject"]:
        edit_subject(subject)
    payload = json.dumps(statement).encode()
    (plugin / "plugin.sig").write_bytes(
        encode_envelope(PAYLOAD_TYPE, payload, [(key.keyid, key.sign(pae(PAYLOAD_TYPE, payload)))])
    )


def add_sha512(plugin: Path) -> Callable[[dict[str, object]], None]:
    """A subject edit that adds each file's real sha512, and an md5 that must never count."""

    def edit(subject: dict[str, object]) -> None:
        digest = hashlib.sha512((plugin / str(subject["name"])).read_bytes()).hexdigest()
        subject["digest"] = {**subject["digest"], "sha512": digest, "md5": "0" * 32}  # type: ignore[dict-item]

    return edit


def urlsafe_payload(plugin: Path) -> None:
    """Re-encode plugin.sig's payload in the URL-safe alphabet (DSSE allows it; it is not signed)."""
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    envelope["payload"] = base64.urlsafe_b64encode(base64.b64decode(envelope["payload"])).decode()
    (plugin / "plugin.sig").write_text(json.dumps(envelope))


def sign_with_sha512_and_urlsafe_alphabet(plugin: Path, key: SigningKey, now: datetime) -> None:
    """Sign sha256+sha512 subjects into a payload whose base64 differs in the URL-safe alphabet.

    Files are added one by one until the standard encoding holds a ``+`` or ``/``.
    """
    for n in range(64):
        (plugin / f"notes{'x' * n}~").write_bytes(b"y")
        sign_custom_statement(plugin, key, now, add_sha512(plugin))
        if set("+/") & set(json.loads((plugin / "plugin.sig").read_bytes())["payload"]):
            urlsafe_payload(plugin)
            return
        (plugin / f"notes{'x' * n}~").unlink()
    raise AssertionError("no payload had a + or / in 64 tries")


def signed_message(plugin: Path) -> bytes:
    """What every signature in plugin.sig signs: PAE of its payload type and payload."""
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    return pae(envelope["payloadType"], base64.b64decode(envelope["payload"]))


def add_signature(plugin: Path, sig: bytes, keyid: str = "") -> None:
    """Append a signature entry to plugin.sig, as another signer (or an attacker) would."""
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    envelope["signatures"].append({"keyid": keyid, "sig": base64.b64encode(sig).decode()})
    (plugin / "plugin.sig").write_text(json.dumps(envelope))


def sign_edited_statement(
    plugin: Path, key: SigningKey, edit: Callable[[dict[str, Any]], object]
) -> None:
    """Re-sign plugin.sig's statement after ``edit`` changed it (in place), as a foreign or
    hostile signer would; only ``key``'s signature is kept."""
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    edit(statement)
    payload = json.dumps(statement).encode()
    (plugin / "plugin.sig").write_bytes(
        encode_envelope(PAYLOAD_TYPE, payload, [(key.keyid, key.sign(pae(PAYLOAD_TYPE, payload)))])
    )
