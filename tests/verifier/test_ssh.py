"""OpenSSH keys, as ssh-keygen makes them: private key files, public lines, fingerprints."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from tests.keytools import ssh_fingerprint, ssh_keygen
from vtreg.verifier.errors import KeyFileError, PassphraseError
from vtreg.verifier.keyrefs import read_private_key_ref, read_public_key_ref
from vtreg.verifier.keys import (
    SigningKey,
    load_private_key,
    load_public_key,
    read_private_key_file,
    read_public_key_file,
)
from vtreg.verifier.ssh import fingerprint, parse_public_line, public_blob, public_line


@pytest.mark.parametrize(
    "passphrase", [pytest.param("", id="plain"), pytest.param("pw", id="encrypted")]
)
def test_openssh_private_key_matches_its_public_line(tmp_path: Path, passphrase: str) -> None:
    path = ssh_keygen(tmp_path, "id_ed25519", passphrase=passphrase)

    private = read_private_key_file(path, passphrase.encode() or None)
    public = read_public_key_file(f"{path}.pub")

    assert private.keyid == public.keyid
    assert public.name == "alice"  # the comment, being a safe name
    assert public.verify(private.sign(b"message"), b"message")


def test_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    path = ssh_keygen(tmp_path, "id_ed25519")
    printed = ssh_fingerprint(path.with_suffix(".pub"))

    assert fingerprint(public_blob(read_public_key_file(f"{path}.pub"))) == printed


def test_public_line_we_write_is_read_by_ssh_keygen(tmp_path: Path, key: SigningKey) -> None:
    line = tmp_path / "alice.pub"
    line.write_text(public_line(key.public_key) + "\n")
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(line)], capture_output=True, text=True, check=True
    ).stdout.split()

    assert printed[1] == fingerprint(public_blob(key.public_key))
    assert printed[2] == "alice"
    assert parse_public_line(line.read_text()).keyid == key.keyid


def test_wrong_and_missing_passphrase_for_an_openssh_key(tmp_path: Path) -> None:
    path = ssh_keygen(tmp_path, "id_ed25519", "ed25519", "right")
    with pytest.raises(PassphraseError, match="wrong passphrase for"):
        read_private_key_file(path, b"wrong")
    with pytest.raises(PassphraseError, match="is encrypted and no passphrase was given"):
        read_private_key_file(path, None)


def test_an_unencrypted_openssh_key_never_asks(tmp_path: Path) -> None:
    path = ssh_keygen(tmp_path, "id_ed25519")

    def ask() -> bytes:
        raise AssertionError("asked for a passphrase")

    assert read_private_key_file(path, ask).keyid == read_public_key_file(f"{path}.pub").keyid


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_other_openssh_key_types_are_refused(tmp_path: Path, kind: str) -> None:
    path = ssh_keygen(tmp_path, f"id_{kind}", kind)
    with pytest.raises(KeyFileError, match="expected an ed25519 key"):
        read_private_key_file(path, None)
    with pytest.raises(
        KeyFileError,
        match=f"expected an ssh-ed25519 key, found {'ssh-rsa' if kind == 'rsa' else 'ecdsa-sha2-nistp256'}",
    ):
        read_public_key_file(f"{path}.pub")


def test_openssh_format_written_by_us_is_read_by_ssh_keygen(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "id"
    path.write_bytes(key.to_openssh(b"pw"))
    path.chmod(0o600)
    # ssh-keygen -y prints the public key of a private key file, given its passphrase
    line = subprocess.run(
        ["ssh-keygen", "-y", "-P", "pw", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert parse_public_line(line).keyid == key.keyid
    assert read_private_key_file(path, b"pw").keyid == key.keyid


_BLOB = base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(range(1, 33))).decode()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("ssh-ed25519 AAAA", "not a usable|truncated", id="truncated-blob"),
        pytest.param("ssh-ed25519 not*base64", "not an OpenSSH public key line", id="bad-base64"),
        pytest.param("ssh-rsa " + _BLOB, "expected an ssh-ed25519 key, found ssh-rsa", id="type-mismatch-outer"),
        pytest.param("ssh-ed25519 " + base64.b64encode(b"\0\0\0\x07ssh-rsa\0\0\0\x01x").decode(), "found ssh-rsa", id="type-mismatch-inner"),
        pytest.param("ssh-ed25519 " + base64.b64encode(base64.b64decode(_BLOB) + b"x").decode(), "is not an ssh-ed25519 key", id="trailing-bytes"),
        pytest.param("ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes([1]) + bytes(31)).decode(), "a point of small order", id="identity-key"),
    ],
)  # fmt: skip
def test_malformed_or_weak_public_lines_are_refused(line: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        load_public_key(line.encode())


def test_an_unsafe_comment_does_not_become_the_name(key: SigningKey) -> None:
    line = public_line(key.public_key).rsplit(" ", 1)[0] + " \x1b[2Jroot@host"
    assert parse_public_line(line).name is None


def test_inline_public_key(key: SigningKey) -> None:
    assert read_public_key_ref(public_line(key.public_key)).keyid == key.keyid
    with pytest.raises(KeyFileError, match="expected an ssh-ed25519 key, found ssh-rsa"):
        read_public_key_ref("ssh-rsa " + _BLOB)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_private_key_files_open_to_others_are_refused(
    tmp_path: Path, key: SigningKey, mode: int
) -> None:
    path = tmp_path / "alice.key"
    path.write_bytes(key.to_pem(None))
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"is mode {mode:04o}, open to group or others"):
        read_private_key_ref(str(path), None)
    path.chmod(0o600)
    assert read_private_key_ref(str(path), None).keyid == key.keyid


def test_openssh_private_key_in_a_pkcs8_reader_is_not_mistaken(tmp_path: Path) -> None:
    # The label decides the format; a PKCS#8 body under the OpenSSH label is refused.
    text = b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(KeyFileError, match="not a readable OpenSSH private key"):
        load_private_key(text, b"pw")
