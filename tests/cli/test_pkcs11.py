"""Signing with a key on a PKCS#11 token: a real SoftHSM2 token, keys made by pkcs11-tool.

Each case runs ``vtreg`` in its own process: a PKCS#11 module reads its
configuration (SOFTHSM2_CONF) once per process, when it is initialised.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers import invoke_cli, ok, one_line_error, run_cli
from tests.keytools import USER_PIN, Token, run_at_a_terminal, softhsm_token
from vtreg.verifier.envelope import PAYLOAD_TYPE, pae
from vtreg.verifier.keys import read_public_key_file

PluginFactory = Callable[..., Path]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    """A token holding an ed25519 key ``signer``, ECDSA keys on four curves, an RSA key,
    and ``mixed``: a P-256 private key beside another key pair's public key."""
    directory = tmp_path_factory.mktemp("softhsm")
    made = softhsm_token(directory)
    made.keypair("signer", "EC:edwards25519", "01")
    made.keypair("p256", "EC:prime256v1", "02")
    made.keypair("rsa", "rsa:2048", "03")
    made.keypair("p384", "EC:secp384r1", "04")
    made.keypair("k1", "EC:secp256k1", "05")
    made.keypair("p521", "EC:secp521r1", "06")
    made.keypair("mixed", "EC:prime256v1", "07")
    other = directory / "other.der"
    made.tool("--read-object", "--type", "pubkey", "--id", "02", "--output-file", str(other))
    made.tool("--delete-object", "--type", "pubkey", "--id", "07")
    made.tool("--write-object", str(other), "--type", "pubkey", "--label", "mixed", "--id", "07")
    return made


def env_for(token: Token, **extra: str) -> dict[str, str]:
    return {**token.env, "VTREG_PKCS11_MODULE": token.module, **extra}


def test_sign_on_the_token_and_verify_with_its_public_key(
    plugin_factory: PluginFactory, tmp_path: Path, token: Token
) -> None:
    plugin = plugin_factory()
    uri = "pkcs11:token=vtreg;object=signer"
    env = env_for(token, VTREG_PKCS11_PIN=USER_PIN)
    pub = tmp_path / "token.pub"

    ok(run_cli("key", "pub", uri, "--out", pub, env=env))
    signed = ok(run_cli("sign", plugin, "--key", uri, "--json", env=env))
    verified = ok(run_cli("verify", plugin, "--key", pub, "--json"))

    assert signed.json()["keyid"] == read_public_key_file(pub).keyid
    assert verified.json()["plugin"]["content_digest"] == signed.json()["content_digest"]


ECDSA_HASHES = {"p256": hashes.SHA256, "p384": hashes.SHA384}


@pytest.mark.parametrize("label", ["p256", "p384"])
def test_sign_with_an_ecdsa_token_key_and_verify_with_its_public_key(
    plugin_factory: PluginFactory, tmp_path: Path, token: Token, label: str
) -> None:
    plugin = plugin_factory()
    uri = f"pkcs11:token=vtreg;object={label}"
    env = env_for(token, VTREG_PKCS11_PIN=USER_PIN)
    pub = tmp_path / "token.pub"

    shown = ok(run_cli("key", "pub", uri, env=env)).stdout
    ok(run_cli("key", "pub", uri, "--out", pub, env=env))
    signed = ok(run_cli("sign", plugin, "--key", uri, "--json", env=env)).json()
    verified = ok(run_cli("verify", plugin, "--key", pub, "--json")).json()

    # The key, its id and the signature, read by cryptography rather than by vtreg.
    pem = shown[shown.index("-----BEGIN PUBLIC KEY-----") :].encode()
    assert pem == pub.read_bytes()[pub.read_bytes().index(b"-----BEGIN") :]
    public = serialization.load_pem_public_key(pem)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signed["keyid"] == hashlib.sha256(der).hexdigest() == read_public_key_file(pub).keyid
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    [entry] = envelope["signatures"]
    message = pae(PAYLOAD_TYPE, base64.b64decode(envelope["payload"]))
    public.verify(base64.b64decode(entry["sig"]), message, ec.ECDSA(ECDSA_HASHES[label]()))
    assert verified["plugin"]["signers"] == [signed["keyid"]]


