"""The early capture's own check that plugin.sig was signed by a named key."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from vtreg.verifier._presigned import signed_by
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture


@pytest.fixture
def envelope(plugin_factory: Callable[..., Path], key: SigningKey, now: datetime) -> bytes:
    return sign(capture(plugin_factory()), key, at=now).envelope


def _key_file(tmp_path: Path, key: SigningKey, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(key.public_key.to_pem())
    return str(path)


def test_a_named_signer_is_recognised(
    tmp_path: Path, envelope: bytes, key: SigningKey, other_key: SigningKey
) -> None:
    signer = _key_file(tmp_path, key, "alice.pub")
    other = _key_file(tmp_path, other_key, "bob.pub")
    assert signed_by(envelope, (other, signer))
    assert not signed_by(envelope, (other,))
    assert not signed_by(envelope, ())


def _flip_signature(envelope: bytes) -> bytes:
    parsed = json.loads(envelope)
    sig = parsed["signatures"][0]["sig"]
    parsed["signatures"][0]["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    return json.dumps(parsed).encode()


def _other_payload(envelope: bytes) -> bytes:
    parsed = json.loads(envelope)
    parsed["payload"] = "e30="  # {}
    return json.dumps(parsed).encode()


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_flip_signature, id="flipped-signature"),
        pytest.param(_other_payload, id="other-payload"),
        pytest.param(lambda e: os.urandom(len(e)), id="garbage"),
        pytest.param(lambda e: b'{"payload": 1}', id="wrong-shape"),
    ],
)
def test_anything_else_is_not_signed(
    tmp_path: Path, envelope: bytes, key: SigningKey, spoil: Callable[[bytes], bytes]
) -> None:
    assert not signed_by(spoil(envelope), (_key_file(tmp_path, key, "alice.pub"),))


def test_key_files_it_cannot_read_count_for_nothing(
    tmp_path: Path, envelope: bytes, key: SigningKey
) -> None:
    fifo = tmp_path / "fifo.pub"
    os.mkfifo(fifo)  # must not block: nobody writes to it
    two = tmp_path / "two.pub"
    two.write_bytes(key.public_key.to_pem() * 2)
    assert not signed_by(envelope, (str(fifo), str(two), str(tmp_path / "missing.pub")))


def test_a_threshold_counts_distinct_named_signers(
    tmp_path: Path,
    plugin_factory: Callable[..., Path],
    key: SigningKey,
    other_key: SigningKey,
    now: datetime,
) -> None:
    alice = _key_file(tmp_path, key, "alice.pub")
    bob = _key_file(tmp_path, other_key, "bob.pub")
    once = sign(capture(plugin_factory()), key, at=now).envelope
    assert signed_by(once, (alice, bob), 1)
    assert not signed_by(once, (alice, bob), 2)  # one signer does not meet a threshold of 2
    assert not signed_by(once, (alice, alice), 2)  # the same key named twice counts once
    assert not signed_by(once, (alice,), 0)  # an unusable threshold allows nothing

    twice = json.loads(once)
    twice["signatures"] *= 2  # one key signing twice still counts once
    assert not signed_by(json.dumps(twice).encode(), (alice, bob), 2)


@pytest.mark.parametrize(
    ("args", "threshold"),
    [
        pytest.param(["verify", "d", "--key", "a.pub"], 1, id="default"),
        pytest.param(["verify", "d", "--threshold", "2"], 2, id="separate"),
        pytest.param(["verify", "d", "--threshold=3"], 3, id="equals"),
        pytest.param(["verify", "--threshold", "1", "d", "--threshold", "2"], 2, id="last-wins"),
        pytest.param(["verify", "d", "--threshold=1", "--threshold", "2"], 2, id="mixed-forms"),
        pytest.param(["verify", "d", "--threshold"], 0, id="no-value"),
        pytest.param(["verify", "d", "--threshold", "two"], 0, id="not-a-number"),
        pytest.param(["verify", "d", "--threshold", "0"], 0, id="zero"),
        pytest.param(["verify", "d", "--threshold", "\u0662"], 0, id="arabic-digit"),
    ],
)
def test_the_early_capture_takes_verifys_threshold(args: list[str], threshold: int) -> None:
    from vtreg.registry.cli import _threshold

    assert _threshold(args) == threshold
