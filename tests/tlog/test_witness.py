"""The witness (tlog-witness add-checkpoint), its cosignatures, and quorum policies."""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import ok
from tests.tlog.conftest import ORIGIN, Log
from vtreg.registry.witness import Witness, serve, submit
from vtreg.verifier import merkle
from vtreg.verifier.errors import FormatError, VtregError
from vtreg.verifier.keys import SigningKey, read_private_key_file
from vtreg.verifier.note import (
    COSIGNATURE,
    ED25519,
    Checkpoint,
    Note,
    NoteVerifier,
    cosign,
    open_note,
    parse_note,
    sign_note,
)
from vtreg.verifier.policy import Policy

W_NAME = "witness.example.com/w1"


class _Log:
    """An in-memory log of ``history`` entries, signing checkpoints with ``key``."""

    def __init__(self, key: SigningKey, history: str = "a") -> None:
        self.key, self.history = key, history

    def read(self, size: int) -> merkle.HashReader:
        tiles = merkle.tiles_of(
            merkle.leaf_hash(f"{self.history}{i}".encode()) for i in range(size)
        )
        return merkle.tile_hash_reader(lambda level, n: tiles[level, n])

    def note(self, size: int, origin: str = ORIGIN) -> bytes:
        root = merkle.subtree_hash(self.read(size), 0, size) if size else merkle.EMPTY_ROOT
        text = Checkpoint(origin, size, root).text()
        return Note(text, (sign_note(text, self.key, origin),)).to_bytes()

    def request(self, old: int, size: int, proof: list[bytes] | None = None) -> bytes:
        if proof is None:
            proof = merkle.consistency_proof(self.read(size), old, size)
        lines = [f"old {old}", *(merkle_b64(h) for h in proof)]
        return ("\n".join(lines) + "\n\n").encode() + self.note(size)


def merkle_b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@pytest.fixture
def log_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def witness(tmp_path: Path, log_key: SigningKey, key: SigningKey) -> Witness:
    log = NoteVerifier(ORIGIN, ED25519, log_key.public_key)
    return Witness(key, W_NAME, [log], tmp_path / "witness", clock=lambda: 1_700_000_000)


@pytest.fixture(autouse=True)
def _state_dir(witness: Witness) -> None:
    witness.state_dir.mkdir()


def test_a_witness_cosigns_consistent_checkpoints_only(
    witness: Witness, log_key: SigningKey
) -> None:
    log = _Log(log_key)
    first = witness.add_checkpoint(log.request(0, 5))
    assert first.status == 200
    line = parse_note(log.note(5) + first.body).signatures[-1]
    assert line.timestamp == 1_700_000_000
    verifier = NoteVerifier.parse(witness.vkey)
    assert verifier.kind == COSIGNATURE
    assert open_note(log.note(5) + first.body, [verifier])[1] == (verifier,)
    assert witness.add_checkpoint(log.request(5, 9)).status == 200
    assert witness.latest(ORIGIN)[0] == 9


def test_a_client_behind_gets_409_and_the_witness_size(
    witness: Witness, log_key: SigningKey
) -> None:
    log = _Log(log_key)
    witness.add_checkpoint(log.request(0, 5))
    behind = witness.add_checkpoint(log.request(0, 7, proof=[]))
    assert (behind.status, behind.body, behind.content_type) == (409, b"5\n", "text/x.tlog.size")
    assert witness.add_checkpoint(log.request(3, 7)).status == 409


def test_a_bad_proof_or_a_fork_gets_422(witness: Witness, log_key: SigningKey) -> None:
    log, fork = _Log(log_key), _Log(log_key, history="b")
    witness.add_checkpoint(log.request(0, 5))
    proof = merkle.consistency_proof(log.read(9), 5, 9)
    damaged = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    assert witness.add_checkpoint(log.request(5, 9, proof=damaged)).status == 422
    # The log key signed another history: its own proof is fine, but not from the witness's root.
    assert witness.add_checkpoint(fork.request(5, 9)).status == 422
    same_size = witness.add_checkpoint(fork.request(5, 5, proof=[]))
    assert same_size.status == 422
    assert witness.latest(ORIGIN)[0] == 5
    assert witness.add_checkpoint(log.request(0, 0, proof=[merkle.EMPTY_ROOT])).status == 409


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"old 0\n\nnot a note", 400, id="malformed-note"),
        pytest.param(b"old x\n\n", 400, id="malformed-old"),
        pytest.param(b"old 01\n\n", 400, id="leading-zero"),
    ],
)
def test_malformed_requests_get_400(witness: Witness, body: bytes, status: int) -> None:
    assert witness.add_checkpoint(body).status == status


