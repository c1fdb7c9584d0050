"""Signing with a key held by a real ssh-agent: the agent signs, verifiers see plain ed25519."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok, one_line_error
from tests.keytools import ssh_add, ssh_agent, ssh_fingerprint, ssh_keygen
from vtreg.verifier.keys import SigningKey, read_public_key_file
from vtreg.verifier.ssh import fingerprint, public_blob

PluginFactory = Callable[..., Path]


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A running ssh-agent (SSH_AUTH_SOCK set for the CLI) holding one ed25519 key, ``id``."""
    keys = tmp_path / "ssh"
    keys.mkdir()
    with ssh_agent(tmp_path) as sock:
        ssh_add(sock, ssh_keygen(keys, "id"))
        monkeypatch.setenv("SSH_AUTH_SOCK", sock)
        yield sock


def test_sign_by_fingerprint_and_by_pub_file(
    plugin_factory: PluginFactory, tmp_path: Path, agent: str
) -> None:
    plugin = plugin_factory()
    pub = tmp_path / "ssh" / "id.pub"

    by_fingerprint = ok(
        invoke_cli("sign", plugin, "--key", f"ssh-agent:{ssh_fingerprint(pub)}", "--json")
    )
    verified = ok(invoke_cli("verify", plugin, "--key", pub, "--json"))
    again = ok(invoke_cli("sign", plugin, "--key", f"ssh-agent:{pub}", "--json"))

    assert by_fingerprint.json()["keyid"] == read_public_key_file(pub).keyid
    assert verified.json()["plugin"]["content_digest"] == by_fingerprint.json()["content_digest"]
    assert again.json()["changed"] is False  # already signed by the same key, found by its pub


def test_an_agent_key_co_signs_beside_a_file_key(
    plugin_factory: PluginFactory, tmp_path: Path, keys: Path, agent: str
) -> None:
    plugin = plugin_factory()
    pub = tmp_path / "ssh" / "id.pub"
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))

    cosigned = ok(invoke_cli("sign", plugin, "--key", f"ssh-agent:{pub}", "--json"))

    assert cosigned.json()["signatures"] == 2
    ok(invoke_cli("verify", plugin, "--key", pub, "--key", keys / "alice.pub", "--threshold", "2"))


def test_key_pub_of_an_agent_key(tmp_path: Path, agent: str) -> None:
    pub = tmp_path / "ssh" / "id.pub"
    result = ok(invoke_cli("key", "pub", f"ssh-agent:{ssh_fingerprint(pub)}", "--json"))
    assert result.json()["keyid"] == read_public_key_file(pub).keyid


def test_a_key_not_in_the_agent(plugin_factory: PluginFactory, tmp_path: Path, agent: str) -> None:
    plugin = plugin_factory()
    other = Path(f"{ssh_keygen(tmp_path, 'other')}.pub")

    for ref in (f"ssh-agent:{other}", f"ssh-agent:{ssh_fingerprint(other)}"):
        one_line_error(
            invoke_cli("sign", plugin, "--key", ref),
            3,
            r"ssh-agent holds no key SHA256:\S+ \(1 keys in it\)",
        )
    assert not (plugin / "plugin.sig").exists()


def test_a_key_of_the_wrong_type(plugin_factory: PluginFactory, tmp_path: Path, agent: str) -> None:
    plugin = plugin_factory()
    rsa = ssh_keygen(tmp_path, "id_rsa", "rsa")
    ssh_add(agent, rsa)

    by_fingerprint = invoke_cli(
        "sign", plugin, "--key", f"ssh-agent:{ssh_fingerprint(Path(f'{rsa}.pub'))}"
    )
    by_file = invoke_cli("sign", plugin, "--key", f"ssh-agent:{rsa}.pub")

    one_line_error(by_fingerprint, 3, "is ssh-rsa; vtreg signs with ssh-ed25519 keys")
    one_line_error(by_file, 3, "expected an ssh-ed25519 key, found ssh-rsa")
    assert not (plugin / "plugin.sig").exists()


def test_no_agent_running(
    plugin_factory: PluginFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = plugin_factory()
    pub = Path(f"{ssh_keygen(tmp_path, 'id')}.pub")
    ref = f"ssh-agent:{ssh_fingerprint(pub)}"

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    one_line_error(
        invoke_cli("sign", plugin, "--key", ref), 3, "no ssh-agent to ask: SSH_AUTH_SOCK is not set"
    )
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "gone.sock"))
    one_line_error(
        invoke_cli("sign", plugin, "--key", ref),
        3,
        "cannot reach ssh-agent at .*gone.sock: No such file",
    )
    assert not (plugin / "plugin.sig").exists()


def test_an_agent_that_stopped(plugin_factory: PluginFactory, tmp_path: Path) -> None:
    plugin = plugin_factory()
    pub = Path(f"{ssh_keygen(tmp_path, 'id')}.pub")
    with ssh_agent(tmp_path) as sock:
        pass  # started and stopped: its socket file may remain, nobody answers
    result = invoke_cli("sign", plugin, "--key", f"ssh-agent:{pub}", env={"SSH_AUTH_SOCK": sock})
    one_line_error(result, 3, "cannot reach ssh-agent at")
    assert not (plugin / "plugin.sig").exists()


def _hostile_agent(sock: Path, blob: bytes, signature: bytes) -> threading.Thread:
    """An agent that lists ``blob`` and answers every sign request with ``signature``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock))
    server.listen()

    def string(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    def serve() -> None:
        with server:
            for _ in range(2):  # one connection to list, one to sign
                conn, _ = server.accept()
                with conn:
                    (length,) = struct.unpack(">I", conn.recv(4))
                    request = b""
                    while len(request) < length:
                        request += conn.recv(length - len(request))
                    if request[0] == 11:  # list identities
                        reply = bytes([12]) + struct.pack(">I", 1) + string(blob) + string(b"id")
                    else:  # sign: someone else's signature
                        reply = bytes([14]) + string(string(b"ssh-ed25519") + string(signature))
                    conn.sendall(string(reply))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_an_agent_answering_with_another_keys_signature_is_refused(
    plugin_factory: PluginFactory, tmp_path: Path, key: SigningKey, other_key: SigningKey
) -> None:
    plugin = plugin_factory()
    sock = tmp_path / "hostile.sock"
    thread = _hostile_agent(sock, public_blob(key.public_key), other_key.sign(b"anything"))

    result = invoke_cli(
        "sign", plugin, "--key", f"ssh-agent:{fingerprint(public_blob(key.public_key))}",
        env={"SSH_AUTH_SOCK": str(sock)},
    )  # fmt: skip

    one_line_error(result, 3, "returned a signature that its key does not verify")
    assert not (plugin / "plugin.sig").exists()
    thread.join(timeout=10)
