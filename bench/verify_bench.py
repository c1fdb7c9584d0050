"""Benchmark `vtreg verify` against what a user would run instead, in one run.

    python bench/verify_bench.py [--size-mib 256] [--runs 11] [--one-core]

Builds the example plugin, appends random bytes to its library until it is
--size-mib large, signs it with a fresh key, then times (whole process,
median of --runs after 2 warm-up runs, page cache warm) and measures peak
memory of:

* vtreg verify DIR --key PUB       (signature, every file's digest, plugin.json)
* sha256sum / openssl dgst -sha256 (hash the library only)
* minisign -V, gpg --verify        (detached signature over the library), where installed
* vtreg --help, and vtreg verify of the small example plugin

--one-core runs every command (vtreg and the others alike) under `taskset -c 0`.

Needs vtreg installed next to this interpreter (pip install .).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Result,
    build_example,
    measure,
    pinned,
    print_table,
    scratch_dir,
    vtreg_command,
)


def _make_big_plugin(example: Path, dest: Path, size_mib: int) -> Path:
    dest.mkdir()
    shutil.copy(example / "plugin.json", dest / "plugin.json")
    library = dest / "libhello.so"
    shutil.copy(example / "libhello.so", library)
    with library.open("ab") as f:
        remaining = size_mib * 1024 * 1024 - library.stat().st_size
        while remaining > 0:
            chunk = os.urandom(min(remaining, 16 << 20))
            f.write(chunk)
            remaining -= len(chunk)
    return dest


def _sign(vtreg: list[str], plugin: Path, keys: Path) -> None:
    subprocess.run(
        [*vtreg, "sign", str(plugin), "--key", str(keys / "bench.key")],
        check=True,
        capture_output=True,
    )


def _prepare(vtreg: list[str], work: Path, size_mib: int) -> tuple[Path, Path, Path]:
    """Signed copies of the example (small) and of it grown to ``size_mib`` (big), and the keys."""
    example = build_example(work)
    keys = work / "keys"
    keys.mkdir()
    subprocess.run(
        [*vtreg, "keygen", "bench", "--out", str(keys), "--unencrypted"],
        check=True,
        capture_output=True,
    )
    small = work / "hello"
    small.mkdir()
    for name in ("plugin.json", "libhello.so"):
        shutil.copy(example / name, small / name)
    big = _make_big_plugin(example, work / "big", size_mib)
    _sign(vtreg, small, keys)
    _sign(vtreg, big, keys)
    with (big / "libhello.so").open("rb") as f:  # warm the page cache for everyone alike
        while f.read(16 << 20):
            pass
    return small, big, keys


def _minisign(work: Path, library: str, args: argparse.Namespace) -> Result | None:
    if not shutil.which("minisign"):
        print("minisign not installed: skipped (apt-get install minisign)")
        return None
    subprocess.run(
        ["minisign", "-G", "-W", "-f", "-p", str(work / "m.pub"), "-s", str(work / "m.key")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["minisign", "-S", "-s", str(work / "m.key"), "-m", library],
        check=True,
        capture_output=True,
    )
    verify = ["minisign", "-Vm", library, "-p", str(work / "m.pub")]
    return measure("minisign -V (library)", pinned(verify, args.one_core), args.runs)


def _gpg(work: Path, library: str, args: argparse.Namespace) -> Result | None:
    if not shutil.which("gpg"):
        return None
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
    new_key = ["--quick-gen-key", "bench@example.invalid", "ed25519", "sign", "never"]
    subprocess.run(
        [*gpg, "--passphrase", "", *new_key],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*gpg, "--detach-sign", "-o", library + ".asc", library],
        check=True,
        capture_output=True,
    )
    verify = pinned([*gpg, "--verify", library + ".asc", library], args.one_core)
    return measure("gpg --verify (library)", verify, args.runs)


def _print_targets(results: list[Result], startup: list[Result]) -> None:
    openssl = results[1].median_s
    checks = [
        ("vtreg verify within 1.3x of openssl dgst", results[0].median_s <= 1.3 * openssl),
        ("vtreg verify peak memory under 64 MiB", results[0].peak_mib < 64),
        ("vtreg --help under 150 ms", startup[0].median_s < 0.150),
        ("vtreg verify (example) under 250 ms", startup[1].median_s < 0.250),
    ]
    minisign = next((r for r in results if r.label.startswith("minisign")), None)
    if minisign:
        checks.insert(
            1, ("vtreg verify faster than minisign -V", results[0].median_s < minisign.median_s)
        )
    print("\nTargets")
    for text, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--one-core", action="store_true", help="pin everything to CPU 0")
    args = parser.parse_args()
    vtreg = pinned(vtreg_command(), args.one_core)

    with scratch_dir() as scratch:
        work = Path(scratch)
        small, big, keys = _prepare(vtreg, work, args.size_mib)
        library = str(big / "libhello.so")
        results: list[Result] = [
            measure(
                f"vtreg verify ({args.size_mib} MiB plugin)",
                [*vtreg, "verify", str(big), "--key", str(keys / "bench.pub")],
                args.runs,
            ),
            measure(
                "openssl dgst -sha256 (library)",
                pinned(["openssl", "dgst", "-sha256", library], args.one_core),
                args.runs,
            ),
            measure(
                "sha256sum (library)", pinned(["sha256sum", library], args.one_core), args.runs
            ),
        ]
        results += [r for r in (_minisign(work, library, args),) if r is not None]
        results += [r for r in (_gpg(work, library, args),) if r is not None]
        cores = "one core" if args.one_core else "all cores"
        print_table(
            f"Verifying a {args.size_mib} MiB plugin (page cache warm, {cores})",
            results,
            baseline="openssl dgst -sha256 (library)",
        )
        startup = [
            measure("vtreg --help", [*vtreg, "--help"], args.runs),
            measure(
                "vtreg verify (example plugin)",
                [*vtreg, "verify", str(small), "--key", str(keys / "bench.pub")],
                args.runs,
            ),
        ]
        print_table("Start-up", startup)
        _print_targets(results, startup)


if __name__ == "__main__":
    main()
