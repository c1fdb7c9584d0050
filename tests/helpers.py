"""Test helpers: build real C plugins with cc, lay out plugin directories, run the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    ) -> Path:
        defines = defines or {}
        args = [f"-D{k}={v}" for k, v in sorted(defines.items())] + list(flags)
        key = hashlib.sha256(source.read_bytes() + repr(args).encode()).hexdigest()[:20]
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
                ],
                check=True,
                capture_output=True,
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


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The one JSON document on stdout (fails if there is anything else)."""
        return json.loads(self.stdout)


def run_cli(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> CliResult:
    """Run the real ``vtreg`` command line in a child process."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "vtreg", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    result = CliResult(proc.returncode, proc.stdout, proc.stderr)
    if "--verbose" not in map(str, args):
        assert "Traceback" not in proc.stderr, proc.stderr
    return result
