"""DSSE interoperability with securesystemslib: each side verifies what the other signs.

securesystemslib's own verifier matches signatures to keys by keyid (its docs say so is
not DSSE-compliant), so it is given the key under vtreg's key id; vtreg is given only
the public keys, whatever keyids securesystemslib wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from tests.helpers import invoke_cli, ok, one_line_error
from vtreg.loader import Isolation, KeyPolicy, PluginContext, PluginLoader
from vtreg.verifier.envelope import PAYLOAD_TYPE, b64encode
from vtreg.verifier.errors import SignatureError
from vtreg.verifier.keys import SigningKey, load_public_key
from vtreg.verifier.signatures import verify_directory
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

PluginFactory = Callable[..., Path]

FOREIGN_KEYS: dict[str, Callable[[], PrivateKeyTypes]] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ecdsa-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
}


def _sslib_key(key: SigningKey) -> SSlibKey:
    """vtreg's public key as securesystemslib holds it, under vtreg's key id."""
    public = serialization.load_pem_public_key(key.public_key.to_pem())
    return SSlibKey.from_crypto(public, keyid=key.keyid)


def _public_pem(private: PrivateKeyTypes) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _sslib_signed(plugin: Path, key: SigningKey, now: datetime, *signers: CryptoSigner) -> None:
    """plugin.sig as securesystemslib writes it, over the statement vtreg would sign."""
    payload = Envelope.from_dict(json.loads(sign(capture(plugin), key, at=now).envelope)).payload
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    for signer in signers:
        envelope.sign(signer)
    (plugin / "plugin.sig").write_text(json.dumps(envelope.to_dict()))


def test_securesystemslib_verifies_what_vtreg_signs(
    plugin_factory: PluginFactory, key: SigningKey, other_key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
    (plugin / "plugin.sig").write_bytes(
        sign(capture(plugin), other_key, at=now).envelope
    )  # co-sign
    envelope = Envelope.from_dict(json.loads((plugin / "plugin.sig").read_bytes()))

    accepted = envelope.verify([_sslib_key(key), _sslib_key(other_key)], 2)

    assert set(accepted) == {key.keyid, other_key.keyid}
    assert envelope.payload_type == PAYLOAD_TYPE
    assert json.loads(envelope.payload)["predicate"]["name"] == "basic"
    # A positive control: securesystemslib does refuse what vtreg would refuse.
    with pytest.raises(SslibVerificationError):
        envelope.verify([_sslib_key(SigningKey.generate())], 1)
    envelope.payload = envelope.payload.replace(b'"basic"', b'"evil!"')
    with pytest.raises(SslibVerificationError):
        envelope.verify([_sslib_key(key)], 1)


@pytest.mark.parametrize("key_type", sorted(FOREIGN_KEYS))
def test_vtreg_verifies_what_securesystemslib_signs_with_its_default_keyid(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path, key_type: str
) -> None:
    private = FOREIGN_KEYS[key_type]()
    signer = CryptoSigner(private)  # the default keyid: SHA-256 of securesystemslib's key JSON
    plugin = plugin_factory()
    _sslib_signed(plugin, key, now, signer)
    pub = tmp_path / f"{key_type}.pub"
    pub.write_bytes(_public_pem(private))
    public = load_public_key(pub.read_bytes())

    result = verify_directory(str(plugin), [public], at=now)

    assert public.key_type == key_type
    assert signer.public_key.keyid != public.keyid  # the hint names no key vtreg knows
    assert result.signers == (public.keyid,)
    verified = ok(invoke_cli("--json", "verify", plugin, "--key", pub)).json()
    assert verified["plugin"]["signers"] == [public.keyid]
    pub.write_bytes(_public_pem(FOREIGN_KEYS[key_type]()))  # another key of the same type
    one_line_error(invoke_cli("verify", plugin, "--key", pub), 1, "signed by 0/1 required")


def test_ed25519_and_ecdsa_signatures_from_securesystemslib_meet_a_threshold(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path
) -> None:
    privates = {t: make() for t, make in FOREIGN_KEYS.items()}
    # An RSA signature too: vtreg cannot check it, so it neither counts nor refuses.
    rsa_key = rsa.generate_private_key(65537, 2048)
    plugin = plugin_factory()
    _sslib_signed(plugin, key, now, *(CryptoSigner(p) for p in [*privates.values(), rsa_key]))
    pubs = []
    for key_type, private in privates.items():
        pubs.append(tmp_path / f"{key_type}.pub")
        pubs[-1].write_bytes(_public_pem(private))
    keys = [arg for pub in pubs for arg in ("--key", str(pub))]

    verified = ok(invoke_cli("--json", "verify", plugin, *keys, "--threshold", "3")).json()

    assert len(verified["plugin"]["signers"]) == 3
    with pytest.raises(SignatureError, match=r"signed by 3/4 required"):
        verify_directory(
            str(plugin),
            [*(load_public_key(p.read_bytes()) for p in pubs), key.public_key],
            at=now,
            threshold=4,
        )


def test_an_ecdsa_key_is_trusted_and_decides_through_the_registry(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, tmp_path: Path, database_url: str
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "kms.pub"
    pub.write_bytes(_public_pem(private))
    public = load_public_key(pub.read_bytes())
    plugin = plugin_factory()
    _sslib_signed(plugin, key, now, CryptoSigner(private))
    db = ("--db", database_url)

    added = ok(invoke_cli("--json", "key", "add", pub, "--name", "kms", *db)).json()
    trusted = ok(invoke_cli("--json", "trust", plugin, *db)).json()
    verified = ok(invoke_cli("--json", "verify", plugin, *db)).json()
    listed = ok(invoke_cli("--json", "key", "list", *db)).json()

    assert added["key"]["keyid"] == public.keyid
    assert trusted["plugin"]["signers"] == [public.keyid]
    assert verified["plugin"]["signers"] == [public.keyid]
    assert [k["keyid"] for k in listed["keys"]] == [public.keyid]
    # The stored key is the one that verifies: another ECDSA key's signature is refused.
    _sslib_signed(plugin, key, now, CryptoSigner(ec.generate_private_key(ec.SECP256R1())))
    one_line_error(invoke_cli("verify", plugin, *db), 1, "signed by 0/1 required trusted keys")


def test_a_signature_entry_with_an_extension_is_read(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    # DSSE signature entries may carry fields such as sigstore's "extension".
    plugin = plugin_factory()
    envelope = json.loads(sign(capture(plugin), key, at=now).envelope)
    envelope["signatures"][0]["extension"] = {"kind": "x509", "ext": {"cert": b64encode(b"c")}}
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    assert verify_directory(str(plugin), [key.public_key], at=now).signers == (key.keyid,)
    assert Envelope.from_dict(json.loads((plugin / "plugin.sig").read_bytes())).verify(
        [_sslib_key(key)], 1
    )


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_plugin_a_kms_style_ecdsa_key_signed_loads_and_runs(
    plugin_factory: PluginFactory,
    key: SigningKey,
    now: datetime,
    tmp_path: Path,
    isolation: Isolation,
) -> None:
    trusted = tmp_path / "trusted"
    trusted.mkdir(mode=0o755)
    plugin = plugin_factory("kms-signed", parent=trusted)
    private = ec.generate_private_key(ec.SECP384R1())
    _sslib_signed(plugin, key, now, CryptoSigner(private))
    policy = KeyPolicy([load_public_key(_public_pem(private))])

    loaded = PluginLoader(policy, None, [trusted], isolation=isolation).load_plugin(plugin)
    try:
        result = loaded.execute(PluginContext(input={"from": "kms"}))
    finally:
        loaded.close()

    assert loaded.metadata.name == "kms-signed"
    assert result.success is True
    with pytest.raises(SignatureError, match="signed by 0/1"):
        PluginLoader(KeyPolicy([key.public_key]), None, [trusted]).load_plugin(plugin)