def test_an_ecdsa_token_keys_openssh_line_is_the_one_ssh_keygen_reads(
    tmp_path: Path, token: Token
) -> None:
    uri = "pkcs11:token=vtreg;object=p384"
    env = env_for(token, VTREG_PKCS11_PIN=USER_PIN)
    line = tmp_path / "token.pub"

    ok(run_cli("key", "pub", uri, "--openssh", "--out", line, env=env))
    shown = ok(run_cli("key", "pub", uri, "--json", env=env)).json()

    assert line.read_text().startswith("ecdsa-sha2-nistp384 AAAA")
    keygen = subprocess.run(
        ["ssh-keygen", "-lf", str(line)], capture_output=True, text=True, check=True
    ).stdout
    assert keygen.split()[1] == shown["fingerprint"]
    assert keygen.split()[-1] == "(ECDSA)"


def test_an_ecdsa_token_key_is_trusted_through_the_registry(
    plugin_factory: PluginFactory, tmp_path: Path, token: Token, home: dict[str, str]
) -> None:
    plugin = plugin_factory()
    uri = "pkcs11:token=vtreg;object=p256"
    pub = tmp_path / "token.pub"
    ok(run_cli("key", "pub", uri, "--out", pub, env=env_for(token, VTREG_PKCS11_PIN=USER_PIN)))
    ok(run_cli("sign", plugin, "--key", uri, env=env_for(token, VTREG_PKCS11_PIN=USER_PIN)))

    added = ok(invoke_cli("--json", "key", "add", pub, "--name", "token", env=home)).json()
    trusted = ok(invoke_cli("--json", "trust", plugin, env=home)).json()
    verified = ok(invoke_cli("--json", "verify", plugin, env=home)).json()

    assert added["key"]["keyid"] == read_public_key_file(pub).keyid
    assert trusted["plugin"]["signers"] == [added["key"]["keyid"]]
    assert verified["plugin"]["signers"] == [added["key"]["keyid"]]


def test_the_public_key_of_a_token_key_on_another_curve_is_refused(
    tmp_path: Path, token: Token
) -> None:
    pub = tmp_path / "k1.pub"
    uri = "pkcs11:token=vtreg;object=k1"

    result = run_cli("key", "pub", uri, "--out", pub, env=env_for(token, VTREG_PKCS11_PIN=USER_PIN))

    one_line_error(result, 3, "key object=k1 is ECDSA secp256k1; vtreg signs with ed25519 or")
    assert not pub.exists()


@pytest.mark.parametrize(
    ("uri", "extra"),
    [
        pytest.param("pkcs11:token=vtreg;id=%01?pin-value=" + USER_PIN, {}, id="id-and-pin-value"),
        pytest.param("pkcs11:token=vtreg;object=signer;type=private?pin-source=file:{pinfile}", {}, id="pin-source"),
        pytest.param("pkcs11:token=vtreg;object=signer?module-path={module}&pin-value=" + USER_PIN, {"VTREG_PKCS11_MODULE": "/nonexistent.so"}, id="module-path-wins"),
        pytest.param("pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;token=vt%72eg;object=signer?pin-value=" + USER_PIN, {}, id="percent-encoded-token-attributes"),
    ],
)  # fmt: skip
def test_the_ways_a_uri_names_key_module_and_pin(
    plugin_factory: PluginFactory, tmp_path: Path, token: Token, uri: str, extra: dict[str, str]
) -> None:
    plugin = plugin_factory()
    pinfile = tmp_path / "pin"
    pinfile.write_text(f"{USER_PIN}\nnot the pin\n")
    uri = uri.format(pinfile=pinfile, module=token.module)

    ok(run_cli("sign", plugin, "--key", uri, env={**env_for(token), **extra}))
    assert (plugin / "plugin.sig").exists()


