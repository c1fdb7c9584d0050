"""C2SP signed notes, vkeys, checkpoints and cosignatures, against the specs' own vectors."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vtreg.verifier.errors import FormatError, SignatureError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.note import (
    COSIGNATURE,
    ED25519,
    Checkpoint,
    NoteVerifier,
    cosign,
    open_note,
    parse_note,
    sign_note,
)

# c2sp.org/signed-note, "Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()

# golang.org/x/mod/sumdb/note's TestSign and TestOpen: a private key, its vkey, a text,
# and the exact note ed25519 (deterministic) gives.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_ENOCH = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER = "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
GO_ENOCH_SIG = "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"


def _go_key() -> SigningKey:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]  # PRIVATE+KEY+name+id+key
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


def test_the_spec_example_verifies() -> None:
    verifier = NoteVerifier.parse(SPEC_VKEY)
    assert verifier.vkey == SPEC_VKEY
    note, verified = open_note(SPEC_NOTE, [verifier])
    assert note.text == "This is an example message.\n"
    assert verified == (verifier,)
    assert note.to_bytes() == SPEC_NOTE


def test_signing_gives_go_sumdb_note_byte_for_byte() -> None:
    key = _go_key()
    verifier = NoteVerifier("PeterNeumann", ED25519, key.public_key)
    assert verifier.vkey == GO_VKEY
    line = sign_note(GO_TEXT, key, "PeterNeumann")
    assert line.line() == GO_PETER
    note, _ = open_note((GO_TEXT + "\n" + GO_PETER).encode(), [verifier])
    assert note.to_bytes() == (GO_TEXT + "\n" + GO_PETER).encode()


def test_unknown_signatures_are_ignored_and_a_known_bad_one_rejects() -> None:
    peter, enoch = NoteVerifier.parse(GO_VKEY), NoteVerifier.parse(GO_ENOCH)
    both = (GO_TEXT + "\n" + GO_PETER + GO_ENOCH_SIG).encode()
    assert open_note(both, [peter])[1] == (peter,)
    assert open_note(both, [peter, enoch])[1] == (peter, enoch)
    with pytest.raises(SignatureError, match="not signed by a known key") as e:
        open_note(both, [NoteVerifier.parse(SPEC_VKEY)])
    assert e.value.code == "unknown-key"
    # Same name, other key id: an unknown key, ignored.
    renamed = GO_ENOCH_SIG.replace("EnochRoot", "PeterNeumann")
    assert open_note((GO_TEXT + "\n" + GO_PETER + renamed).encode(), [peter])[1] == (peter,)
    damaged = GO_PETER.replace("x08go/ZJ", "x08go/ZK")
    with pytest.raises(SignatureError, match="does not verify") as e:
        open_note((GO_TEXT + "\n" + damaged + GO_ENOCH_SIG).encode(), [peter, enoch])
    assert e.value.code == "bad-signature"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(GO_TEXT.encode() + GO_PETER.encode(), id="no-blank-line"),
        pytest.param((GO_TEXT + "\n").encode(), id="no-signature"),
        pytest.param((GO_TEXT + "\n" + GO_PETER.rstrip("\n")).encode(), id="no-final-newline"),
        pytest.param((GO_TEXT + "\n" + GO_PETER.replace("\u2014", "-")).encode(), id="hyphen"),
        pytest.param(
            (GO_TEXT + "\n" + GO_PETER.replace("Peter", "Pe ter")).encode(), id="space-in-name"
        ),
        pytest.param(
            (GO_TEXT + "\n" + GO_PETER.replace("M=", "N=")).encode(), id="non-canonical-base64"
        ),
        pytest.param(("a\x1bb\n\n" + GO_PETER).encode(), id="escape-character"),
        pytest.param(b"\xff\n\n" + GO_PETER.encode(), id="not-utf8"),
        pytest.param((GO_TEXT + "\n" + GO_PETER * 65).encode(), id="too-many-signatures"),
        pytest.param(b"x" * 70000 + b"\n\n" + GO_PETER.encode(), id="oversize"),
        # Signature lines end in U+000A only, as in Go's note.Open; str.splitlines() would
        # also split at these.
        pytest.param(
            (GO_TEXT + "\n" + GO_PETER.rstrip("\n") + "\u2028" + GO_ENOCH_SIG).encode(),
            id="line-separator-as-line-end",
        ),
        pytest.param(
            (GO_TEXT + "\n" + GO_PETER.rstrip("\n") + "\x85" + GO_ENOCH_SIG).encode(),
            id="next-line-as-line-end",
        ),
    ],
)
def test_malformed_notes_are_refused(data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_note(data)


@pytest.mark.parametrize(
    "vkey",
    [
        pytest.param(GO_VKEY.replace("c74f20a3", "c74f20a4"), id="wrong-key-id"),
        pytest.param(GO_VKEY[:-4], id="short-key"),
        pytest.param(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            id="long-key",
        ),
        pytest.param(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="unknown-type"
        ),
        pytest.param("Peter+Neumann+c74f20a3+ARpc", id="plus-in-name"),
        pytest.param("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="empty-name"),
    ],
)
def test_malformed_vkeys_are_refused(vkey: str) -> None:  # Go's TestNewVerifier cases
    with pytest.raises(FormatError):
        NoteVerifier.parse(vkey)


def test_a_checkpoint_round_trips_as_the_spec_shows_it() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = Checkpoint.parse(text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.text() == text
    for bad in ("a\n1\n", "a\n01\n" + text.split("\n")[2] + "\n", "a\n1\nAAAA\n", "a\n1\nx\n\n"):
        with pytest.raises(FormatError):
            Checkpoint.parse(bad)


def test_a_cosignature_signs_the_spec_message_and_verifies_as_type_4(key: SigningKey) -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    line = cosign(text, key, "witness.example.com/w1", timestamp=1679315147)
    message = b"cosignature/v1\ntime 1679315147\n" + text.encode()
    assert key.public_key.verify(line.signature[8:], message)
    assert line.timestamp == 1679315147
    witness = NoteVerifier("witness.example.com/w1", COSIGNATURE, key.public_key)
    log = NoteVerifier("example.com/behind-the-sofa", ED25519, key.public_key)
    assert witness.key_id != log.key_id  # one key, two types, two ids
    note = (text + "\n" + line.line()).encode()
    assert open_note(note, [witness])[1] == (witness,)
    with pytest.raises(SignatureError):  # a cosignature is not a log signature
        open_note(note, [log])
