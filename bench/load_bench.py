"""Benchmark the verified load against a bare ``ctypes.CDLL``, in one run.

    python bench/load_bench.py [--runs 51] [--size-mib 256]

In-process, warm (page cache and an open SQLite registry), medians:

* bare ``ctypes.CDLL`` of the example library vs ``PluginLoader.load_plugin``
  of the example plugin (registry policy: signature, trust, revocation,
  rollback, and the audit record);
* the same for a plugin whose library is --size-mib large, next to hashing
  those bytes once (hashlib.sha256) plus a bare ``ctypes.CDLL``;
* one ``execute`` call in-process vs isolated (child already running).

Every first load is of a distinct content (the same library beside a file of its
own, signed and trusted each), as a second load of loaded content shares the
loaded instance; that second load is measured apart ("already loaded").
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import build_example, pinned, scratch_dir
from vtreg.loader import NativePlugin, PluginContext, PluginLoader
from vtreg.registry.service import Registry
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _copies(library: Path, where: Path, count: int) -> list[Path]:
    where.mkdir()
    paths = []
    for i in range(count):
        path = where / f"lib{i}.so"
        shutil.copy(library, path)
        paths.append(path)
    return paths


def _distinct_plugins(
    source: Path, where: Path, count: int, key: SigningKey, registry: Registry
) -> list[Path]:
    """Signed, trusted (and pinned) plugin directories, each a version and content of its
    own: the example library built as 1.1.N."""
    where.mkdir(mode=0o755)
    now = datetime.now(UTC)
    code = (source / "hello.c").read_text()
    manifest = json.loads((source / "plugin.json").read_text())
    dirs = []
    for i in range(count):
        plugin = where / f"hello{i}"
        plugin.mkdir(mode=0o755)
        version = f"1.1.{i}"  # beside the big plugin's 1.0.0
        (plugin / "hello.c").write_text(code.replace('"1.0.0"', f'"{version}"'))
        subprocess.run(
            ["cc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
             f"-I{source.parent / 'include'}", "-o", str(plugin / "libhello.so"),
             str(plugin / "hello.c")],
            check=True,
        )  # fmt: skip
        (plugin / "hello.c").unlink()
        (plugin / "plugin.json").write_text(json.dumps({**manifest, "version": version}))
        (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
        registry.trust(capture(plugin), pin=True)
        dirs.append(plugin)
    return dirs


def _plugin_copies(source: Path, where: Path, count: int, key: SigningKey) -> list[Path]:
    """Distinct signed plugin directories: same library bytes, distinct versions."""
    where.mkdir(mode=0o755)
    manifest = (source / "plugin.json").read_text()
    dirs = []
    for i in range(count):
        plugin = where / f"hello{i}"
        plugin.mkdir(mode=0o755)
        # Same name and version (the library's metadata says 1.0.0), so the
        # content is identical: trust it once, load each copy.
        (plugin / "plugin.json").write_text(manifest)
        os.link(source / "libhello.so", plugin / "libhello.so")
        (plugin / "plugin.sig").write_bytes((source / "plugin.sig").read_bytes())
        dirs.append(plugin)
    return dirs


_LOAD_ONCE = """
import sys, time
from vtreg.loader import PluginLoader
from vtreg.registry.service import Registry
with Registry.open(sys.argv[1]) as registry:
    loader = PluginLoader(registry, registry, [sys.argv[2]])
    start = time.perf_counter()
    loader.load_plugin(sys.argv[3])
    print(time.perf_counter() - start)
"""
_HASH_AND_CDLL = """
import ctypes, hashlib, os, sys, time
start = time.perf_counter()
with open(sys.argv[1], "rb") as library:
    hashlib.file_digest(library, "sha256")
