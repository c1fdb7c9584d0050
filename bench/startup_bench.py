"""Benchmark the start-up of registry commands on a small registry, beside the floor.

    python bench/startup_bench.py [--runs 21] [--one-core]

Builds the example plugin, signs it with a fresh key, trusts key and plugin in
a fresh SQLite registry (one key, one plugin, a few audit events), then runs
each command as a whole process, --runs times after two warm-ups, and prints
the median wall and CPU (user + system) time of each beside:

* `python3 -c pass` with this interpreter (what any Python command costs);
* the sqlite3 CLI reading the plugins table (what a native reader costs).

On a busy machine the CPU column is the steadier one; --one-core runs every
command on CPU 0 (taskset -c 0), so no second core hides work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import build_example, cpu_once, pinned, scratch_dir, vtreg_command

_COMMANDS = (
    ("list",),
    ("audit",),
    ("show", "hello"),
    ("key", "list"),
    ("db", "info"),
    ("trust", "{plugin}"),
    ("verify", "{plugin}"),
    ("run", "{plugin}", "--input", "{{}}"),
    ("--version",),
)


def _prepare(scratch: Path) -> tuple[Path, dict[str, str]]:
    """The signed, trusted example plugin and the environment naming its registry."""
    plugin = build_example(scratch)
    env = {**os.environ, "VTREG_HOME": str(scratch / "home")}
    env.pop("VTREG_DATABASE_URL", None)
    vtreg = vtreg_command()
    keys = scratch / "keys"
    keys.mkdir()

    def run(*args: str | Path) -> None:
        subprocess.run([*vtreg, *map(str, args)], check=True, env=env, capture_output=True)

    run("keygen", "publisher", "--out", keys, "--unencrypted")
    run("key", "add", keys / "publisher.pub")
    run("sign", plugin, "--key", keys / "publisher.key")
    run("trust", plugin)
    return plugin, env


def _median(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    for _ in range(2):
        cpu_once(cmd, env=env)
    samples = [cpu_once(cmd, env=env) for _ in range(runs)]
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--one-core", action="store_true", help="taskset -c 0 every command")
    args = parser.parse_args()
    with scratch_dir() as scratch:
        plugin, env = _prepare(Path(scratch))
        db = Path(env["VTREG_HOME"]) / "registry.db"
        floors = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "sqlite3 CLI (plugins)": ["sqlite3", "-readonly", str(db), "SELECT * FROM plugins;"],
        }
        print(f"median of {args.runs}" + (", one core" if args.one_core else ""))
        print(f"{'command':<32} {'wall ms':>8} {'cpu ms':>8}  {'cpu vs python3 -c pass':>22}")
        base = 0.0
        for label, cmd in floors.items():
            wall, cpu = _median(pinned(cmd, args.one_core), env, args.runs)
            base = base or cpu  # python3 -c pass
            print(f"{label:<32} {wall * 1000:>8.1f} {cpu * 1000:>8.1f}  {cpu / base:>21.1f}x")
        for command in _COMMANDS:
            argv = [part.format(plugin=plugin) for part in command]
            cmd = pinned([*vtreg_command(), *argv], args.one_core)
            wall, cpu = _median(cmd, env, args.runs)
            label = "vtreg " + " ".join(command).replace("{plugin}", "DIR").replace("{{}}", "{}")
            print(f"{label:<32} {wall * 1000:>8.1f} {cpu * 1000:>8.1f}  {cpu / base:>21.1f}x")


if __name__ == "__main__":
    main()
