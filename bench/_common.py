"""Shared helpers for the benchmarks: run a command, time it, and track its memory."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def vtreg_command() -> list[str]:
    """The installed ``vtreg`` next to this interpreter (what a user runs)."""
    script = Path(sys.executable).with_name("vtreg")
    if not script.exists():
        raise SystemExit(
            f"vtreg is not installed next to {sys.executable}; run pip install . first"
        )
    return [str(script)]


def build_example(workdir: Path) -> Path:
    """Build examples/hello with make in a scratch copy; return the directory it is in."""
    examples = workdir / "examples"
    shutil.copytree(
        ROOT / "examples", examples, ignore=shutil.ignore_patterns("*.so", "plugin.sig")
    )
    subprocess.run(["make", "-s", "-C", str(examples / "hello")], check=True)
    return examples / "hello"


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found.append(child)
        found.extend(_descendants(child))
    return found


def _hwm_kib(pid: int) -> int:
    """Peak RSS of a process's current image (VmHWM; reset when it execs)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


_GNU_TIME = "/usr/bin/time"


def _spawn(cmd: Sequence[str], env: dict[str, str] | None, err: int) -> int:
    actions = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_DUP2, err, 2)]
    return os.posix_spawnp(cmd[0], list(cmd), env or dict(os.environ), file_actions=actions)


def time_once(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of one run (nothing else running in this process meanwhile)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        pid = _spawn(cmd, env, err.fileno())
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().decode(errors='replace')}")
    return elapsed


def cpu_once(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run, its children included.

    On a busy machine the CPU time is the steadier figure: waiting for a core
    counts in the wall time only.
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        pid = _spawn(cmd, env, err.fileno())
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed: {err.read().decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime


def peak_memory_kib(cmd: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Peak memory of one run, counting every process the command starts.

    The command's own peak comes from GNU time (%M, the kernel's maxrss; a
    process spawned straight from this big Python process would inherit its
    high-water mark). Its children's peaks (vtreg verify forks a hashing
    child) are sampled from /proc every millisecond and added, shared pages
    included, so the figure over-states rather than hides memory.
    """
    timed = [_GNU_TIME, "-f", "%M", *cmd] if Path(_GNU_TIME).exists() else list(cmd)
    with tempfile.TemporaryFile() as err:
        pid = _spawn(timed, env, err.fileno())
        children_peak: dict[int, int] = {}
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            tree = _descendants(pid)
            for child in tree[1:] if timed[0] == _GNU_TIME else tree:
                children_peak[child] = max(children_peak.get(child, 0), _hwm_kib(child))
            if timed[0] != _GNU_TIME:
                children_peak[pid] = max(children_peak.get(pid, 0), _hwm_kib(pid))
            time.sleep(0.001)
        err.seek(0)
        text = err.read().decode(errors="replace").strip()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {text}")
    own = int(text.splitlines()[-1]) if timed[0] == _GNU_TIME else 0
    return own + sum(children_peak.values())


@dataclass
class Result:
    label: str
    median_s: float
    min_s: float
    peak_mib: float


def measure(
    label: str, cmd: Sequence[str], runs: int, warmup: int = 2, env: dict[str, str] | None = None
) -> Result:
    for _ in range(warmup):
        time_once(cmd, env=env)
    times = [time_once(cmd, env=env) for _ in range(runs)]
    peak = max(peak_memory_kib(cmd, env=env) for _ in range(3))
    return Result(label, statistics.median(times), min(times), peak / 1024)


def print_table(title: str, results: list[Result], baseline: str | None = None) -> None:
    base = next((r for r in results if r.label == baseline), None)
    versus = f"vs {baseline}" if baseline else ""
    print(f"\n{title}")
    print(f"{'command':<44} {'median ms':>10} {'min ms':>8} {'peak MiB':>9}  {versus}")
    for r in results:
        ratio = f"{r.median_s / base.median_s:.2f}x" if base else ""
        ms, low = r.median_s * 1000, r.min_s * 1000
        print(f"{r.label:<44} {ms:>10.1f} {low:>8.1f} {r.peak_mib:>9.1f}  {ratio}")


def pinned(cmd: Sequence[str], one_core: bool) -> list[str]:
    """``cmd``, run on CPU 0 only (``taskset -c 0``) when ``one_core``: no second core to
    overlap hashing with start-up, as on a busy or single-core host."""
    return ["taskset", "-c", "0", *cmd] if one_core else list(cmd)


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="vtreg-bench-")
