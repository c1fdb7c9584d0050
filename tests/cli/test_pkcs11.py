"""Signing with a key on a PKCS#11 token: a real SoftHSM2 token, keys made by pkcs11-tool.

Each case runs ``vtreg`` in its own process: a PKCS#11 module reads its
configuration (SOFTHSM2_CONF) once per process, when it is initialised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ok, one_line_error, run_cli
from tests.keytools import USER_PIN, Token, run_at_a_terminal, softhsm_token
from vtreg.verifier.keys import read_public_key_file

PluginFactory = Callable[..., Path]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    """A token holding an ed25519 key ``signer``, an ECDSA P-256 key and an RSA key."""
    made = softhsm_token(tmp_path_factory.mktemp("softhsm"))
    made.keypair("signer", "EC:edwards25519", "01")
    made.keypair("p256", "EC:prime256v1", "02")
    made.keypair("rsa", "rsa:2048", "03")
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
        pytest.param("pkcs11:token=vtreg;object=p256", {}, "key object=p256 is EC; vtreg signs with ed25519", id="ecdsa-key"),
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
