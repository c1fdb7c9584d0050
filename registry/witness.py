"""A C2SP tlog-witness: ``POST /add-checkpoint`` answered with a cosignature/v1 line.

The witness keeps, per log origin, the latest checkpoint it cosigned (a file
in its state directory, replaced atomically). It cosigns a new checkpoint
only if the log's key signed it and a consistency proof from its own record
verifies; checking and persisting happen under one lock (threads and
processes), so two requests can never both extend the same record. Status
codes are the protocol's: 400 malformed, 403 not signed by the log, 404
unknown log, 409 (with the witness's size, ``text/x.tlog.size``) when the
client's old size is not the witness's, 422 a proof that does not verify.

:func:`submit` is the other side: a log asking a witness for a cosignature.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.server
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vtreg.verifier.errors import LogError, NotFoundError, VerificationError, VtregError
from vtreg.verifier.files import atomic_write, read_bounded
from vtreg.verifier.keyrefs import Signer
from vtreg.verifier.merkle import EMPTY_ROOT, verify_consistency
from vtreg.verifier.note import (
    COSIGNATURE,
    MAX_NOTE_BYTES,
    Checkpoint,
    NoteSignature,
    NoteVerifier,
    cosign,
    decode_base64,
    open_note,
    parse_note,
)

__all__ = ["Reply", "Witness", "serve", "submit"]

_MAX_BODY = MAX_NOTE_BYTES + 64 * 64  # a note and 63 proof lines
_SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, content type, body."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


class Witness:
    """The witness's decisions over its state directory (no HTTP here)."""

    def __init__(
        self,
        key: Signer,
        name: str,
        logs: Sequence[NoteVerifier],
        state_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key, self.name, self.state_dir, self._clock = key, name, state_dir, clock
        self.vkey = NoteVerifier(name, COSIGNATURE, key.public_key).vkey
        self._logs: dict[str, list[NoteVerifier]] = {}
        for log in logs:
            self._logs.setdefault(log.name, []).append(log)
        self._lock = threading.Lock()

    def _record(self, origin: str) -> Path:
        return self.state_dir / (hashlib.sha256(origin.encode()).hexdigest() + ".json")

    def latest(self, origin: str) -> tuple[int, bytes, bytes | None]:
        """The size, root and cosigned note of the latest checkpoint cosigned for ``origin``."""
        try:
            data = read_bounded(self._record(origin), 2 * MAX_NOTE_BYTES, "witness record")
        except NotFoundError:
            return 0, EMPTY_ROOT, None
        record = json.loads(data)
        return record["size"], bytes.fromhex(record["root"]), record["note"].encode()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fd = os.open(self.state_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def add_checkpoint(self, body: bytes) -> Reply:
        """Answer one add-checkpoint request body."""
        try:
            old, proof, note_bytes = _parse_request(body)
            note = parse_note(note_bytes)
            checkpoint = Checkpoint.parse(note.text)
        except (VtregError, ValueError) as e:
            return Reply(400, f"{e}\n".encode())
        logs = self._logs.get(checkpoint.origin)
        if logs is None:
            return Reply(404, b"unknown log\n")
        try:
            open_note(note_bytes, logs)
        except VerificationError:
            return Reply(403, b"not signed by the log\n")
        if old > checkpoint.size:
            return Reply(400, b"the old size is larger than the checkpoint's\n")
        with self._locked():
            size, root, _ = self.latest(checkpoint.origin)
            if old != size:
                return Reply(409, f"{size}\n".encode(), _SIZE_TYPE)
            if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
                return Reply(422, b"an empty tree has the empty root\n")
            try:
                verify_consistency(size, checkpoint.size, root, checkpoint.root, proof)
            except LogError as e:
                return Reply(422, f"{e}\n".encode())
            line = cosign(note.text, self.key, self.name, timestamp=int(self._clock()))
            cosigned = note.with_signatures([line]).to_bytes().decode()
            record = {"size": checkpoint.size, "root": checkpoint.root.hex(), "note": cosigned}
            atomic_write(self._record(checkpoint.origin), json.dumps(record).encode(), 0o600)
        return Reply(200, line.line().encode())

    def checkpoint_of(self, origin_hash: str) -> Reply:
        """``GET /<origin hash>/checkpoint``: the latest cosigned checkpoint of that log."""
        for origin in self._logs:
            if hashlib.sha256(origin.encode()).hexdigest() == origin_hash:
                note = self.latest(origin)[2]
                if note is not None:
                    return Reply(200, note)
        return Reply(404, b"no checkpoint cosigned for that log\n")


def _parse_request(body: bytes) -> tuple[int, tuple[bytes, ...], bytes]:
    head, blank, note = body.partition(b"\n\n")
    lines = head.decode("ascii").split("\n")
    first = lines[0]
    if not blank or not first.startswith("old ") or not first[4:].isdigit():
        raise ValueError("a request is 'old <size>', proof lines, a blank line and a checkpoint")
    if first[4:] != str(int(first[4:])) or len(lines) > 64:
        raise ValueError("a malformed old size, or more than 63 proof lines")
    return int(first[4:]), tuple(decode_base64(h, "a proof line") for h in lines[1:]), note


def serve(witness: Witness, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """An HTTP server (not yet serving) answering the tlog-witness API at ``host:port``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the protocol advises
        # Headers and body go out in two writes: with Nagle's algorithm the body waits
        # for the client's delayed ACK of the headers (40 ms a request on Linux).
        disable_nagle_algorithm = True

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def do_POST(self) -> None:
            given = self.headers.get("Content-Length") or ""
            length = int(given) if given.isascii() and given.isdigit() else -1
            if self.path != "/add-checkpoint":
                self._send(Reply(404, b"not found\n"))
            elif not 0 <= length <= _MAX_BODY:
                self.close_connection = True
                self._send(Reply(400, b"a request needs a Content-Length up to 68 KiB\n"))
            else:
                self._send(witness.add_checkpoint(self.rfile.read(length)))

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) == 2 and parts[1] == "checkpoint":
                self._send(witness.checkpoint_of(parts[0]))
            else:
                self._send(Reply(404, b"not found\n"))

        def log_message(self, format: str, *args: object) -> None:
            return  # a request is answered, not logged to the terminal

    return http.server.ThreadingHTTPServer((host, port), Handler)


def submit(
    url: str, note: bytes, proof_from: Callable[[int], Sequence[bytes]], *, timeout: float = 10
) -> list[NoteSignature]:
    """Ask the witness at ``url`` to cosign ``note``; its signature lines (unverified).

    Starts from old size 0; a 409 names the witness's size, and the request is
    sent once more with the consistency proof ``proof_from(size)``.

    Raises:
        VtregError: the witness is unreachable or refuses, with its status.
    """
    if not url.startswith(("http://", "https://")):
        raise VtregError(f"a witness URL is http:// or https://, not {url!r}")
    old = 0
    for _ in range(2):
        proof = proof_from(old) if old else ()
        lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
        body = ("\n".join(lines) + "\n\n").encode() + note
        endpoint = url.rstrip("/") + "/add-checkpoint"
        request = urllib.request.Request(endpoint, body, method="POST")  # noqa: S310 - http(s) only
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
                text = response.read(_MAX_BODY).decode("utf-8")
        except urllib.error.HTTPError as e:
            answer = e.read(64).decode("ascii", "replace").strip()
            if e.code == 409 and answer.isdigit() and old == 0:
                old = int(answer)
                continue
            raise VtregError(f"witness {url} refused the checkpoint: {e.code} {answer[:60]}") from e
        except (OSError, UnicodeDecodeError) as e:
            raise VtregError(f"witness {url} did not answer: {e}") from e
        # As the protocol suggests: the reply's lines read as more signatures of the note.
        ours = parse_note(note).signatures
        return [s for s in parse_note(note + text.encode()).signatures if s not in ours]
    raise VtregError(f"witness {url} keeps changing its size")
