"""ECDSA public keys through the command line: trusted, counted once, refused when unusable."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.helpers import invoke_cli, ok, one_line_error

PluginFactory = Callable[..., Path]


def _write_pub(path: Path, private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _openssl_keyid(pub: Path) -> str:
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    return hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize("curve", [ec.SECP256R1, ec.SECP384R1], ids=["p256", "p384"])
def test_an_ecdsa_key_is_added_once_however_its_point_is_written(
    tmp_path: Path, home: dict[str, str], curve: type[ec.EllipticCurve]
) -> None:
    pub = _write_pub(tmp_path / "kms.pub", ec.generate_private_key(curve()))
    compressed = tmp_path / "kms-compressed.pub"
    subprocess.run(
        ["openssl", "ec", "-pubin", "-in", pub, "-conv_form", "compressed", "-out", compressed],
        capture_output=True,
        check=True,
    )

    added = ok(invoke_cli("--json", "key", "add", pub, "--name", "kms", env=home)).json()
    again = ok(invoke_cli("key", "add", compressed, env=home))

    assert added["created"] is True
    assert added["key"]["keyid"] == _openssl_keyid(pub)
    assert again.stdout.startswith("already trusted: key ")
    assert len(ok(invoke_cli("--json", "key", "list", env=home)).json()["keys"]) == 1


def test_one_ecdsa_key_given_twice_cannot_meet_a_threshold_of_two(
    plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    # The same key in two spellings is one key: a threshold of 2 can never be met.
    pub = _write_pub(tmp_path / "kms.pub", ec.generate_private_key(ec.SECP256R1()))
    compressed = tmp_path / "kms-compressed.pub"
    subprocess.run(
        ["openssl", "ec", "-pubin", "-in", pub, "-conv_form", "compressed", "-out", compressed],
        capture_output=True,
        check=True,
    )
    args = ("verify", plugin_factory(), "--key", pub, "--key", compressed, "--threshold", "2")

    one_line_error(invoke_cli(*args), 2, "threshold 2 can never be met with 1 distinct")


@pytest.mark.parametrize(
    ("private", "found"),
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP521R1()), "ECDSA secp521r1", id="p521"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256K1()), "ECDSA secp256k1", id="k1"),
        pytest.param(lambda: rsa.generate_private_key(65537, 2048), "RSAPublicKey", id="rsa"),
    ],
)
def test_a_key_vtreg_cannot_verify_with_is_never_trusted(
    tmp_path: Path,
    home: dict[str, str],
    private: Callable[[], ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey],
    found: str,
) -> None:
    pub = _write_pub(tmp_path / "other.pub", private())

    one_line_error(
        invoke_cli("key", "add", pub, env=home),
        3,
        f"expected an ed25519 or ECDSA P-256/P-384 key, found {found}",
    )
    # Nothing was written: not even an empty registry was created for the refused key.
    one_line_error(invoke_cli("key", "list", env=home), 3, "no registry at")


def test_signing_keys_stay_ed25519(plugin_factory: PluginFactory, tmp_path: Path) -> None:
    plugin = plugin_factory()
    key_file = tmp_path / "kms.key"
    key_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)

    one_line_error(invoke_cli("sign", plugin, "--key", key_file), 3, "expected an ed25519 key")
    assert not (plugin / "plugin.sig").exists()