ctypes.CDLL(sys.argv[1], mode=os.RTLD_NOW)
print(time.perf_counter() - start)
"""


def _in_fresh_process(code: str, *args: str, one_core: bool = False) -> float:
    """Seconds the timed part of ``code`` took, run in a new interpreter (on CPU 0 only
    with ``one_core``)."""
    cmd = pinned([sys.executable, "-c", code, *args], one_core)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def _time_each(items: list[Path], fn: object) -> list[float]:
    samples = []
    for item in items:
        t = time.perf_counter()
        fn(item)  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    return samples


def _signed_sources(work: Path, size_mib: int, key: SigningKey) -> tuple[Path, Path]:
    """Signed copies of the example plugin (small) and of it grown to ``size_mib`` (big)."""
    example = build_example(work)
    now = datetime.now(UTC)
    small = work / "small-src"
    small.mkdir(mode=0o755)
    for name in ("plugin.json", "libhello.so"):
        shutil.copy(example / name, small / name)
    (small / "plugin.sig").write_bytes(sign(capture(small), key, at=now).envelope)

    big = work / "big-src"
    big.mkdir(mode=0o755)
    shutil.copy(example / "plugin.json", big)
    shutil.copy(example / "libhello.so", big)
    with (big / "libhello.so").open("ab") as f:
        remaining = size_mib * 2**20 - (big / "libhello.so").stat().st_size
        while remaining > 0:
            chunk = os.urandom(min(remaining, 16 << 20))
            f.write(chunk)
            remaining -= len(chunk)
    (big / "plugin.sig").write_bytes(sign(capture(big), key, at=now).envelope)
    return small, big


def _execute_ms(plugin: NativePlugin, context: PluginContext) -> float:
    """Median milliseconds of one ``execute`` call, over 2,000 after 200 to warm up."""
    for _ in range(200):
        plugin.execute(context)
    samples = []
    for _ in range(2000):
        t = time.perf_counter()
        plugin.execute(context)
        samples.append(time.perf_counter() - t)
    return _median_ms(samples)


@dataclass
class _Figures:
    """What main measured: samples in seconds, call medians in milliseconds."""

    bare: list[float]
    loaded: list[float]
    hashed: list[float]
    big_loaded: list[float]
    again: list[float]
    calls: dict[str, float]


def _measure(work: Path, args: argparse.Namespace, key: SigningKey) -> _Figures:
    small, big = _signed_sources(work, args.size_mib, key)
    url = f"sqlite:///{work / 'registry.db'}"
    with Registry.open(url) as registry:
        registry.add_key(key.public_key)
        registry.trust(capture(big), pin=True)  # older than the 1.1.N copies

        trusted = work / "plugins"
        small_dirs = _distinct_plugins(
            work / "examples" / "hello", trusted, args.runs + 5, key, registry
        )
        big_dirs = _plugin_copies(big, work / "big-plugins", args.big_runs + 1, key)
        loader = PluginLoader(registry, registry, [trusted, work / "big-plugins"])
        loader.load_plugin(small_dirs.pop())  # warm up imports and the registry
        loaded = _time_each(small_dirs[: args.runs], loader.load_plugin)
        again = _time_each(small_dirs[: args.runs], loader.load_plugin)  # already loaded

        bare_libs = _copies(small / "libhello.so", work / "bare", args.runs)
        bare = _time_each(bare_libs, lambda p: ctypes.CDLL(str(p), mode=os.RTLD_NOW))

        # Each big load in a fresh process: a library loaded in-process stays in
        # memory for good, and hundreds of MiB of fresh memory per sample would
        # measure the machine's page allocator, not the load.
        for path in big_dirs:  # page cache warm for the big library
            (path / "libhello.so").read_bytes()
        big_loaded = [
            _in_fresh_process(
                _LOAD_ONCE, url, str(work / "big-plugins"), str(path), one_core=args.one_core
            )
            for path in big_dirs[: args.big_runs]
        ]
        big_bare_libs = _copies(big / "libhello.so", work / "big-bare", args.big_runs)
        hashed = [
            _in_fresh_process(_HASH_AND_CDLL, str(path), one_core=args.one_core)
            for path in big_bare_libs
        ]

        hello = loader.load_plugin(small_dirs[-1])
        context = PluginContext(input={"name": "Ada"})
        isolated_loader = PluginLoader(registry, registry, [trusted], isolation="process")
        isolated = isolated_loader.load_plugin(small_dirs[-2])
        calls = {
            label: _execute_ms(p, context)
            for label, p in (("in-process", hello), ("isolated", isolated))
        }
        isolated.close()
    return _Figures(
        bare=bare, loaded=loaded, hashed=hashed, big_loaded=big_loaded, again=again, calls=calls
    )


def _print_figures(args: argparse.Namespace, f: _Figures) -> None:
    def line(label: str, figure: str) -> None:
        print(f"{label:<62} {figure:>12}")

    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"\nLoading plugins in-process (warm; {cc})")
    line("operation", "median")
    line(
        f"bare ctypes.CDLL, example library ({args.runs} distinct copies)",
        f"{_median_ms(f.bare):.3f} ms",
    )
    line(
        f"PluginLoader.load_plugin, example plugin ({args.runs})", f"{_median_ms(f.loaded):.3f} ms"
    )
    added = _median_ms(f.loaded) - _median_ms(f.bare)
    line("  added by verification, trust check and audit", f"{added:.3f} ms")
    line(
        f"PluginLoader.load_plugin, already loaded content ({args.runs}, shared)",
        f"{_median_ms(f.again):.3f} ms",
    )
    line(
        f"sha256 of the {args.size_mib} MiB library + bare CDLL (fresh process, {args.big_runs})",
        f"{_median_ms(f.hashed):.1f} ms",
    )
    line(
        f"PluginLoader.load_plugin, {args.size_mib} MiB plugin (fresh process, {args.big_runs})",
        f"{_median_ms(f.big_loaded):.1f} ms",
    )
    ratio = _median_ms(f.big_loaded) / _median_ms(f.hashed)
    line("  ratio", f"{ratio:.2f}x")
    calls = f.calls
    line("execute(), in-process (2,000 calls)", f"{calls['in-process']:.4f} ms")
    line("execute(), isolated child, running (2,000 calls)", f"{calls['isolated']:.4f} ms")
    line("  added by isolation per call", f"{calls['isolated'] - calls['in-process']:.4f} ms")
    print("\nTargets")
    for text, ok in (
        ("a verified load adds under 1 ms to bare CDLL", added < 1),
        (f"{args.size_mib} MiB load within 1.5x of one hash plus bare CDLL", ratio <= 1.5),
        ("isolation adds under 1 ms per call", calls["isolated"] - calls["in-process"] < 1),
    ):
        print(f"  [{'met' if ok else 'MISSED'}] {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=51)
    parser.add_argument("--big-runs", type=int, default=7)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument(
        "--one-core", action="store_true", help="run the big loads and their peer on CPU 0 only"
    )
    args = parser.parse_args()
    with scratch_dir() as scratch:
        work = Path(scratch)
        work.chmod(0o755)
        figures = _measure(work, args, SigningKey.generate("bench"))
    _print_figures(args, figures)


if __name__ == "__main__":
    main()
