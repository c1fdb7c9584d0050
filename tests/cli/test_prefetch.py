"""The early capture that `vtreg verify DIR` starts before importing the CLI."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vtreg.registry.cli import _prefetch
from vtreg.verifier.envelope import PAYLOAD_TYPE, encode_envelope, pae
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["verify", "{d}", "--key", "k.pub"], "{d}", id="plain"),
        pytest.param(
            ["--json", "verify", "--key", "{d}", "{d}"], "{d}", id="value-options-skipped"
        ),
        pytest.param(["verify", "--threshold", "2", "--", "{d}"], "{d}", id="after-double-dash"),
        pytest.param(["sign", "{d}", "--key", "k"], None, id="other-command"),
        pytest.param(["verify", "{d}/missing"], None, id="not-a-directory"),
        pytest.param([], None, id="no-arguments"),
    ],
)
def test_prefetch_guesses_the_directory(
    tmp_path: Path, args: list[str], expected: str | None
) -> None:
    filled = [a.format(d=tmp_path) for a in args]
    pending = _prefetch(filled)
    try:
        if expected is None:
            assert pending is None
        else:
            assert pending is not None
            assert pending.root == expected.format(d=tmp_path)
    finally:
        if pending is not None:
            pending.cancel()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def _sign_claiming(plugin: Path, key: SigningKey, lengths: dict[str, int]) -> None:
    """Sign ``plugin`` with ``key``, its statement recording other ``lengths``."""
    envelope = json.loads(sign(capture(plugin), key, at=datetime.now(UTC)).envelope)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["lengths"].update(lengths)
    payload = json.dumps(statement).encode()
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    (plugin / "plugin.sig").write_bytes(
        encode_envelope(PAYLOAD_TYPE, payload, [(key.keyid, signature)])
    )


@contextlib.contextmanager
def _verifying_a_huge_plugin(
    plugin: Path, key: SigningKey, key_file: Path
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A real `vtreg verify` of ``plugin`` plus a sparse 64 GiB file, and its hashing child.

    plugin.sig is signed by the trusted key and records the file's 64 GiB (with a
    digest it does not have), so the capture must read it all before it can say
    no. The file costs no disk and keeps the child reading for a long time.
    Whatever the test does, neither process outlives it.
    """
    (plugin / "big.bin").write_bytes(b"x")
    _sign_claiming(plugin, key, {"big.bin": 64 << 30})
    with (plugin / "big.bin").open("wb") as big:
        big.truncate(64 << 30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtreg", "verify", str(plugin), "--key", str(key_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not (children := _children(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert children, "vtreg verify started no hashing child"
        yield proc, children[0]
    finally:
        proc.kill()
        proc.communicate(timeout=30)
        for child in children:
            if _alive(child):  # only a failed test gets here with a child still running
                os.kill(child, signal.SIGKILL)


@pytest.fixture
def key_file(tmp_path: Path, key: SigningKey) -> Path:
    path = tmp_path / "key.pub"
    path.write_bytes(key.public_key.to_pem())
    return path


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_the_hashing_child_ends_with_a_killed_verify(
    plugin_factory: Callable[..., Path], key: SigningKey, key_file: Path
) -> None:
    # kill -9 (or a supervisor's SIGTERM) of `vtreg verify` must not leave its
    # forked hashing child reading the whole directory with nobody to report to.
    with _verifying_a_huge_plugin(plugin_factory(), key, key_file) as (proc, child):
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the hashing child outlived vtreg verify"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_an_interrupted_verify_is_one_line_and_exit_3(
    plugin_factory: Callable[..., Path], key: SigningKey, key_file: Path
) -> None:
    with _verifying_a_huge_plugin(plugin_factory(), key, key_file) as (proc, _):
        time.sleep(1)  # most likely past the imports: the CLI waits for the capture
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 3, stderr
    assert stderr.splitlines() == ["vtreg: error: interrupted"]
