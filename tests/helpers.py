"""Test helpers: build real C plugins with cc, lay out plugin directories, run the real CLI."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
INCLUDE_DIR = ROOT / "examples" / "include"
PLUGIN_SOURCES = ROOT / "tests" / "plugins"
EXAMPLE_HELLO = ROOT / "examples" / "hello"


class Compiler:
    """Compiles test plugins with the system C compiler, caching by source and flags."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.cc = os.environ.get("CC", "cc")

    def build(
        self,
        source: Path,
        *,
        defines: dict[str, str] | None = None,
        flags: tuple[str, ...] = (),
        cwd: Path | None = None,
    ) -> Path:
        """``source`` built as a shared object; ``flags`` go after it (libraries to link),
        relative paths in them from ``cwd``."""
        defines = defines or {}
        args = [f"-D{k}={v}" for k, v in sorted(defines.items())]
        key = hashlib.sha256(
            source.read_bytes() + repr((args, flags, str(cwd))).encode()
        ).hexdigest()[:20]
        out = self.cache_dir / f"{source.stem}-{key}.so"
        if not out.exists():
            tmp = out.with_suffix(".tmp")
            subprocess.run(
                [
                    self.cc,
                    "-shared",
                    "-fPIC",
                    "-O1",
                    "-Wall",
                    "-Werror",
                    f"-I{INCLUDE_DIR}",
                    *args,
                    "-o",
                    str(tmp),
                    str(source),
                    *flags,
                ],
                check=True,
                capture_output=True,
                cwd=cwd,
            )
            tmp.rename(out)
        return out


def c_string(text: str) -> str:
    """A -D value that the preprocessor sees as a C string literal."""
    return json.dumps(text)


def write_manifest(directory: Path, **fields: Any) -> None:
    (directory / "plugin.json").write_text(json.dumps(fields, indent=2) + "\n")


def make_plugin(
    parent: Path,
    compiler: Compiler,
    name: str = "basic",
    version: str = "1.0.0",
    *,
    source: str = "basic.c",
    dirname: str | None = None,
    manifest: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
    defines: dict[str, str] | None = None,
) -> Path:
    """A plugin directory: plugin.json + lib<name>.so compiled from tests/plugins/<source>."""
    directory = parent / (dirname or name)
    directory.mkdir(parents=True)
    library = compiler.build(
        PLUGIN_SOURCES / source,
        defines={
            "PLUGIN_NAME": c_string(name),
            "PLUGIN_VERSION": c_string(version),
            **(defines or {}),
        },
    )
    shutil.copyfile(library, directory / f"lib{name}.so")
    fields: dict[str, Any] = {"name": name, "description": "test plugin", "version": version}
    fields.update(manifest or {})
    write_manifest(directory, **fields)
    for rel, data in (extra_files or {}).items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory


