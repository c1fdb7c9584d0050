"""Keys a user already has: OpenSSH key files, inline public keys, and key hygiene commands."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok, one_line_error, run_cli
from tests.keytools import run_at_a_terminal, ssh_fingerprint, ssh_keygen
from vtreg.verifier.keys import read_private_key_file, read_public_key_file

PluginFactory = Callable[..., Path]


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    """A passphrase file whose first line is the passphrase ``pw``."""
    path = tmp_path / "pass.txt"
    path.write_text("pw\nthis second line is not part of it\n")
    return path


@pytest.mark.parametrize(
    "secret", [pytest.param("", id="plain"), pytest.param("pw", id="encrypted")]
)
def test_sign_with_an_openssh_key_and_verify_with_its_pub_file(
    plugin_factory: PluginFactory, tmp_path: Path, passfile: Path, secret: str
) -> None:
    plugin = plugin_factory()
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", secret)

    signed = ok(invoke_cli("sign", plugin, "--key", key, "--passphrase-file", passfile, "--json"))
    verified = ok(invoke_cli("verify", plugin, "--key", f"{key}.pub", "--json"))

    assert signed.json()["keyid"] == read_public_key_file(f"{key}.pub").keyid
    assert verified.json()["plugin"]["content_digest"] == signed.json()["content_digest"]


def test_verify_with_an_inline_public_key(plugin_factory: PluginFactory, tmp_path: Path) -> None:
    plugin = plugin_factory()
    key = ssh_keygen(tmp_path, "id_ed25519")
    ok(invoke_cli("sign", plugin, "--key", key))
    line = Path(f"{key}.pub").read_text().strip()

    ok(invoke_cli("verify", plugin, "--key", line))
    other = Path(f"{ssh_keygen(tmp_path, 'other')}.pub").read_text().strip()
    result = invoke_cli("verify", plugin, "--key", other)
    assert result.code == 1, result.stderr


def test_key_add_takes_an_openssh_pub_file(tmp_path: Path, home: dict[str, str]) -> None:
    key = ssh_keygen(tmp_path, "id_ed25519")

    added = ok(invoke_cli("key", "add", f"{key}.pub", "--json", env=home))

    assert added.json()["key"]["keyid"] == read_public_key_file(f"{key}.pub").keyid
    assert added.json()["key"]["name"] == "alice"  # the line's comment


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_private_key_open_to_others_is_refused_and_nothing_is_written(
    plugin_factory: PluginFactory, tmp_path: Path, mode: int
) -> None:
    plugin = plugin_factory()
    key = ssh_keygen(tmp_path, "id_ed25519")
    key.chmod(mode)

    result = invoke_cli("sign", plugin, "--key", key)

    one_line_error(result, 3, f"is mode {mode:04o}, open to group or others.*chmod 600")
    assert not (plugin / "plugin.sig").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda d: ssh_keygen(d, "id_rsa", "rsa"), "expected an ed25519 key, found RSAPrivateKey", id="rsa-key"),
        pytest.param(lambda d: d / "missing", "does not exist", id="missing"),
        pytest.param(lambda d: Path(f"{ssh_keygen(d, 'id')}.pub"), "expected a PKCS#8 PRIVATE KEY block|PEM block", id="public-key-as-private"),
    ],
)  # fmt: skip
def test_unusable_signing_keys_are_one_line_and_exit_3(
    plugin_factory: PluginFactory, tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    plugin = plugin_factory()
    path = make(tmp_path)
    if path.exists():
        path.chmod(0o600)
    result = invoke_cli("sign", plugin, "--key", path)
    one_line_error(result, 3, message)
    assert not (plugin / "plugin.sig").exists()


def test_passphrase_file_gives_its_first_line_only(
    plugin_factory: PluginFactory, tmp_path: Path, passfile: Path
) -> None:
    plugin = plugin_factory()
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")
    ok(invoke_cli("sign", plugin, "--key", key, "--passphrase-file", passfile))

    whole = tmp_path / "whole.txt"
    whole.write_text("pw\n")
    empty_first = tmp_path / "empty-first.txt"
    empty_first.write_text("\npw\n")
    ok(invoke_cli("sign", plugin, "--key", key, "--passphrase-file", whole, "--fresh"))
    result = invoke_cli("sign", plugin, "--key", key, "--passphrase-file", empty_first)
    one_line_error(result, 3, "its first line is empty")


@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
def test_passphrase_from_standard_input(
    plugin_factory: PluginFactory, tmp_path: Path, name: str
) -> None:
    plugin = plugin_factory()
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")
    # A process with a pipe on stdin, as in `echo pw | vtreg sign ...`.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vtreg",
            "sign",
            str(plugin),
            "--key",
            str(key),
            "--passphrase-file",
            name,
        ],
        input="pw\nignored\n",
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("VTREG_")},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (plugin / "plugin.sig").exists()


def test_key_pub_prints_pem_and_openssh_line(tmp_path: Path, passfile: Path) -> None:
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")
    pub = Path(f"{key}.pub")

    pem = ok(invoke_cli("key", "pub", key, "--passphrase-file", passfile))
    line = ok(invoke_cli("key", "pub", key, "--openssh", "--passphrase-file", passfile, "--json"))

    assert read_public_key_file(pub).keyid in pem.stdout
    assert line.json()["openssh"].split()[:2] == pub.read_text().split()[:2]
    assert line.json()["fingerprint"] == ssh_fingerprint(pub)


def test_key_pub_writes_a_new_file_and_never_overwrites(tmp_path: Path, keys: Path) -> None:
    out = tmp_path / "alice-again.pub"
    ok(invoke_cli("key", "pub", keys / "alice.key", "--out", out))
    assert read_public_key_file(out).keyid == read_public_key_file(keys / "alice.pub").keyid

    one_line_error(
        invoke_cli("key", "pub", keys / "bob.key", "--out", out), 3, "refusing to overwrite"
    )
    assert read_public_key_file(out).keyid == read_public_key_file(keys / "alice.pub").keyid


@pytest.mark.parametrize("kind", ["vtreg", "openssh"])
def test_key_passphrase_changes_it_in_place_keeping_the_format(
    tmp_path: Path, passfile: Path, kind: str
) -> None:
    if kind == "openssh":
        key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")
    else:
        ok(invoke_cli("keygen", "alice", "--out", tmp_path, env={"VTREG_PASSPHRASE": "pw"}))
        key = tmp_path / "alice.key"
    keyid = read_private_key_file(key, b"pw").keyid
    header = key.read_bytes().splitlines()[0]
    new = tmp_path / "new.txt"
    new.write_text("a new passphrase\n")

    ok(
        invoke_cli(
            "key", "passphrase", key, "--passphrase-file", passfile, "--new-passphrase-file", new
        )
    )

    assert key.read_bytes().splitlines()[0] == header
    assert key.stat().st_mode & 0o777 == 0o600
    assert read_private_key_file(key, b"a new passphrase").keyid == keyid
    result = invoke_cli(
        "key", "passphrase", key, "--passphrase-file", passfile, "--new-passphrase-file", new
    )
    one_line_error(result, 3, "wrong passphrase")
    assert read_private_key_file(key, b"a new passphrase").keyid == keyid


def test_openssh_key_after_passphrase_change_still_opens_in_ssh_keygen(
    tmp_path: Path, passfile: Path
) -> None:
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")
    new = tmp_path / "new.txt"
    new.write_text("changed\n")
    ok(
        invoke_cli(
            "key", "passphrase", key, "--passphrase-file", passfile, "--new-passphrase-file", new
        )
    )

    line = subprocess.run(
        ["ssh-keygen", "-y", "-P", "changed", "-f", str(key)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert line.split()[:2] == Path(f"{key}.pub").read_text().split()[:2]


def test_a_mistyped_passphrase_is_asked_again_at_a_terminal(
    plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    plugin = plugin_factory()
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")

    code, shown = run_at_a_terminal(["sign", str(plugin), "--key", str(key)], ["typo", "pw"])

    assert code == 0, shown
    assert shown.count(f"Passphrase for {key}:") == 2  # the prompt names the key
    assert "wrong passphrase" in shown
    assert (plugin / "plugin.sig").exists()


def test_three_mistyped_passphrases_give_up(plugin_factory: PluginFactory, tmp_path: Path) -> None:
    plugin = plugin_factory()
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")

    code, shown = run_at_a_terminal(["sign", str(plugin), "--key", str(key)], ["a", "b", "c"])

    assert code == 3, shown
    assert shown.count("Passphrase for") == 3
    assert not (plugin / "plugin.sig").exists()


def test_without_a_terminal_a_wrong_passphrase_is_not_retried(
    plugin_factory: PluginFactory, tmp_path: Path
) -> None:
    plugin = plugin_factory()
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")
    result = run_cli("sign", plugin, "--key", key, env={"VTREG_PASSPHRASE": "typo"})
    one_line_error(result, 3, "wrong passphrase for")
    assert not (plugin / "plugin.sig").exists()


def test_key_passphrase_can_remove_it(tmp_path: Path, passfile: Path) -> None:
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")
    result = ok(
        invoke_cli("key", "passphrase", key, "--passphrase-file", passfile, "--unencrypted")
    )
    assert "is not encrypted" in result.stderr

    def ask() -> bytes:
        raise AssertionError("asked for a passphrase")

    assert read_private_key_file(key, ask).keyid == read_public_key_file(f"{key}.pub").keyid


def test_stdin_cannot_give_both_directories_and_passphrase(tmp_path: Path) -> None:
    key = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "pw")
    result = invoke_cli("sign", "-", "--key", key, "--passphrase-file", "-")
    one_line_error(result, 2, "stdin can give the directories or the passphrase, not both")
