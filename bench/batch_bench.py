"""Benchmark many small plugins at once: one `vtreg verify`/`vtreg trust` call for all of them,
against 500 `minisign -V` calls and vtreg's own API in a loop, in one run.

    python bench/batch_bench.py [--plugins 500] [--runs 5] [--one-core]

Builds the example plugin, makes --plugins small plugins of it (each its own name, so
each is its own content), signs them with a fresh key (vtreg's API) and, where
minisign is installed, signs each library with minisign too. Then times (whole
processes, median of --runs after one warm-up, page cache warm):

* `vtreg verify DIR... --key PUB`: every plugin in one process (offline);
* N `minisign -Vm LIB -p PUB` calls, one process each (what a shell loop costs);
* N `vtreg verify DIR --key PUB` calls, estimated from 20 of them (start-up each time);
* `vtreg trust DIR...` into a fresh SQLite registry, against `Registry.trust` of the
  same plugins in a loop in one process (the API, without start-up).

Peak memory is measured for the one-process rows only (0.0: not measured).

minisign is not installed by CI; without it that row is skipped and says so
(`apt-get install minisign`). Needs vtreg installed next to this interpreter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Result,
    build_example,
    peak_memory_kib,
    pinned,
    print_table,
    scratch_dir,
    time_once,
    vtreg_command,
)


def _make_plugins(example: Path, parent: Path, count: int) -> list[Path]:
    """``count`` copies of the example, plugin i named ``p<i>`` (its library libp<i>.so)."""
    manifest = json.loads((example / "plugin.json").read_text())
    made = []
    for i in range(count):
        directory = parent / f"p{i}"
        directory.mkdir(parents=True)
        shutil.copy(example / "libhello.so", directory / f"libp{i}.so")
        (directory / "plugin.json").write_text(json.dumps({**manifest, "name": f"p{i}"}))
        made.append(directory)
    return made


def _sign_all(plugins: list[Path], work: Path) -> Path:
    """Sign every plugin with a fresh vtreg key; return the public key file."""
    from vtreg.verifier.keys import SigningKey
    from vtreg.verifier.signing import sign
    from vtreg.verifier.tree import capture

    key = SigningKey.generate("bench")
    now = datetime.now(UTC)
    for plugin in plugins:
        (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
    public = work / "bench.pub"
    public.write_bytes(key.public_key.to_file_bytes())
    return public


def _timed(label: str, cmd: list[str], runs: int) -> Result:
    time_once(cmd)  # warm-up
    times = [time_once(cmd) for _ in range(runs)]
    return Result(label, statistics.median(times), min(times), peak_memory_kib(cmd) / 1024)


def _loop(label: str, commands: list[list[str]], scale: float = 1.0) -> Result:
    """One pass over ``commands``, one process each; ``scale`` extrapolates a sample."""
    time_once(commands[0])
    start = time.perf_counter()
    for cmd in commands:
        time_once(cmd)
    elapsed = (time.perf_counter() - start) * scale
    return Result(label, elapsed, elapsed, 0.0)


def _minisign(plugins: list[Path], work: Path, one_core: bool) -> Result | None:
    if not shutil.which("minisign"):
        print("minisign not installed: its row is skipped (apt-get install minisign)")
        return None
    pub, sec = work / "m.pub", work / "m.key"
    subprocess.run(
        ["minisign", "-G", "-W", "-f", "-p", str(pub), "-s", str(sec)],
        check=True,
        capture_output=True,
    )
    libraries = [str(p / f"lib{p.name}.so") for p in plugins]
    signatures = work / "minisig"
    signatures.mkdir()
    # Kept outside the plugin directories: a file there would be one vtreg did not sign.
    sigs = [str(signatures / f"{p.name}.minisig") for p in plugins]
    for library, sig in zip(libraries, sigs, strict=True):
        subprocess.run(
            ["minisign", "-S", "-s", str(sec), "-m", library, "-x", sig],
            check=True,
            capture_output=True,
        )
    commands = [
        pinned(["minisign", "-Vm", lib, "-x", sig, "-p", str(pub)], one_core)
        for lib, sig in zip(libraries, sigs, strict=True)
    ]
    return _loop(f"{len(plugins)} x minisign -V (one process each)", commands)


def _api_trust(plugins: list[Path], public: Path, db: Path) -> float:
    """Seconds for Registry.trust of every plugin in this process (the key added before)."""
    from vtreg.registry.service import Registry
    from vtreg.verifier.keys import read_public_key_file
    from vtreg.verifier.tree import capture

    with Registry.open(f"sqlite:///{db}") as registry:
        registry.add_key(read_public_key_file(str(public)))
        start = time.perf_counter()
        for plugin in plugins:
            registry.trust(capture(plugin))
        return time.perf_counter() - start


def _cli_trust(vtreg: list[str], plugins: list[Path], public: Path, db: Path) -> float:
    subprocess.run(
        [*vtreg, "key", "add", str(public), "--db", str(db)], check=True, capture_output=True
    )
    return time_once([*vtreg, "trust", *map(str, plugins), "--db", str(db)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one-core", action="store_true", help="pin everything to CPU 0")
    args = parser.parse_args()
    vtreg = pinned(vtreg_command(), args.one_core)
    n = args.plugins

    with scratch_dir() as scratch:
        work = Path(scratch)
        example = build_example(work)
        plugins = _make_plugins(example, work / "plugins", n)
        public = _sign_all(plugins, work)
        dirs = list(map(str, plugins))
        verify_all = [*vtreg, "verify", *dirs, "--key", str(public)]
        results = [_timed(f"vtreg verify of {n} plugins (one process)", verify_all, args.runs)]
        minisign = _minisign(plugins, work, args.one_core)
        results += [minisign] if minisign else []
        sample = [[*vtreg, "verify", d, "--key", str(public)] for d in dirs[:20]]
        results.append(_loop(f"{n} x vtreg verify (estimated from 20)", sample, n / len(sample)))
        cores = "one core" if args.one_core else "all cores"
        print_table(
            f"Verifying {n} small plugins (page cache warm, {cores})",
            results,
            baseline=minisign.label if minisign else None,
        )

        api = statistics.median(_api_trust(plugins, public, work / f"api{i}.db") for i in range(3))
        cli = statistics.median(
            _cli_trust(vtreg, plugins, public, work / f"cli{i}.db") for i in range(3)
        )
        trust = [
            Result(f"Registry.trust of {n} plugins (API loop)", api, api, 0.0),
            Result(f"vtreg trust of {n} plugins (one process)", cli, cli, 0.0),
        ]
        print_table(f"Trusting {n} small plugins into SQLite", trust, baseline=trust[0].label)

        print("\nTargets")
        checks = [(f"vtreg trust of {n} within 2x of the API loop", cli <= 2 * api)]
        if minisign:
            checks.insert(
                0,
                (
                    f"vtreg verify of {n} within 3x of {n} minisign -V calls",
                    results[0].median_s <= 3 * minisign.median_s,
                ),
            )
        for text, met in checks:
            print(f"  [{'met' if met else 'MISSED'}] {text}")


if __name__ == "__main__":
    main()
