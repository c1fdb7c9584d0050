"""ed25519 keys: ids, public key files, passphrase-protected PKCS#8 private keys."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from vtreg.verifier.errors import KeyFileError, PassphraseError
from vtreg.verifier.keys import (
    SCRYPT_N,
    PublicKey,
    SigningKey,
    keyid_of,
    load_private_key,
    load_public_key,
    read_private_key_file,
    read_public_key_file,
)

FAST_N = 2**10  # tests that are not about the KDF cost use a cheap one


def test_keyid_is_sha256_of_the_raw_public_key(key: SigningKey) -> None:
    assert key.keyid == hashlib.sha256(key.public_key.raw).hexdigest()
    assert keyid_of(key.public_key.raw) == key.keyid
    assert len(key.keyid) == 64


def test_public_key_file_round_trips(key: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "alice.pub"
    path.write_bytes(key.public_key.to_file_bytes())

    loaded = read_public_key_file(path)

    assert loaded == PublicKey(key.public_key.raw, "alice")
    assert f"# keyid: {key.keyid}" in path.read_text()


def test_bare_pem_public_key_is_accepted(key: SigningKey) -> None:
    assert load_public_key(key.public_key.to_pem()).keyid == key.keyid


def test_public_key_file_with_wrong_keyid_comment_is_refused(
    key: SigningKey, other_key: SigningKey
) -> None:
    text = key.public_key.to_file_bytes().replace(key.keyid.encode(), other_key.keyid.encode())
    with pytest.raises(KeyFileError, match="its keyid line says"):
        load_public_key(text)


def test_two_public_keys_in_one_file_are_refused(key: SigningKey, other_key: SigningKey) -> None:
    with pytest.raises(KeyFileError, match="expected exactly one PEM block, found 2"):
        load_public_key(key.public_key.to_pem() + other_key.public_key.to_pem())


@pytest.mark.parametrize(
    ("foreign", "public_found"),
    [
        pytest.param(lambda: rsa.generate_private_key(65537, 2048), "found RSAPublicKey", id="rsa"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), None, id="ecdsa"),
    ],
)
def test_signing_keys_are_ed25519_only(foreign: object, public_found: str | None) -> None:
    # A trusted public key may be ECDSA P-256/P-384 (tests/verifier/test_ecdsa.py).
    private = foreign()  # type: ignore[operator]
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if public_found is not None:
        with pytest.raises(KeyFileError, match=f"expected an ed25519 or ECDSA .*{public_found}"):
            load_public_key(public_pem)
    with pytest.raises(KeyFileError, match="expected an ed25519 key"):
        load_private_key(private_pem, None)


def test_private_key_is_encrypted_with_scrypt_pbes2(key: SigningKey) -> None:
    pem = key.to_pem(b"correct horse", scrypt_n=FAST_N)
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")

    loaded = load_private_key(pem, b"correct horse")

    assert loaded.keyid == key.keyid
    assert loaded.sign(b"m") == key.sign(b"m")  # ed25519 is deterministic


def test_encrypted_key_structure_is_standard_pkcs8(key: SigningKey, tmp_path: Path) -> None:
    # openssl parses it as PBES2 + scrypt + AES-256-CBC: any PKCS#8 reader can.
    path = tmp_path / "k.pem"
    path.write_bytes(key.to_pem(b"pw", scrypt_n=FAST_N))
    dump = subprocess.run(
        ["openssl", "asn1parse", "-in", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert ":PBES2" in dump
    assert ":scrypt" in dump
    assert ":aes-256-cbc" in dump


def test_default_kdf_cost_is_what_we_claim(key: SigningKey, tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(key.to_pem(b"pw"))  # the real cost: about half a second
    dump = subprocess.run(
        ["openssl", "asn1parse", "-in", str(path)], capture_output=True, text=True, check=True
    ).stdout
    ints = [int(line.split(":")[-1], 16) for line in dump.splitlines() if "INTEGER" in line]

    assert ints[:3] == [2**14, 8, 8]  # N, r, p: 16 MiB per guess, the work of N=2^17 p=1
    assert SCRYPT_N == 2**14
    assert load_private_key(path.read_bytes(), b"pw").keyid == key.keyid


def test_openssl_decrypts_the_default_encrypted_key(key: SigningKey, tmp_path: Path) -> None:
    # N=2^17, r=8 needed 128 MiB, past OpenSSL's 32 MiB scrypt cap: `openssl pkey` refused it.
    path, secret = tmp_path / "k.pem", tmp_path / "pass"
    path.write_bytes(key.to_pem(b"correct horse"))
    secret.write_text("correct horse\n")
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-passin", f"file:{secret}", "-pubout"],
        capture_output=True,
        check=True,
    ).stdout

    assert load_public_key(public).keyid == key.keyid
    wrong = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-passin", "pass:wrong", "-noout"],
        capture_output=True,
        check=False,
    )
    assert wrong.returncode != 0


def test_wrong_passphrase(key: SigningKey) -> None:
    pem = key.to_pem(b"right", scrypt_n=FAST_N)
    with pytest.raises(PassphraseError, match="wrong passphrase for private key"):
        load_private_key(pem, b"wrong")


def test_a_wrong_passphrase_that_decrypts_to_garbage_is_still_a_wrong_passphrase(
    key: SigningKey,
) -> None:
    # About one wrong passphrase in 256 leaves valid CBC padding, so the failure
    # comes from parsing the decrypted bytes rather than from the padding check.
    from cryptography.hazmat.primitives import serialization

    pem = key.to_pem(b"right", scrypt_n=FAST_N)
    for n in range(5000):
        wrong = b"wrong-%d" % n
        try:
            serialization.load_pem_private_key(pem, wrong)
        except ValueError as e:
            if "password" not in str(e).lower():
                break
    else:
        pytest.fail("no wrong passphrase decrypted to well-padded garbage in 5000 tries")
    with pytest.raises(PassphraseError, match="wrong passphrase for private key"):
        load_private_key(pem, wrong)


def test_missing_passphrase(key: SigningKey) -> None:
    pem = key.to_pem(b"right", scrypt_n=FAST_N)
    with pytest.raises(PassphraseError, match="is encrypted and no passphrase was given"):
        load_private_key(pem, None)


def test_passphrase_is_asked_only_when_needed(key: SigningKey) -> None:
    asked: list[bool] = []

    def ask() -> bytes:
        asked.append(True)
        return b"pw"

    load_private_key(key.to_pem(None), ask)
    assert not asked
    load_private_key(key.to_pem(b"pw", scrypt_n=FAST_N), ask)
    assert asked == [True]


def test_empty_passphrase_is_refused_for_encryption(key: SigningKey) -> None:
    with pytest.raises(PassphraseError, match="empty passphrase"):
        key.to_pem(b"")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "found 0", id="empty"),
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a readable PKCS#8 private key",
            id="garbage-der",
        ),
        pytest.param(
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "expected a PKCS#8 PRIVATE KEY block, found RSA PRIVATE KEY",
            id="pkcs1",
        ),
    ],
)
def test_malformed_private_keys(content: bytes, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        load_private_key(content, b"pw")


def test_key_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        read_public_key_file(tmp_path / "missing.pub")
    with pytest.raises(KeyFileError, match="is not a regular file"):
        read_private_key_file(tmp_path, b"pw")  # a directory
    big = tmp_path / "big.pub"
    big.write_bytes(b"#" * 20_000)
    with pytest.raises(KeyFileError, match="larger than"):
        read_public_key_file(big)


def test_private_key_never_shows_in_repr(key: SigningKey) -> None:
    raw = key._key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert raw.hex() not in repr(key)
    assert repr(key) == f"SigningKey(keyid={key.keyid!r})"


def test_signatures_verify_only_with_the_right_key(key: SigningKey, other_key: SigningKey) -> None:
    signature = key.sign(b"message")
    assert key.public_key.verify(signature, b"message")
    assert not key.public_key.verify(signature, b"messagf")
    assert not other_key.public_key.verify(signature, b"message")


# --- weak public keys: a small-order point accepts forged signatures ---

IDENTITY_KEY = bytes([1]) + bytes(31)
FORGED_SIGNATURE = IDENTITY_KEY + bytes(32)  # R = identity, S = 0: "valid" for any message
_SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")  # DER header before the 32 key bytes


def weak_public_key_pem(raw: bytes) -> bytes:
    """A PEM public key file for any 32 bytes, weak or not, as an attacker would write it."""
    import base64

    body = base64.b64encode(_SPKI_ED25519 + raw).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()


@pytest.mark.parametrize(
    ("encoded", "problem"),
    [
        # all eight small-order points: orders 1, 2, 4 and 8
        pytest.param("01" + "00" * 31, "a point of small order", id="identity"),
        pytest.param("ec" + "ff" * 30 + "7f", "a point of small order", id="order-2"),
        pytest.param("00" * 32, "a point of small order", id="order-4"),
        pytest.param("00" * 31 + "80", "a point of small order", id="order-4-negated"),
        pytest.param("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", "a point of small order", id="order-8"),
        pytest.param("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", "a point of small order", id="order-8-b"),
        pytest.param("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", "a point of small order", id="order-8-negated"),
        pytest.param("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", "a point of small order", id="order-8-b-negated"),
        # the same points spelled a second way
        pytest.param("ed" + "ff" * 30 + "7f", "non-canonical encoding", id="y-equals-p"),
        pytest.param("ee" + "ff" * 30 + "7f", "non-canonical encoding", id="y-equals-p-plus-1"),
        pytest.param("01" + "00" * 30 + "80", "non-canonical encoding", id="negative-zero-x"),
        pytest.param("02" + "00" * 31, "not a point on the curve", id="off-curve"),
    ],
)  # fmt: skip
def test_weak_public_keys_are_refused(encoded: str, problem: str) -> None:
    raw = bytes.fromhex(encoded)

    with pytest.raises(KeyFileError, match=f"not a usable ed25519 public key: {problem}"):
        PublicKey(raw)
    with pytest.raises(KeyFileError, match=problem):
        load_public_key(weak_public_key_pem(raw))


def test_the_identity_key_really_accepts_forgeries_without_the_check() -> None:
    # Why the check exists: OpenSSL itself verifies this "signature" for any message.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(IDENTITY_KEY).verify(FORGED_SIGNATURE, b"anything at all")
    with pytest.raises(KeyFileError):
        PublicKey(IDENTITY_KEY)


@settings(max_examples=50, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32))
def test_every_real_key_is_accepted(seed: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()

    assert PublicKey(raw).keyid == keyid_of(raw)