def test_a_fresh_witness_refuses_a_proof_from_nothing_or_a_wrong_empty_root(
    witness: Witness, log_key: SigningKey
) -> None:
    log = _Log(log_key)
    assert witness.add_checkpoint(log.request(0, 5, proof=[merkle.EMPTY_ROOT])).status == 422
    text = Checkpoint(ORIGIN, 0, bytes(32)).text()  # an empty tree whose root is not SHA-256("")
    empty = Note(text, (sign_note(text, log_key, ORIGIN),)).to_bytes()
    assert witness.add_checkpoint(b"old 0\n\n" + empty).status == 422
    assert witness.latest(ORIGIN)[2] is None  # nothing was cosigned


@pytest.fixture
def served(witness: Witness) -> Iterator[http.client.HTTPConnection]:
    """The witness's HTTP API on 127.0.0.1, and a connection to it."""
    server = serve(witness, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    yield connection
    connection.close()
    server.shutdown()
    server.server_close()


def _post(connection: http.client.HTTPConnection, body: bytes, length: str) -> int:
    connection.putrequest("POST", "/add-checkpoint")
    connection.putheader("Content-Length", length)
    connection.endheaders(body)
    try:
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()  # a refused length closes the connection; the next one reopens


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    connection.request("GET", path)
    try:
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_every_status_over_http_and_the_latest_checkpoint(
    witness: Witness, served: http.client.HTTPConnection, log_key: SigningKey
) -> None:
    log, fork = _Log(log_key), _Log(log_key, history="b")
    first = log.request(0, 5)
    latest = f"/{hashlib.sha256(ORIGIN.encode()).hexdigest()}/checkpoint"
    assert _get(served, latest)[0] == 404  # nothing cosigned yet
    assert _post(served, first, str(len(first))) == 200
    for body, status in [
        (log.request(0, 7, proof=[]), 409),
        (fork.request(5, 9), 422),
        (_Log(SigningKey.generate()).request(0, 3), 403),
        (b"old 0\n\n" + log.note(3, origin="other.example/log"), 404),
        (b"old x\n\n", 400),
    ]:
        assert _post(served, body, str(len(body))) == status
    for length in ("abc", "-5", "\u00b2", str(70 * 1024)):  # not a length, or too long
        assert _post(served, first, length) == 400
    assert _get(served, f"/{hashlib.sha256(b'other').hexdigest()}/checkpoint")[0] == 404
    status, cosigned = _get(served, latest)
    assert status == 200
    assert cosigned.startswith(log.note(5))
    verifier = NoteVerifier.parse(witness.vkey)
    assert open_note(cosigned, [verifier])[1] == (verifier,)


def test_unknown_logs_and_unknown_keys_are_refused(witness: Witness, log_key: SigningKey) -> None:
    other = _Log(log_key)
    request = b"old 0\n\n" + other.note(3, origin="other.example/log")
    assert witness.add_checkpoint(request).status == 404
    impostor = _Log(SigningKey.generate())
    assert witness.add_checkpoint(impostor.request(0, 3)).status == 403
    assert (
        witness.add_checkpoint(_Log(log_key).request(0, 3).replace(b"old 0", b"old 4")).status
        == 400
    )


def test_check_and_persist_are_atomic(witness: Witness, log_key: SigningKey) -> None:
    log = _Log(log_key)
    witness.add_checkpoint(log.request(0, 4))
    requests = [log.request(4, size) for size in range(5, 21)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(witness.add_checkpoint, requests))
    # Every request claims old size 4: exactly one extends the record, the rest are behind.
    assert sorted(statuses, key=lambda r: r.status)[0].status == 200
    assert [r.status for r in statuses].count(200) == 1
    assert {r.status for r in statuses} == {200, 409}


# --- over HTTP, with the real CLI on both sides ---


@pytest.fixture
def witness_server(log: Log, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`vtreg witness serve` in a child process: its URL and vkey."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    args = ["witness", "serve", "--key", log.keys / "witness.key", "--name", W_NAME]
    args += ["--log", log.vkey, "--state", tmp_path / "w-state", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "vtreg", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().split()
        assert first[0] == "witness", process.stderr.read() if process.stderr else ""
        yield first[-1], first[1]
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "witness stopped" in out


def _policy_file(log: Log, witness_vkey: str, url: str, quorum: str = "w1") -> Path:
    path = log.home.parent / "policy"
    path.write_text(f"log {log.vkey}\nwitness w1 {witness_vkey} {url}\nquorum {quorum}\n")
    return path


def test_a_checkpoint_cosigned_by_a_served_witness_meets_the_quorum(
    log: Log, witness_server: tuple[str, str]
) -> None:
    url, vkey = witness_server
    policy = _policy_file(log, vkey, url)
    log.record(4)
    first = ok(log.checkpoint("--policy", policy, "--json")).json()
    assert first["witnesses"] == ["w1"]
    log.record(3)
    second = ok(
        log.checkpoint("--policy", policy, "--json")
    ).json()  # the witness's 409, then a proof
    assert second["witnesses"] == ["w1"]
    saved = log.home.parent / "cosigned"
    saved.write_text(second["checkpoint"])
    accepted = ok(log.cli("audit", "verify", "--checkpoint", saved, "--policy", policy, "--json"))
    assert accepted.json()["witnesses"] == ["w1"]
    bare = log.home.parent / "bare"
    bare.write_text(ok(log.checkpoint()).stdout)  # signed by the log alone
    refused = log.cli("audit", "verify", "--checkpoint", bare, "--policy", policy, "--json")
    assert refused.code == 1
    assert refused.json()["error"]["code"] == "quorum"


class _LyingWitness(http.server.BaseHTTPRequestHandler):
    reply = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.reply)))
        self.end_headers()
        self.wfile.write(self.reply)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.mark.parametrize("lie", ["stale", "forged"])
