"""What a real `vtreg verify` process reads before it refuses plugin.sig.

The console entry point starts hashing DIR in a forked child before the CLI is
imported (registry.cli._prefetch); the in-process tests (invoke_cli) never start
it. These run the installed `vtreg` and count every byte the whole process tree
read (its rchar: Linux adds a reaped child's to its parent's), with all cores
and under `taskset -c 0`, where the child cannot run beside the parent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

from .test_prefetch import _sign_claiming

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/io").exists() or not hasattr(os, "waitid"),
    reason="needs Linux /proc/PID/io and waitid",
)

VTREG = Path(sys.executable).parent / "vtreg"
BUDGET = 16 << 20
SPARSE = 64 << 30


def _rchar_of(command: list[str]) -> tuple[int, int, str]:
    """Run ``command``; its exit code, the bytes its process tree read, and its stderr.

    The process is left a zombie (WNOWAIT) while its /proc/PID/io is read: by then
    it has reaped its hashing child, whose reads the kernel added to its own.
    """
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        try:
            assert proc.stderr is not None
            stderr = proc.stderr.read().decode()
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            lines = Path(f"/proc/{proc.pid}/io").read_text().splitlines()
            io = dict(line.split(": ") for line in lines)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode, int(io["rchar"]), stderr


def _commands(plugin: Path, key_file: Path) -> list[list[str]]:
    verify = [str(VTREG), "verify", str(plugin), "--key", str(key_file)]
    pinned = [["taskset", "-c", "0", *verify]] if shutil.which("taskset") else []
    return [verify, *pinned]


@pytest.fixture
def key_file(tmp_path: Path, key: SigningKey) -> Path:
    path = tmp_path / "key.pub"
    path.write_bytes(key.public_key.to_pem())
    return path


def _sparse(path: Path) -> None:
    with path.open("wb") as f:
        f.truncate(SPARSE)


def _unknown_key_claiming_64_gib(plugin: Path, other_key: SigningKey) -> None:
    (plugin / "big.bin").write_bytes(b"x")
    _sign_claiming(plugin, other_key, {"big.bin": SPARSE})
    _sparse(plugin / "big.bin")


def _garbage_signature(plugin: Path, other_key: SigningKey) -> None:
    (plugin / "plugin.sig").write_bytes(os.urandom(4096))
    _sparse(plugin / "big.bin")


def _no_plugin(plugin: Path, other_key: SigningKey) -> None:
    for name in os.listdir(plugin):
        (plugin / name).unlink()
    (plugin / "notes.txt").write_text("not a plugin\n")
    _sparse(plugin / "disk.img")


@pytest.mark.skipif(not VTREG.exists(), reason="needs the installed vtreg console script")
@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_unknown_key_claiming_64_gib, id="unknown-key-claims-64-gib"),
        pytest.param(_garbage_signature, id="garbage-plugin-sig"),
        pytest.param(_no_plugin, id="no-plugin"),
    ],
)
def test_verify_reads_little_before_refusing(
    plugin_factory: Callable[..., Path],
    other_key: SigningKey,
    key_file: Path,
    spoil: Callable[[Path, SigningKey], None],
) -> None:
    plugin = plugin_factory()
    spoil(plugin, other_key)
    for command in _commands(plugin, key_file):
        code, read, stderr = _rchar_of(command)
        assert code == 1, stderr
        assert stderr.startswith("vtreg: refused:"), stderr
        assert read < BUDGET, f"{' '.join(command[:3])} read {read} bytes before refusing"


@pytest.mark.skipif(not VTREG.exists(), reason="needs the installed vtreg console script")
def test_the_count_includes_what_the_hashing_child_read(
    plugin_factory: Callable[..., Path], key: SigningKey, key_file: Path
) -> None:
    # The bound above means something only if the child's reads are counted: a genuine
    # plugin with a 24 MiB file is read by the child alone (the parent uses its tree).
    plugin = plugin_factory()
    (plugin / "data.bin").write_bytes(os.urandom(24 << 20))
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=datetime.now(UTC)).envelope)
    for command in _commands(plugin, key_file):
        code, read, stderr = _rchar_of(command)
        assert code == 0, stderr
        assert read >= 24 << 20
