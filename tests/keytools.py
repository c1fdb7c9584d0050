"""Keys where people keep them, made with the real tools: ssh-keygen, ssh-agent, SoftHSM2."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
USER_PIN = "1234"
SO_PIN = "5678"


def ssh_keygen(directory: Path, name: str, kind: str = "ed25519", passphrase: str = "") -> Path:
    """A key pair made by the real ssh-keygen: ``directory/name`` (0600) and ``name.pub``."""
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "alice", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def ssh_fingerprint(pubfile: Path) -> str:
    """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pubfile)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


@contextmanager
def ssh_agent(directory: Path) -> Iterator[str]:
    """A real ``ssh-agent`` on a socket in ``directory``; yields its SSH_AUTH_SOCK."""
    sock = directory / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            proc.poll()
            assert proc.returncode is None, "ssh-agent exited"
            subprocess.run(["sleep", "0.02"], check=True)
        assert sock.exists(), "ssh-agent made no socket"
        yield str(sock)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def ssh_add(sock: str, key: Path) -> None:
    """Add an unencrypted private key to the agent at ``sock``."""
    env = {**os.environ, "SSH_AUTH_SOCK": sock}
    subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True)


def softhsm_module() -> str:
    """The SoftHSM2 PKCS#11 module Debian's softhsm2 installs."""
    found = [p for p in SOFTHSM_MODULE_CANDIDATES if Path(p).exists()]
    assert found, "SoftHSM2 is not installed (apt-get install softhsm2; .ci/run does)"
    return found[0]


@dataclass(frozen=True)
class Token:
    """A SoftHSM2 token in a private directory: its config file and module."""

    conf: Path
    module: str
    label: str

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to see this token."""
        return {"SOFTHSM2_CONF": str(self.conf)}

    def keypair(self, label: str, key_type: str, key_id: str) -> None:
        """Generate a key pair on the token with OpenSC's pkcs11-tool (e.g. EC:edwards25519)."""
        self.tool("--keypairgen", "--key-type", key_type, "--label", label, "--id", key_id)

    def tool(self, *args: str) -> None:
        """Run OpenSC's pkcs11-tool, logged in to the token, with ``args``."""
        subprocess.run(
            [
                "pkcs11-tool", "--module", self.module, "--token-label", self.label,
                "--login", "--pin", USER_PIN, *args,
            ],
            env={**os.environ, **self.env},
            check=True,
            capture_output=True,
        )  # fmt: skip


def softhsm_token(directory: Path, label: str = "vtreg") -> Token:
    """A fresh SoftHSM2 token, initialised with :data:`USER_PIN`, its files in ``directory``."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    subprocess.run(
        [
            "softhsm2-util", "--init-token", "--free", "--label", label,
            "--pin", USER_PIN, "--so-pin", SO_PIN,
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Token(conf, softhsm_module(), label)


def run_at_a_terminal(
    args: list[str],
    answers: list[str],
    prompt: str = "Passphrase for",
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run vtreg with a real pseudo-terminal as its controlling terminal, typing ``answers``
    at each prompt; return its exit status and everything it showed."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    full_env.update(env or {})
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing of pytest runs here
        os.execve(sys.executable, [sys.executable, "-m", "vtreg", *args], full_env)  # noqa: S606 - our CLI, fixed argv
    shown, pending, answered = b"", list(answers), 0
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            os.kill(pid, 9)
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        while pending and answered < shown.count(prompt.encode()):
            os.write(fd, pending.pop(0).encode() + b"\n")
            answered += 1
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")
