"""A full disk: each writing command says so in one line, exits 3, and leaves nothing half-written.

A small tmpfs mounted by the test holds the registry, the log signer's state, a
fleet host's state and a plugin directory; a filler file takes every byte left.
Then ``sign``, ``trust``, ``fleet sync`` and ``audit checkpoint`` each fail
with one line on stderr and exit 3, no traceback. Once the filler is gone,
every file is as it was (no temporary left, the chain intact) and the same
commands work.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import CliResult, invoke_cli, ok, one_line_error
from vtreg.registry.service import Registry

PluginFactory = Callable[..., Path]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An empty 4 MiB tmpfs, mounted for this test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: the full-disk test is not run")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mount], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=True)


def _fill(disk: Path) -> Path:
    """A file that takes every byte left on ``disk``."""
    filler = disk / "filler"
    code = 0
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)  # tmpfs takes whole pages: nothing is left over
        except OSError as e:
            code = e.errno or 0
    assert code == errno.ENOSPC
    return filler


def _snapshot(disk: Path) -> dict[str, bytes]:
    """Every file on ``disk`` but the registry's own (read through the registry instead)."""
    return {
        str(p.relative_to(disk)): p.read_bytes()
        for p in sorted(disk.rglob("*"))
        if p.is_file() and not p.name.startswith("registry.db") and p.name != "filler"
    }


def test_a_full_disk_is_one_line_and_exit_3_and_leaves_nothing_half_written(
    disk: Path, tmp_path: Path, plugin_factory: PluginFactory, keys: Path
) -> None:
    home = disk / "home"
    home.mkdir(mode=0o700)
    env = {"VTREG_HOME": str(home)}
    db = ("--db", f"sqlite:///{disk / 'registry.db'}")
    repo, state = tmp_path / "repo", disk / "fleet-state"
    plugins = [shutil.copytree(plugin_factory(n), disk / n) for n in ("one", "two")]
    for name in ("log", "root", "online"):
        ok(invoke_cli("keygen", name, "--out", keys, "--unencrypted"))

    def cli(*args: str | Path) -> CliResult:
        return invoke_cli(*args, env=env)

    ok(cli("key", "add", keys / "alice.pub", *db))
    ok(cli("sign", plugins[0], "--key", keys / "alice.key"))
    ok(cli("sign", plugins[1], "--key", keys / "alice.key"))
    ok(cli("trust", plugins[0], *db))
    ok(
        cli(
            "audit",
            "init",
            "--key",
            keys / "log.key",
            "--origin",
            "example.com/log",
            "--new-log",
            *db,
        )
    )
    ok(cli("audit", "checkpoint", "--key", keys / "log.key", *db))
    ok(
        cli(
            "fleet",
            "init",
            repo,
            "--root-key",
            keys / "root.key",
            "--online-key",
            keys / "online.key",
        )
    )
    ok(cli("fleet", "publish", repo, *db))
    sync = ("fleet", "sync", repo, "--state", state, "--root", repo / "1.root.json")
    ok(cli(*sync))
    ok(cli("key", "add", keys / "bob.pub", *db))  # something new to checkpoint and to sync
    ok(cli("fleet", "publish", repo, *db))  # the repository is on another disk
    with Registry.open(db[1]) as registry:
        events = registry.verify_audit().events
    before = _snapshot(disk)

    filler = _fill(disk)
    writes: dict[str, tuple[str | Path, ...]] = {
        "sign": ("sign", plugins[0], "--key", keys / "bob.key"),
        "trust": ("trust", plugins[1], *db),
        "fleet sync": sync,
        "audit checkpoint": ("audit", "checkpoint", "--key", keys / "log.key", *db),
    }
    for what, args in writes.items():
        failed = cli(*args)
        assert failed.code == 3, (what, failed.stderr)
        one_line_error(failed, 3, r"^vtreg: error: .*(No space left|disk is full|disk I/O error)")
    filler.unlink()

    assert _snapshot(disk) == before  # no half-written file, no temporary left behind
    with Registry.open(db[1]) as registry:
        report = registry.verify_audit()
        assert report.ok, report.problem
        assert report.events == events
        assert [p.name for p in registry.plugins()] == ["one"]
    for args in writes.values():
        ok(cli(*args))
    with Registry.open(db[1]) as registry:
        assert sorted(p.name for p in registry.plugins()) == ["one", "two"]
        assert registry.verify_audit().ok
    both = ("--key", keys / "alice.pub", "--key", keys / "bob.pub", "--threshold", "2")
    ok(cli("verify", plugins[0], *both))