def example_hello(plugins: Path) -> Path:
    """examples/hello built by its own Makefile, laid out as ``plugins/hello`` (unsigned).

    The build happens in a copy of examples/ next to ``plugins``, so the
    checkout is never written to.
    """
    examples = plugins.parent / "examples"
    shutil.copytree(
        EXAMPLE_HELLO.parent, examples, ignore=shutil.ignore_patterns("*.so", "plugin.sig")
    )
    subprocess.run(["make", "-s", "-C", str(examples / "hello")], check=True, capture_output=True)
    plugin = plugins / "hello"
    plugin.mkdir(mode=0o755, parents=True)
    for name in ("plugin.json", "libhello.so"):
        shutil.copy(examples / "hello" / name, plugin / name)
    return plugin


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The one JSON document on stdout (fails if there is anything else)."""
        return json.loads(self.stdout)


def ok(result: CliResult) -> CliResult:
    """``result``, once it is known to have succeeded."""
    assert result.code == 0, result.stderr
    return result


def one_line_error(result: CliResult, code: int, pattern: str) -> None:
    """Exit ``code`` and exactly one line on stderr, matching the regular expression ``pattern``."""
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def _checked(result: CliResult, args: tuple[str, ...]) -> CliResult:
    if "--verbose" not in args:
        assert "Traceback" not in result.stderr, result.stderr
    return result


def run_cli(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> CliResult:
    """Run the real ``vtreg`` command line in a child process.

    For what only a process shows: start-up, the console entry point (and the
    capture it starts before importing the CLI), no terminal at all. Anything
    else is faster through :func:`invoke_cli`.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    full_env.update(env or {})
    argv = tuple(map(str, args))
    proc = subprocess.run(
        [sys.executable, "-m", "vtreg", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return _checked(CliResult(proc.returncode, proc.stdout, proc.stderr), argv)


@contextlib.contextmanager
def _descriptors_captured() -> Iterator[dict[int, bytes]]:
    """What is written straight to file descriptors 1 and 2 meanwhile.

    A child process (an isolated plugin's worker) and C code (a plugin loaded
    in this process) write there, not to ``sys.stdout``/``sys.stderr``; a
    ``vtreg`` process would have shown it on its stdout or stderr.
    """
    captured: dict[int, bytes] = {}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        files = {1: out, 2: err}
        saved = {fd: os.dup(fd) for fd in files}
        try:
            for fd, file in files.items():
                os.dup2(file.fileno(), fd)
            yield captured
        finally:
            ctypes.CDLL(None).fflush(None)  # C stdio buffers, as a process would at exit
            for fd, file in files.items():
                os.dup2(saved[fd], fd)
                os.close(saved[fd])
                file.seek(0)
                captured[fd] = file.read()


@contextlib.contextmanager
def _warnings_logged_to_stderr() -> Iterator[None]:
    """Log records of WARNING and above on ``sys.stderr``, as a ``vtreg`` process shows them.

    That process configures no logging, so Python's last-resort handler prints
    such records on its stderr; here pytest's handlers would take them instead.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def invoke_cli(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> CliResult:
    """Run the ``vtreg`` command line in this process, as :func:`run_cli` runs it in a child.

    The same arguments and environment (every inherited ``VTREG_*`` variable
    unset, then ``env``), an empty stdin that is not a terminal, and stdout
    and stderr captured separately, including logged warnings and whatever
    reaches the file descriptors. The environment, the streams and the current
    directory are restored afterwards. ``main()``'s early capture is not
    started: the command captures the directory itself.
    """
    from vtreg.registry.cli import run

    argv = tuple(map(str, args))
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("VTREG_")}
    overrides.update(env or {})
    with (
        contextlib.chdir(cwd or Path.cwd()),
        _descriptors_captured() as direct,
        CliRunner().isolation(input=None, env=overrides) as (out, err, _),
        _warnings_logged_to_stderr(),
    ):
        code = run(list(argv))
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue(), err.getvalue()
    result = CliResult(
        code,
        (stdout + direct[1]).decode(),
        (stderr + direct[2]).decode(),
    )
    return _checked(result, argv)


def error_without_blocking(call: Callable[[], object], timeout: float = 20) -> BaseException | None:
    """What ``call`` raised (None if nothing), failing the test if it blocks for ``timeout`` s."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=timeout)
    assert not worker.is_alive(), f"{getattr(call, '__name__', 'the call')} blocked"
    return errors[0] if errors else None


@contextlib.contextmanager
def bytes_read() -> Iterator[list[int]]:
    """How many bytes this process read through read(2) and friends inside the block
    (Linux ``/proc/self/io`` ``rchar``, which also counts children it reaped)."""

    def rchar() -> int:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar in /proc/self/io")

    counted = [0]
    before = rchar()
    yield counted
    counted[0] = rchar() - before


def foreign_library(platform: str) -> bytes:
    """A file whose header says it is a shared library for ``platform`` (a Mach-O, PE or
    other-CPU ELF image: signed and hashed on this host, never loaded)."""
    import struct

    body = bytes(256)
    if platform.startswith("macos-"):
        cpu = {"macos-arm64": 0x0100000C, "macos-x86_64": 0x01000007}[platform]
        return b"\xcf\xfa\xed\xfe" + struct.pack("<I", cpu) + body
    if platform.startswith("windows-"):
        machine = {"windows-x86_64": 0x8664, "windows-aarch64": 0xAA64}[platform]
        header = b"MZ" + bytes(0x3A) + struct.pack("<I", 0x40)
        return header + b"PE\0\0" + struct.pack("<H", machine) + body
    machine = {"linux-aarch64": 183, "linux-riscv64": 243}[platform]
    return b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack("<HH", 3, machine) + body
