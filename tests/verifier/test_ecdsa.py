"""ECDSA P-256/P-384 public keys: loading, key ids, and signatures that count beside ed25519."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from tests.signing import add_signature, signed_message
from vtreg.verifier.errors import KeyFileError, SignatureError
from vtreg.verifier.keys import PublicKey, SigningKey, load_public_key
from vtreg.verifier.signatures import verify_directory
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

PluginFactory = Callable[..., Path]
CURVES = {"ecdsa-p256": (ec.SECP256R1, hashes.SHA256), "ecdsa-p384": (ec.SECP384R1, hashes.SHA384)}


def _pem(
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, point: str = "uncompressed"
) -> bytes:
    public = private.public_key()
    if point == "uncompressed":
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    # A SubjectPublicKeyInfo with a compressed point, as `openssl ec -conv_form compressed` writes.
    proc = subprocess.run(
        ["openssl", "ec", "-pubin", "-conv_form", "compressed", "-outform", "PEM"],
        input=_pem(private),
        capture_output=True,
        check=True,
    )
    return proc.stdout


def _sign(private: ec.EllipticCurvePrivateKey, message: bytes, key_type: str) -> bytes:
    return private.sign(message, ec.ECDSA(CURVES[key_type][1]()))


@pytest.fixture(scope="module", params=sorted(CURVES))
def ecdsa(request: pytest.FixtureRequest) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key_type: str = request.param
    return key_type, ec.generate_private_key(CURVES[key_type][0]())


def test_an_ecdsa_public_key_loads_with_an_id_openssl_can_compute(
    ecdsa: tuple[str, ec.EllipticCurvePrivateKey], tmp_path: Path
) -> None:
    key_type, private = ecdsa
    (tmp_path / "k.pub").write_bytes(_pem(private))

    public = load_public_key(_pem(private))

    assert public.key_type == key_type
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(tmp_path / "k.pub"), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    assert public.raw == der
    assert public.keyid == hashlib.sha256(der).hexdigest()
    assert load_public_key(public.to_file_bytes()) == public
    assert public.to_file_bytes().startswith(f"# vtreg public key ({key_type})\n".encode())


def _compressed_der(private: ec.EllipticCurvePrivateKey) -> bytes:
    return subprocess.run(
        ["openssl", "ec", "-pubin", "-conv_form", "compressed", "-outform", "DER"],
        input=_pem(private),
        capture_output=True,
        check=True,
    ).stdout


def _der(pem: bytes) -> bytes:
    return serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_one_ecdsa_key_has_one_id_however_its_point_is_written(
    ecdsa: tuple[str, ec.EllipticCurvePrivateKey],
) -> None:
    # Two ids for one key would let it count twice toward a threshold.
    _, private = ecdsa
    compressed = _pem(private, "compressed")

    assert len(compressed) < len(_pem(private))
    assert load_public_key(compressed) == load_public_key(_pem(private))
    with pytest.raises(KeyFileError, match="not its canonical encoding"):
        PublicKey(_compressed_der(private))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            lambda: _der(SigningKey.generate().public_key.to_pem()),
            "not its canonical encoding",
            id="ed25519-as-der",
        ),
        pytest.param(
            lambda: b"\x30\x03\x02\x01\x01", "neither 32 ed25519 bytes nor a DER", id="not-a-key"
        ),
        pytest.param(lambda: bytes(31), "neither 32 ed25519 bytes", id="31-bytes"),
        pytest.param(
            lambda: _der(_pem(rsa.generate_private_key(65537, 2048))),
            "found RSAPublicKey",
            id="rsa",
        ),
    ],
)
def test_raw_bytes_that_are_no_usable_key_are_refused(
    raw: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(KeyFileError, match=message):
        PublicKey(raw())


def test_a_point_off_the_curve_is_refused() -> None:
    der = bytearray(_der(_pem(ec.generate_private_key(ec.SECP256R1()))))
    der[-1] ^= 1  # y + 1 or y - 1: no longer on P-256 (y has one partner, the negation)
    body = base64.b64encode(bytes(der)).decode()
    off_curve = f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()

    with pytest.raises(KeyFileError, match="neither 32 ed25519 bytes nor a DER"):
        PublicKey(bytes(der))
    with pytest.raises(KeyFileError, match="not a readable public key"):
        load_public_key(off_curve)


@pytest.mark.parametrize(
    ("curve", "name"),
    [
        pytest.param(ec.SECP521R1, "secp521r1", id="p521"),
        pytest.param(ec.SECP256K1, "secp256k1", id="secp256k1"),
        pytest.param(ec.BrainpoolP256R1, "brainpoolP256r1", id="brainpool"),
    ],
)
def test_other_curves_are_refused(curve: type[ec.EllipticCurve], name: str) -> None:
    with pytest.raises(
        KeyFileError, match=f"expected an ed25519 or ECDSA P-256/P-384 key, found ECDSA {name}"
    ):
        load_public_key(_pem(ec.generate_private_key(curve())))


def test_ecdsa_signatures_are_der_over_the_curves_hash(
    ecdsa: tuple[str, ec.EllipticCurvePrivateKey], tmp_path: Path
) -> None:
    key_type, private = ecdsa
    public = load_public_key(_pem(private))
    message = b"DSSEv1 4 type 7 payload"
    der = _sign(private, message, key_type)
    r, s = decode_dss_signature(der)
    size = private.curve.key_size // 8
    other_hash = hashes.SHA384() if key_type == "ecdsa-p256" else hashes.SHA256()
    # The same signature made by the openssl command line, as a KMS or HSM user might.
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    openssl = subprocess.run(
        ["openssl", "dgst", "-" + CURVES[key_type][1]().name, "-sign", str(key_file)],
        input=message,
        capture_output=True,
        check=True,
    ).stdout

    assert public.verify(der, message)
    assert public.verify(openssl, message)
    assert not public.verify(der, message + b"!")
    assert not public.verify(r.to_bytes(size, "big") + s.to_bytes(size, "big"), message)  # raw r||s
    assert not public.verify(private.sign(message, ec.ECDSA(other_hash)), message)
    assert not SigningKey.generate().public_key.verify(der, message)


_P256 = ec.generate_private_key(ec.SECP256R1())
_MESSAGE = b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
_SIGNATURE = _P256.sign(_MESSAGE, ec.ECDSA(hashes.SHA256()))


@given(bit=st.integers(min_value=0, max_value=len(_SIGNATURE) * 8 - 1))
def test_any_flipped_bit_of_an_ecdsa_signature_fails(bit: int) -> None:
    public = load_public_key(_pem(_P256))
    flipped = bytearray(_SIGNATURE)
    flipped[bit // 8] ^= 1 << (bit % 8)

    assert public.verify(_SIGNATURE, _MESSAGE)
    assert not public.verify(bytes(flipped), _MESSAGE)


def test_ed25519_and_ecdsa_signatures_meet_a_threshold_together(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    plugin = plugin_factory()
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
    trusted = [key.public_key]
    for key_type, (curve, _) in sorted(CURVES.items()):
        private = ec.generate_private_key(curve())
        trusted.append(load_public_key(_pem(private)))
        add_signature(plugin, _sign(private, signed_message(plugin), key_type), "kms-key")

    result = verify_directory(str(plugin), trusted, at=now, threshold=3)

    assert result.signers == tuple(sorted(k.keyid for k in trusted))
    with pytest.raises(SignatureError, match=r"signed by 3/4 required"):
        verify_directory(str(plugin), trusted, at=now, threshold=4)


@pytest.mark.parametrize(
    "foreign",
    [
        pytest.param(
            lambda m: rsa.generate_private_key(65537, 2048).sign(
                m, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()
            ),
            id="rsa-pss",
        ),
        pytest.param(
            lambda m: ec.generate_private_key(ec.SECP256R1()).sign(m, ec.ECDSA(hashes.SHA256())),
            id="ecdsa-untrusted",
        ),
        pytest.param(lambda m: b"", id="empty"),
        pytest.param(lambda m: b"\x30" * 100, id="garbage"),
    ],
)
def test_a_signature_no_trusted_key_can_check_is_skipped(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime, foreign: Callable[[bytes], bytes]
) -> None:
    # Before, one such signature beside a valid ed25519 one made plugin.sig malformed.
    plugin = plugin_factory()
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
    add_signature(plugin, foreign(signed_message(plugin)), "sigstore-or-kms")

    result = verify_directory(str(plugin), [key.public_key], at=now)

    assert result.signers == (key.keyid,)
    assert [c.status for c in result.checks] == ["valid", "not signed by a trusted key"]
    with pytest.raises(SignatureError, match=r"signed by 1/2 required") as refused:
        verify_directory(str(plugin), [key.public_key], at=now, threshold=2)
    assert refused.value.code == "threshold"


def test_an_ecdsa_signature_in_raw_r_s_form_does_not_count(
    plugin_factory: PluginFactory, key: SigningKey, now: datetime
) -> None:
    # DER only (docs/decisions.md): a PKCS#11 token's raw r||s must be DER-encoded by the signer.
    private = ec.generate_private_key(ec.SECP256R1())
    public = load_public_key(_pem(private))
    plugin = plugin_factory()
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
    r, s = decode_dss_signature(_sign(private, signed_message(plugin), "ecdsa-p256"))
    add_signature(plugin, r.to_bytes(32, "big") + s.to_bytes(32, "big"), public.keyid)

    with pytest.raises(SignatureError, match=r"signed by 0/1 .*bad signature") as refused:
        verify_directory(str(plugin), [public], at=now)
    assert refused.value.code == "bad-signature"
