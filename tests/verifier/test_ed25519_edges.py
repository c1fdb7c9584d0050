"""ed25519 edge cases: vtreg's verification accepts nothing OpenSSL's refuses.

Signatures are checked with libsodium (verifier/keys.py, for speed); OpenSSL's
(through cryptography) is the implementation vtreg signed and verified with
before. The ed25519-speccheck cases show where the two differ: on each case
vtreg must agree with libsodium, and everything it accepts OpenSSL accepts too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from vtreg.verifier.errors import KeyFileError
from vtreg.verifier.keys import PublicKey

_CASES = json.loads(
    (Path(__file__).parent.parent / "vectors" / "ed25519-speccheck" / "cases.json").read_text()
)


def _openssl_accepts(key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _vtreg_accepts(key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        return PublicKey(key).verify(signature, message)
    except KeyFileError:  # a small-order key is refused as a key, before any signature
        return False


@pytest.mark.parametrize("case", _CASES, ids=[f"speccheck-{i}" for i in range(len(_CASES))])
def test_no_edge_case_is_accepted_that_openssl_refuses(case: dict[str, str]) -> None:
    message, key, signature = (bytes.fromhex(case[f]) for f in ("message", "pub_key", "signature"))
    if _vtreg_accepts(key, signature, message):
        assert _openssl_accepts(key, signature, message)


def test_the_edge_cases_split_as_published() -> None:
    # Case 3 is the one ordinary valid signature; 0-2 verify under OpenSSL only because
    # it allows a small-order key or R, which vtreg refuses; 4-9 nobody should accept.
    accepted = [
        i
        for i, case in enumerate(_CASES)
        if _vtreg_accepts(*(bytes.fromhex(case[f]) for f in ("pub_key", "signature", "message")))
    ]
    openssl = [
        i
        for i, case in enumerate(_CASES)
        if _openssl_accepts(*(bytes.fromhex(case[f]) for f in ("pub_key", "signature", "message")))
    ]
    assert accepted == [3]
    assert openssl == [0, 1, 2, 3]


@given(message=st.binary(max_size=256), flip=st.integers(min_value=0, max_value=64 * 8 - 1))
def test_the_two_agree_on_honest_and_flipped_signatures(message: bytes, flip: int) -> None:
    private = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    key = PublicKey(private.public_key().public_bytes_raw())
    signature = private.sign(message)
    assert key.verify(signature, message)
    assert _openssl_accepts(key.raw, signature, message)
    forged = bytearray(signature)
    forged[flip // 8] ^= 1 << (flip % 8)
    assert key.verify(bytes(forged), message) == _openssl_accepts(key.raw, bytes(forged), message)
