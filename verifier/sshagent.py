"""Sign with a key held by ``ssh-agent``, over the agent protocol on ``$SSH_AUTH_SOCK``.

Two requests of draft-miller-ssh-agent are enough: list the identities
(``SSH2_AGENTC_REQUEST_IDENTITIES``) and sign (``SSH2_AGENTC_SIGN_REQUEST``).
For an ed25519 key the agent returns a plain ed25519 signature over the
bytes it was given, so a signature made this way is like any other and
verifiers need nothing new. The key never leaves the agent.
"""

from __future__ import annotations

import os
import socket
import struct

from .errors import KeyFileError
from .keyrefs import DelegatedKey
from .keys import PublicKey
from .ssh import ED25519, blob_type, fingerprint, parse_blob, public_blob, read_string, ssh_string
from .text import printable

__all__ = ["AUTH_SOCK_ENV", "agent_key"]

AUTH_SOCK_ENV = "SSH_AUTH_SOCK"
_FAILURE = 5
_REQUEST_IDENTITIES = 11
_IDENTITIES_ANSWER = 12
_SIGN_REQUEST = 13
_SIGN_RESPONSE = 14
_MAX_REPLY = 256 * 1024
_TIMEOUT = 30.0  # an agent may ask its user to confirm each use (ssh-add -c)


def agent_key(selector: str | PublicKey) -> DelegatedKey:
    """The agent's key named by a ``SHA256:`` fingerprint or by its public key.

    Raises:
        KeyFileError: no agent, no such key in it, or a key that is not ed25519.
    """
    path = os.environ.get(AUTH_SOCK_ENV)
    if not path:
        raise KeyFileError(f"no ssh-agent to ask: {AUTH_SOCK_ENV} is not set")
    identities = _identities(path)
    if isinstance(selector, PublicKey):
        wanted = public_blob(selector)
        found = [blob for blob in identities if blob == wanted]
        named = f"key {fingerprint(wanted)}"
    else:
        found = [blob for blob in identities if fingerprint(blob) == selector]
        named = f"key {printable(selector)}"
    if not found:
        raise KeyFileError(f"ssh-agent holds no {named} ({len(identities)} keys in it)")
    blob = found[0]
    if blob_type(blob) != ED25519:
        raise KeyFileError(
            f"ssh-agent {named} is {printable(blob_type(blob))}; vtreg signs with {ED25519} keys"
        )
    public = parse_blob(blob, f"ssh-agent {named}")
    return DelegatedKey(public, lambda message: _sign(path, blob, message), f"ssh-agent {named}")


def _identities(path: str) -> list[bytes]:
    kind, body = _request(path, bytes([_REQUEST_IDENTITIES]))
    if kind != _IDENTITIES_ANSWER or len(body) < 4:
        raise KeyFileError("ssh-agent did not list its keys")
    (count,) = struct.unpack_from(">I", body, 0)
    blobs, offset = [], 4
    for _ in range(min(count, 1024)):
        blob, offset = read_string(body, offset, "ssh-agent's key list")
        _comment, offset = read_string(body, offset, "ssh-agent's key list")
        blobs.append(blob)
    return blobs


def _sign(path: str, blob: bytes, message: bytes) -> bytes:
    request = bytes([_SIGN_REQUEST]) + ssh_string(blob) + ssh_string(message) + bytes(4)
    kind, body = _request(path, request)
    if kind == _FAILURE:
        raise KeyFileError(f"ssh-agent refused to sign with key {fingerprint(blob)}")
    if kind != _SIGN_RESPONSE:
        raise KeyFileError(f"ssh-agent answered a sign request with message type {kind}")
    what = "ssh-agent's signature"
    signature, _ = read_string(body, 0, what)
    algorithm, offset = read_string(signature, 0, what)
    raw, _ = read_string(signature, offset, what)
    if algorithm != ED25519.encode() or len(raw) != 64:
        raise KeyFileError(f"{what} is not an {ED25519} signature")
    return raw


def _request(path: str, message: bytes) -> tuple[int, bytes]:
    """Send one message to the agent and read its one reply: (type, body)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(_TIMEOUT)
            sock.connect(path)
            sock.sendall(ssh_string(message))
            (length,) = struct.unpack(">I", _read_exactly(sock, 4))
            if not 1 <= length <= _MAX_REPLY:
                raise KeyFileError(f"ssh-agent sent a reply of {length:,} bytes")
            reply = _read_exactly(sock, length)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise KeyFileError(f"cannot reach ssh-agent at {printable(path)}: {reason}") from e
    return reply[0], reply[1:]


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise KeyFileError("ssh-agent closed the connection mid-reply")
        data += chunk
    return bytes(data)
