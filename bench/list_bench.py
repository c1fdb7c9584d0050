"""Benchmark `vtreg list` at scale: 1,000,000 trusted plugins (SQLite), beside the sqlite3 CLI.

    python bench/list_bench.py [--plugins 1000000] [--db PATH] [--runs 3] [--one-core]

Fills a registry (the schema from Alembic, rows through the sqlite3 module
with the columns the registry writes: 10,000 names, 100 keys, one signer and
one accepted envelope each, a realistic envelope size), then runs, whole
processes, warm (the file read once first):

* `vtreg list` (the table) and `vtreg list --json`, to /dev/null;
* the sqlite3 CLI running the listing's own SELECT (name, version, signers,
  digest, time trusted and every input of the status, in list order), to
  /dev/null: the floor the ratios are taken against;
* the sqlite3 CLI printing the table's columns alone (no status inputs), for
  comparison with a plain dump.

It prints the median wall and CPU (user + system) time of --runs runs and the
peak RSS of each, and the ratio to the floor. On a busy machine use
--one-core (taskset -c 0 for every command) and read the CPU column.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import cpu_once, peak_memory_kib, pinned, scratch_dir, vtreg_command
from vtreg.registry.listing import PluginQuery, _plugin_select
from vtreg.registry.reader import Reader
from vtreg.registry.service import Registry
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.manifest import SemVer

NAMES = 10_000
KEYS = 100
CHUNK = 50_000
_ENVELOPE = b'{"payload": "' + b"A" * 700 + b'"}'  # a realistic plugin.sig size


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy stores it on SQLite


def _fill(db: Path, plugins: int) -> None:
    with Registry.open(f"sqlite:///{db}"):
        pass  # the schema, at head
    start = datetime(2026, 1, 1, tzinfo=UTC)
    publics = [SigningKey.generate(f"publisher-{n}").public_key for n in range(KEYS)]
    connection = sqlite3.connect(db)
    with connection:
        connection.executemany(
            "INSERT INTO keys (keyid, name, public_key, scopes, added_at, added_by) "
            "VALUES (?, ?, ?, '[]', ?, 'bench@host')",
            [(p.keyid, p.name, p.raw, _time(start)) for p in publics],
        )
    keys = {f"1.{v}.0": SemVer.parse(f"1.{v}.0").sort_key() for v in range(plugins // NAMES + 1)}
    for low in range(0, plugins, CHUNK):
        rows = range(low, min(plugins, low + CHUNK))
        with connection:
            connection.executemany(
                "INSERT INTO plugins (id, name, version, version_key, content_digest, platform, "
                "library, envelope, threshold, pinned, trusted_at, trusted_by) "
                "VALUES (?, ?, ?, ?, ?, 'linux-x86_64', ?, ?, 1, 0, ?, 'bench@host')",
                [_plugin(i, keys, start) for i in rows],
            )
            signers = [(i + 1, publics[i % KEYS].keyid) for i in rows]
            connection.executemany(
                "INSERT INTO plugin_signers (plugin_id, keyid) VALUES (?, ?)", signers
            )
            connection.executemany(
                "INSERT INTO plugin_envelopes (plugin_id, envelope, signers, accepted_at, "
                "accepted_by) VALUES (?, ?, ?, ?, 'bench@host')",
                [(i, _ENVELOPE, keyid, _time(start)) for i, keyid in signers],
            )
        print(f"\r  plugins {rows[-1] + 1:>9,}", end="", flush=True)
    connection.close()
    print()


def _plugin(i: int, keys: dict[str, bytes], start: datetime) -> tuple[object, ...]:
    name, version = f"plugin-{i % NAMES}", f"1.{i // NAMES}.0"
    digest = "sha256:" + hashlib.sha256(b"plugin %d" % i).hexdigest()
    at = _time(start + timedelta(seconds=i))
    return (i + 1, name, version, keys[version], digest, f"lib{name}.so", _ENVELOPE, at)


# The table's columns without what the status needs: a dump, as a plain shell would list.
_COLUMNS_ONLY = (
    "SELECT p.name, p.version, s.keyid, p.content_digest, p.trusted_at FROM plugins p "
    "JOIN plugin_signers s ON s.plugin_id = p.id ORDER BY p.name, p.trusted_at, p.id;"
)


def _floor_sql(db: Path) -> str:
    """The listing's own SELECT, as the sqlite3 CLI runs it (no parameters: no filter)."""
    connection = sqlite3.connect(db)
    try:
        statement, params = _plugin_select(
            Reader(connection, "", sqlite=True, driver_error=sqlite3.Error), PluginQuery()
        )
    finally:
        connection.close()
    assert not params  # noqa: S101 - no filter, no parameter
    return statement + ";"


def _row(
    label: str, cmd: list[str], runs: int, floor: tuple[float, float] | None
) -> tuple[float, float]:
    samples = [cpu_once(cmd) for _ in range(runs)]
    wall = statistics.median(s[0] for s in samples)
    cpu = statistics.median(s[1] for s in samples)
    peak = peak_memory_kib(cmd) / 1024
    ratio = f"{wall / floor[0]:5.2f}x wall {cpu / floor[1]:5.2f}x cpu" if floor else ""
    print(f"{label:<28} {wall:>8.2f} {cpu:>8.2f} {peak:>9.1f}  {ratio}", flush=True)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plugins", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse (or fill) this registry file")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one-core", action="store_true", help="taskset -c 0 every command")
    args = parser.parse_args()
    with scratch_dir() as scratch:
        db = args.db or Path(scratch) / "registry.db"
        if not db.exists():
            print(f"filling {db} ...")
            _fill(db, args.plugins)
        with db.open("rb") as warm:
            while warm.read(16 << 20):
                pass
        url = f"sqlite:///{db}"
        vtreg = vtreg_command()
        print(f"\n{args.plugins:,} plugins; median of {args.runs}"
              + (", one core" if args.one_core else ""))  # fmt: skip
        print(f"{'command':<28} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}")
        floor_cmd = pinned(["sqlite3", "-readonly", str(db), _floor_sql(db)], args.one_core)
        _row("sqlite3 CLI (columns only)", pinned(["sqlite3", "-readonly", str(db), _COLUMNS_ONLY],
             args.one_core), args.runs, None)  # fmt: skip
        floor = _row("sqlite3 CLI (same SELECT)", floor_cmd, args.runs, None)
        _row("vtreg list", pinned([*vtreg, "list", "--db", url], args.one_core), args.runs, floor)
        json_cmd = pinned([*vtreg, "list", "--json", "--db", url], args.one_core)
        _row("vtreg list --json", json_cmd, args.runs, floor)


if __name__ == "__main__":
    main()