@pytest.mark.parametrize(
    ("uri", "extra", "message"),
    [
        pytest.param("pkcs11:token=absent;object=signer", {}, r"no PKCS#11 token matches token=absent \(\d+ present\)", id="absent-token"),
        pytest.param("pkcs11:token=vtreg;object=signer", {"VTREG_PKCS11_PIN": "0000"}, "wrong PIN for PKCS#11 token 'vtreg'", id="wrong-pin"),
        pytest.param("pkcs11:token=vtreg;object=rsa", {}, "key object=rsa is RSA; vtreg signs with ed25519", id="rsa-key"),
        pytest.param("pkcs11:token=vtreg;object=k1", {}, "key object=k1 is ECDSA secp256k1; vtreg signs with ed25519 or ECDSA P-256/P-384 keys", id="secp256k1-key"),
        pytest.param("pkcs11:token=vtreg;object=p521", {}, "key object=p521 is ECDSA secp521r1; vtreg signs with ed25519 or ECDSA P-256/P-384 keys", id="p521-key"),
        pytest.param("pkcs11:token=vtreg;object=mixed", {}, "key object=mixed returned a signature that its key does not verify", id="another-keys-public-half"),
        pytest.param("pkcs11:token=vtreg;object=nothing", {}, "holds no private key object=nothing", id="absent-key"),
        pytest.param("pkcs11:model=SoftHSM%20v2;object=signer", {}, r"\d+ PKCS#11 tokens match model=SoftHSM v2; name one", id="ambiguous-token"),
        pytest.param("pkcs11:token=vtreg;objekt=signer", {}, "unknown or malformed attribute 'objekt=signer'", id="misspelt-attribute"),
        pytest.param("pkcs11:token=vtreg;object=a;object=b", {}, "attribute object is given twice", id="repeated-attribute"),
        pytest.param("pkcs11:token=vtreg", {}, "name the key with object= or id=", id="no-key-named"),
        pytest.param("pkcs11:token=vtreg;object=signer;type=public", {}, "a signing key is type=private", id="public-type"),
        pytest.param("pkcs11:token=vtreg;object=signer", {"VTREG_PKCS11_MODULE": "/nonexistent/libnone.so"}, "cannot load PKCS#11 module /nonexistent/libnone.so", id="missing-module"),
        pytest.param("pkcs11:token=vtreg;object=signer", {"VTREG_PKCS11_MODULE": ""}, "no PKCS#11 module: give module-path=", id="no-module"),
        pytest.param("pkcs11:token=vtreg;object=signer", {"VTREG_PKCS11_PIN": ""}, "needs a PIN: set VTREG_PKCS11_PIN", id="no-pin"),
    ],
)  # fmt: skip
def test_refusals_are_one_line_exit_3_and_write_nothing(
    plugin_factory: PluginFactory, token: Token, uri: str, extra: dict[str, str], message: str
) -> None:
    plugin = plugin_factory()
    env = {**env_for(token, VTREG_PKCS11_PIN=USER_PIN), **extra}

    result = run_cli("sign", plugin, "--key", uri, env=env)

    one_line_error(result, 3, message)
    assert not (plugin / "plugin.sig").exists()


def test_the_pin_is_asked_at_a_terminal(plugin_factory: PluginFactory, token: Token) -> None:
    plugin = plugin_factory()
    args = ["sign", str(plugin), "--key", "pkcs11:token=vtreg;object=signer"]

    code, shown = run_at_a_terminal(args, [USER_PIN], "PIN for", env_for(token))

    assert code == 0, shown
    assert "PIN for PKCS#11 token 'vtreg':" in shown
    assert USER_PIN not in shown  # not echoed
    assert (plugin / "plugin.sig").exists()
