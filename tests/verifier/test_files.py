"""All-or-nothing writes and bounded reads, including a real kill -9 mid-write."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import error_without_blocking
from vtreg.verifier.errors import FormatError, NotFoundError, WriteError
from vtreg.verifier.files import atomic_write, create_files_exclusive, read_bounded


def test_atomic_write_replaces_and_sets_mode(tmp_path: Path) -> None:
    target = tmp_path / "plugin.sig"
    target.write_text("old")
    old_umask = os.umask(0o077)
    try:
        atomic_write(target, b"new", 0o644)
    finally:
        os.umask(old_umask)

    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["plugin.sig"]


def test_atomic_write_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="cannot write"):
        atomic_write(tmp_path / "nope" / "plugin.sig", b"x")


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "plugin.sig"
    target.write_text("old")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new" * 1000)

    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["plugin.sig"]


def test_create_files_exclusive_writes_both_with_modes(tmp_path: Path) -> None:
    create_files_exclusive(
        [(tmp_path / "a.key", b"secret", 0o600), (tmp_path / "a.pub", b"pub", 0o644)]
    )

    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a.pub").stat().st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["a.key", "a.pub"]


def test_create_files_exclusive_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "a.pub").write_text("keep me")

    with pytest.raises(WriteError, match=r"refusing to overwrite .*a\.pub"):
        create_files_exclusive(
            [(tmp_path / "a.key", b"s", 0o600), (tmp_path / "a.pub", b"p", 0o644)]
        )

    assert sorted(os.listdir(tmp_path)) == ["a.pub"]
    assert (tmp_path / "a.pub").read_text() == "keep me"


def test_create_files_exclusive_removes_what_it_made_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link
    links: list[str] = []

    def second_link_fails(*args: Any, **kwargs: Any) -> None:
        links.append(args[1])
        if len(links) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_link(*args, **kwargs)

    monkeypatch.setattr(os, "link", second_link_fails)
    with pytest.raises(WriteError, match="No space left on device"):
        create_files_exclusive(
            [(tmp_path / "a.pub", b"p", 0o644), (tmp_path / "a.key", b"s", 0o600)]
        )
    assert links == ["a.pub", "a.key"]
    assert os.listdir(tmp_path) == []  # the linked a.pub and the staging directory are gone


def test_create_files_exclusive_loses_a_race_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process creates a.pub after our existence check: we must not clobber it.
    real_link = os.link

    def racing_link(*args: Any, **kwargs: Any) -> None:
        if args[1] == "a.pub":
            (tmp_path / "a.pub").write_text("theirs")
        real_link(*args, **kwargs)

    monkeypatch.setattr(os, "link", racing_link)
    with pytest.raises(WriteError, match=r"refusing to overwrite .*a\.pub"):
        create_files_exclusive(
            [(tmp_path / "a.key", b"s", 0o600), (tmp_path / "a.pub", b"p", 0o644)]
        )

    assert (tmp_path / "a.pub").read_text() == "theirs"
    assert os.listdir(tmp_path) == ["a.pub"]


def test_files_of_different_directories_are_not_one_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one directory"):
        create_files_exclusive(
            [(tmp_path / "a.key", b"s", 0o600), (tmp_path / "sub" / "a.pub", b"p", 0o644)]
        )


_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from vtreg.verifier.files import atomic_write, create_files_exclusive

    real_write = os.write

    def write_then_stall(fd, data):
        n = real_write(fd, data[: 1 << 20])  # part of the file is on disk ...
        print("writing", flush=True)
        time.sleep(60)  # ... when the parent kills us
        return n

    os.write = write_then_stall
    target = sys.argv[2]
    data = b"N" * (8 << 20)
    if sys.argv[1] == "replace":
        atomic_write(target, data)
    else:
        create_files_exclusive([(target, data, 0o600)])
    """
)


@pytest.mark.parametrize("mode", ["replace", "exclusive"])
def test_kill_9_during_a_large_write_leaves_no_partial_file(tmp_path: Path, mode: str) -> None:
    target = tmp_path / ("plugin.sig" if mode == "replace" else "k.key")
    if mode == "replace":
        target.write_bytes(b"old signature")
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, mode, str(target)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    assert proc.returncode == -signal.SIGKILL
    if mode == "replace":
        assert target.read_bytes() == b"old signature"
        assert os.listdir(tmp_path) == ["plugin.sig"]
    else:
        assert not target.exists()
        # The next call sees nothing made, and clears the staging directory left behind.
        create_files_exclusive([(target, b"k", 0o600)])
        assert os.listdir(tmp_path) == ["k.key"]


def test_read_bounded(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, 100, "f") == b"x" * 100
    with pytest.raises(FormatError, match="larger than the 99-byte limit"):
        read_bounded(path, 99, "f")
    with pytest.raises(NotFoundError, match="does not exist"):
        read_bounded(tmp_path / "missing", 10, "missing")


def test_read_bounded_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    error = error_without_blocking(lambda: read_bounded(fifo, 10, "fifo"), timeout=10)

    assert isinstance(error, NotFoundError)
    assert "is not a regular file" in str(error)


_RENAMER = textwrap.dedent(
    """
    import os, sys, time
    from vtreg.verifier.files import atomic_write

    real_replace = os.replace

    def stall(*args, **kwargs):
        print("renaming", flush=True)  # the new file is complete and has its temporary name
        time.sleep(60)

    os.replace = stall
    atomic_write(sys.argv[1], b"new signature")
    """
)


def test_kill_9_just_before_the_rename_leaves_the_plugin_directory_clean(tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "hello"
    plugin.mkdir(parents=True)
    target = plugin / "plugin.sig"
    target.write_bytes(b"old signature")
    with subprocess.Popen(
        [sys.executable, "-c", _RENAMER, str(target)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "renaming"
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    assert os.listdir(plugin) == ["plugin.sig"]  # nothing that would change the signed content
    assert target.read_bytes() == b"old signature"
    [stray] = os.listdir(plugin.parent)[:0] or [
        n for n in os.listdir(plugin.parent) if n != "hello"
    ]
    assert stray.startswith(".plugin.sig.")  # the leftover waits outside the plugin directory
