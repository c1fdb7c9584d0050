"""The early capture that `vtreg verify DIR` starts before importing the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vtreg.registry.cli import _prefetch
from vtreg.verifier.keys import SigningKey


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


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_the_hashing_child_ends_with_a_killed_verify(
    plugin_factory: Callable[..., Path], tmp_path: Path
) -> None:
    # kill -9 (or a supervisor's SIGTERM) of `vtreg verify` must not leave its
    # forked hashing child reading the whole directory with nobody to report to.
    plugin = plugin_factory()
    with (plugin / "big.bin").open("wb") as big:
        big.truncate(64 << 30)  # sparse: costs no disk, takes the child a long time to read
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtreg", "verify", str(plugin), "--key", str(tmp_path / "x.pub")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not (children := _children(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert children, "vtreg verify started no hashing child"
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(children[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(children[0]), "the hashing child outlived vtreg verify"
    finally:
        proc.kill()
        for child in children:
            if _alive(child):  # only a failed test gets here with a child still running
                os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_an_interrupted_verify_is_one_line_and_exit_3(
    plugin_factory: Callable[..., Path], tmp_path: Path, key: SigningKey
) -> None:
    plugin = plugin_factory()
    (tmp_path / "x.pub").write_bytes(key.public_key.to_pem())
    with (plugin / "big.bin").open("wb") as big:
        big.truncate(64 << 30)  # sparse: keeps the hashing child busy while we interrupt
    proc = subprocess.Popen(
        [sys.executable, "-m", "vtreg", "verify", str(plugin), "--key", str(tmp_path / "x.pub")],
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
        time.sleep(1)  # most likely past the imports: the CLI waits for the capture
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        for child in children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)
    assert proc.returncode == 3, stderr
    assert stderr.splitlines() == ["vtreg: error: interrupted"]
