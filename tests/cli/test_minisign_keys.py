"""A minisign public key is a public key file like any other (DESIGN §10), checked with the
real minisign (.ci/run installs it): it makes a key pair and a signature over plugin.sig's
signed message."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok, one_line_error
from tests.signing import add_signature, signed_message
from vtreg.verifier.keys import SigningKey, read_public_key_file
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

PluginFactory = Callable[..., Path]


def _minisign_keypair(where: Path) -> tuple[Path, Path]:
    pub, sec = where / "minisign.pub", where / "minisign.key"
    subprocess.run(
        ["minisign", "-G", "-W", "-p", str(pub), "-s", str(sec)],
        check=True, capture_output=True,
    )  # fmt: skip
    return pub, sec


def _minisign_signature(sec: Path, message: bytes, where: Path) -> bytes:
    """minisign's legacy (pure ed25519) signature over ``message``: the 64 bytes."""
    data = where / "message.bin"
    data.write_bytes(message)
    subprocess.run(
        ["minisign", "-S", "-l", "-s", str(sec), "-m", str(data), "-x", str(where / "m.sig")],
        check=True, capture_output=True, input=b"",
    )  # fmt: skip
    blob = base64.b64decode((where / "m.sig").read_text().splitlines()[1])
    assert blob[:2] == b"Ed"  # legacy mode: the message itself, not its BLAKE2b hash
    return blob[10:]


def test_a_plugin_signed_by_a_minisign_key_verifies_with_its_public_key_file(
    plugin_factory: PluginFactory, tmp_path: Path, home: dict[str, str]
) -> None:
    plugin = plugin_factory()
    pub, sec = _minisign_keypair(tmp_path)
    # An envelope made by another key, then minisign's signature over the same message.
    plugin.joinpath("plugin.sig").write_bytes(
        sign(capture(plugin), SigningKey.generate(), at=datetime.now(UTC)).envelope
    )
    add_signature(plugin, _minisign_signature(sec, signed_message(plugin), tmp_path))

    verified = ok(invoke_cli("verify", plugin, "--key", pub, "--json"))
    assert verified.json()["plugin"]["signers"] == [read_public_key_file(pub).keyid]
    added = ok(invoke_cli("key", "add", pub, "--json", env=home))
    assert added.json()["key"]["keyid"] == read_public_key_file(pub).keyid


def test_another_minisign_key_does_not_verify(
    plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    plugin = plugin_factory()
    _, sec = _minisign_keypair(tmp_path)
    (tmp_path / "other").mkdir()
    other_pub, _ = _minisign_keypair(tmp_path / "other")
    plugin.joinpath("plugin.sig").write_bytes(
        sign(capture(plugin), SigningKey.generate(), at=datetime.now(UTC)).envelope
    )
    add_signature(plugin, _minisign_signature(sec, signed_message(plugin), tmp_path))
    result = invoke_cli("verify", plugin, "--key", other_pub)
    assert result.code == 1, result.stderr


@pytest.mark.parametrize(
    ("key_line", "message"),
    [
        pytest.param("RWQ!!!notbase64", "key line is not base64", id="not-base64"),
        pytest.param(base64.b64encode(b"Ed" + bytes(20)).decode(), "not a minisign ed25519",
                     id="short"),
        pytest.param(base64.b64encode(b"XX" + bytes(40)).decode(), "not a minisign ed25519",
                     id="other-algorithm"),
    ],
)  # fmt: skip
def test_a_broken_minisign_key_is_one_line_and_exit_3(
    tmp_path: Path, home: dict[str, str], key_line: str, message: str
) -> None:
    pub = tmp_path / "broken.pub"
    pub.write_text(f"untrusted comment: minisign public key 0000\n{key_line}\n")
    one_line_error(invoke_cli("key", "add", pub, env=home), 3, message)