def test_a_stale_or_forged_cosignature_is_dropped(log: Log, lie: str) -> None:
    witness_key = read_private_key_file(log.keys / "witness.key", None)
    vkey = NoteVerifier(W_NAME, COSIGNATURE, witness_key.public_key).vkey
    log.record(2)
    old_text = parse_note(ok(log.checkpoint()).stdout.encode()).text
    stale = cosign(old_text, witness_key, W_NAME, timestamp=1_700_000_000)
    line = stale.line()
    if lie == "forged":
        forger = SigningKey.generate()
        line = cosign(old_text, forger, W_NAME, timestamp=1_700_000_000).line()
        line = line.replace(line.split()[2][:8], stale.line().split()[2][:8])  # the real key id
    _LyingWitness.reply = line.encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LyingWitness)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        log.record(1)
        policy = _policy_file(log, vkey, f"http://127.0.0.1:{server.server_address[1]}")
        refused = log.checkpoint("--policy", policy, "--json")
    finally:
        server.shutdown()
        server.server_close()
    assert refused.code == 1
    assert refused.json()["quorum"] is False
    assert "no valid cosignature" in refused.stderr
    assert W_NAME not in refused.json()["checkpoint"]


def test_submit_refuses_other_schemes() -> None:
    with pytest.raises(VtregError, match="http:// or https://"):
        submit("file:///etc/passwd", b"", lambda old: [])


def test_a_policy_names_logs_witnesses_groups_and_a_quorum(
    key: SigningKey, other_key: SigningKey
) -> None:
    log = NoteVerifier(ORIGIN, ED25519, SigningKey.generate().public_key)
    w1 = NoteVerifier("w1.example", COSIGNATURE, key.public_key)
    w2 = NoteVerifier("w2.example", COSIGNATURE, other_key.public_key)
    text = (
        f"# two witnesses, both needed\nlog {log.vkey}\n\twitness A {w1.vkey} https://w1.example\n"
        f"witness B {w2.vkey}\ngroup both all A B\ngroup either any A B\nquorum both\n"
    )
    policy = Policy.parse(text)
    assert (policy.quorum, policy.urls) == ("both", {"A": "https://w1.example"})

    for bad in (
        text.replace("quorum both\n", ""),
        text + "quorum either\n",
        text.replace("group both all A B", "group both 3 A B"),
        text.replace("group both all A B", "group both all A C"),
        text.replace(f"witness B {w2.vkey}", f"witness B {w1.vkey}"),
        text.replace(f"log {log.vkey}", f"log {w1.vkey}"),
        text + "frobnicate\n",
    ):
        with pytest.raises(FormatError):
            Policy.parse(bad)
