"""Fleet, log and witness keys are key references, like `vtreg sign`'s: files, ssh-agent, tokens.

A real ssh-agent and a real SoftHSM2 token hold the keys; the commands name
them as ``ssh-agent:...`` and ``pkcs11:`` URIs, and the repository, the
checkpoints and the cosignatures they sign verify as any other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import example_hello, invoke_cli, ok, one_line_error
from tests.keytools import (
    USER_PIN,
    Token,
    softhsm_token,
    ssh_add,
    ssh_agent,
    ssh_fingerprint,
    ssh_keygen,
)

ORIGIN = "example.com/vtreg-audit"


@dataclass
class Keys:
    env: dict[str, str]
    root_file: Path  # an OpenSSH private key file
    root_agent: str  # ssh-agent:PUBFILE
    log_agent: str  # ssh-agent:SHA256:FINGERPRINT
    online: str  # pkcs11: URI
    witness: str  # pkcs11: URI
    ecdsa: str  # pkcs11: URI of a P-256 key: not a fleet or note key


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    made = softhsm_token(tmp_path_factory.mktemp("softhsm"))
    made.keypair("online", "EC:edwards25519", "01")
    made.keypair("witness", "EC:edwards25519", "02")
    made.keypair("p256", "EC:prime256v1", "03")
    return made


@pytest.fixture
def keys(tmp_path: Path, token: Token) -> Iterator[Keys]:
    ssh = tmp_path / "ssh"
    ssh.mkdir()
    with ssh_agent(tmp_path) as sock:
        root_file = ssh_keygen(ssh, "root1")
        root2 = ssh_keygen(ssh, "root2")
        log = ssh_keygen(ssh, "log")
        ssh_add(sock, root2)
        ssh_add(sock, log)
        root2.unlink()  # only the agent holds these two now
        log.unlink()
        env = {
            **token.env,
            "SSH_AUTH_SOCK": sock,
            "VTREG_PKCS11_MODULE": token.module,
            "VTREG_PKCS11_PIN": USER_PIN,
            "VTREG_HOME": str(tmp_path / "home"),
        }
        yield Keys(
            env,
            root_file,
            f"ssh-agent:{ssh / 'root2.pub'}",
            f"ssh-agent:{ssh_fingerprint(ssh / 'log.pub')}",
            "pkcs11:token=vtreg;object=online",
            "pkcs11:token=vtreg;object=witness",
            "pkcs11:token=vtreg;object=p256",
        )


def test_a_fleet_signed_by_agent_and_token_keys_syncs_and_witnesses_the_log(
    keys: Keys, tmp_path: Path
) -> None:
    env = keys.env
    ok(invoke_cli("keygen", "alice", "--out", tmp_path, "--unencrypted"))
    plugin = example_hello(tmp_path / "plugins")
    ok(invoke_cli("sign", plugin, "--key", tmp_path / "alice.key"))
    ok(invoke_cli("key", "add", tmp_path / "alice.pub", env=env))
    ok(invoke_cli("trust", plugin, env=env))
    init = ("audit", "init", "--key", keys.log_agent, "--origin", ORIGIN, "--new-log")
    vkey = ok(invoke_cli(*init, env=env)).stdout.strip()
    ok(invoke_cli("audit", "checkpoint", "--key", keys.log_agent, env=env))
    repo = tmp_path / "repo"
    ok(
        invoke_cli(
            "fleet", "init", repo, "--root-key", keys.root_file, "--root-key", keys.root_agent,
            "--root-threshold", "2", "--online-key", keys.online, env=env,
        )
    )  # fmt: skip
    ok(invoke_cli("fleet", "publish", repo, env=env))  # the token signs, at every publish
    state = tmp_path / "host.state"
    host = {"VTREG_HOME": str(tmp_path / "host")}
    synced = ok(
        invoke_cli(
            "fleet", "sync", repo, "--state", state, "--root", repo / "1.root.json",
            "--log", vkey, "--json", env=host,
        )
    ).json()  # fmt: skip
    assert synced["checkpoint"] >= 3
    ok(invoke_cli("verify", plugin, "--fleet", state, env=host))
    ok(
        invoke_cli(
            "fleet", "rotate-root", repo, "--old-key", keys.root_file, "--old-key",
            keys.root_agent, "--root-key", keys.root_agent, env=env,
        )
    )  # fmt: skip
    ok(invoke_cli("fleet", "refresh", repo, env=env))
    again = ok(invoke_cli("fleet", "sync", repo, "--state", state, "--json", env=host)).json()
    assert again["roles"]["root"]["version"] == 2


def test_a_witness_key_on_a_token_cosigns_checkpoints(keys: Keys, tmp_path: Path) -> None:
    env = keys.env
    vkey = ok(
        invoke_cli("audit", "init", "--key", keys.log_agent, "--origin", ORIGIN, env=env)
    ).stdout.strip()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    args = ["witness", "serve", "--key", keys.witness, "--name", "w.example/1", "--log", vkey]
    args += ["--state", str(tmp_path / "w-state"), "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "vtreg", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**child_env, **env},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().split()
        assert first[:1] == ["witness"], process.stderr.read() if process.stderr else ""
        policy = tmp_path / "policy"
        policy.write_text(f"log {vkey}\nwitness w1 {first[1]} {first[-1]}\nquorum w1\n")
        signed = ok(
            invoke_cli(
                "audit", "checkpoint", "--key", keys.log_agent, "--policy", policy, "--json",
                env=env,
            )
        ).json()  # fmt: skip
        assert signed["witnesses"] == ["w1"]
    finally:
        process.terminate()
        process.communicate(timeout=20)


@pytest.mark.parametrize(
    ("command", "code", "pattern"),
    [
        pytest.param(("fleet", "init", "{repo}", "--root-key", "{ecdsa}", "--online-key",
                      "{online}"), 2, "signed with ed25519 keys", id="ecdsa-root-key"),
        pytest.param(("audit", "init", "--key", "{ecdsa}", "--origin", ORIGIN), 1,
                     "a note key is ed25519", id="ecdsa-log-key"),
        pytest.param(("fleet", "init", "{repo}", "--root-key", "ssh-agent:SHA256:nothere",
                      "--online-key", "{online}"), 3, "agent", id="key-not-in-the-agent"),
    ],
)  # fmt: skip
def test_keys_a_fleet_or_a_log_cannot_use_are_refused_in_one_line(
    keys: Keys, tmp_path: Path, command: tuple[str, ...], code: int, pattern: str
) -> None:
    names = {"repo": str(tmp_path / "repo"), "ecdsa": keys.ecdsa, "online": keys.online}
    result = invoke_cli(*(part.format(**names) for part in command), env=keys.env)
    one_line_error(result, code, pattern)
    assert not (tmp_path / "repo").exists()
