"""Isolation: a crashing, hanging or memory-hungry plugin fails its call, never the host."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import c_string
from tests.loader.conftest import Build, RecordingAudit
from vtreg.loader import KeyPolicy, PluginCallError, PluginContext, PluginLoader
from vtreg.loader.abi import LoadError
from vtreg.verifier.errors import VerificationError
from vtreg.verifier.keys import SigningKey


@pytest.fixture
def isolated(trusted: Path, key: SigningKey) -> PluginLoader:
    return PluginLoader(
        KeyPolicy([key.public_key]), None, [trusted], isolation="process",
        timeout=2.0, memory_limit=64 << 20,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        pytest.param("segv", "the plugin process was killed by SIGSEGV", id="segfault"),
        pytest.param("abort", "the plugin process was killed by SIGABRT", id="abort"),
        pytest.param("hang", r"no answer within 2 s; stopped it", id="hang"),
        pytest.param(
            "hog", r"vtcode_plugin_execute returned NULL|killed by SIG", id="memory-blow-up"
        ),
    ],
)
def test_a_misbehaving_plugin_fails_the_call_and_the_host_goes_on(
    build: Build, isolated: PluginLoader, mode: str, message: str
) -> None:
    bad = isolated.load_plugin(build("bad", mode=mode))
    started = time.monotonic()

    with pytest.raises(PluginCallError, match=message):
        bad.execute()

    assert time.monotonic() - started < 30
    # The host is alive and can load and run other plugins, isolated or not.
    good = isolated.load_plugin(build("good"))
    assert good.execute(PluginContext(input={"n": 1})).success
    with pytest.raises(PluginCallError, match=message):
        bad.execute()  # a fresh child, the same verified bytes, the same failure
    bad.close()
    good.close()


def test_a_worker_that_died_between_calls_is_replaced(build: Build, isolated: PluginLoader) -> None:
    plugin = isolated.load_plugin(build())
    assert plugin.execute().success
    worker = plugin._backend._proc  # type: ignore[attr-defined]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()

    assert plugin.execute().success  # no call was running: nothing fails
    assert plugin._backend._proc.pid != worker.pid  # type: ignore[attr-defined]
    plugin.close()


def test_per_call_timeout(build: Build, isolated: PluginLoader) -> None:
    plugin = isolated.load_plugin(build(mode="hang"))
    started = time.monotonic()
    with pytest.raises(PluginCallError, match=r"no answer within 0\.5 s"):
        plugin.execute(timeout=0.5)
    assert time.monotonic() - started < 10
    plugin.close()


def test_plugin_output_cannot_corrupt_the_channel(build: Build, isolated: PluginLoader) -> None:
    plugin = isolated.load_plugin(build(mode="print"))
    for _ in range(3):
        assert plugin.execute().success
    plugin.close()


def test_the_worker_runs_the_sealed_copy_not_the_file(build: Build, isolated: PluginLoader) -> None:
    plugin_dir = build()
    plugin = isolated.load_plugin(plugin_dir)
    (plugin_dir / "libvx.so").write_bytes(b"replaced after loading")
    worker = plugin._backend._proc  # type: ignore[attr-defined]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert plugin.execute().output["mode"] == "echo"  # restarted from the sealed bytes
    plugin.close()


def test_the_worker_ignores_the_hosts_directory_and_python_variables(
    build: Build, isolated: PluginLoader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A workspace (the agent's current directory, or one on PYTHONPATH) holding
    # packages named like ours must not run in the worker in their place.
    marker = tmp_path / "shadow-ran"
    workspace = tmp_path / "workspace"
    for package in ("vtreg", "loader", "verifier"):
        (workspace / package).mkdir(parents=True)
        (workspace / package / "__init__.py").write_text(
            f"open({str(marker)!r}, 'w').write('unsigned code ran')\n"
        )
    (workspace / "ctypes.py").write_text(f"open({str(marker)!r}, 'w').write('unsigned')\n")
    plugin_dir = build()
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("PYTHONPATH", str(workspace))
    monkeypatch.setenv("PYTHONSTARTUP", str(workspace / "ctypes.py"))

    plugin = isolated.load_plugin(plugin_dir)

    assert plugin.execute().success
    assert not marker.exists()
    plugin.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _still_running(pids: list[int], within: float = 10.0) -> list[int]:
    """Those of ``pids`` still running after up to ``within`` seconds (a SIGKILL is
    delivered asynchronously)."""
    deadline = time.monotonic() + within
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        pytest.param("fork-hang", r"no answer within 2 s; stopped it", id="hang"),
        # Reported as the crash it is, although the forked child still holds the pipe.
        pytest.param("fork-segv", r"the plugin process was killed by SIGSEGV", id="crash"),
    ],
)
def test_a_plugin_that_forks_leaves_no_process_behind(
    build: Build, isolated: PluginLoader, tmp_path: Path, mode: str, message: str
) -> None:
    pid_file = tmp_path / "child.pid"
    plugin = isolated.load_plugin(build(mode=mode, defines={"PID_FILE": c_string(str(pid_file))}))
    worker = plugin._backend._proc.pid  # type: ignore[attr-defined]
    try:
        with pytest.raises(PluginCallError, match=message):
            plugin.execute()
        child = int(pid_file.read_text())
        assert _still_running([worker, child]) == []
    finally:
        if pid_file.exists():  # never leave the sleeper behind, whatever happened
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        plugin.close()


def test_the_worker_dies_with_its_host(build: Build, key: SigningKey, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    plugin_dir = build(mode="fork-hang", defines={"PID_FILE": c_string(str(pid_file))})
    (tmp_path / "key.pub").write_bytes(key.public_key.to_pem())
    with subprocess.Popen(
        [sys.executable, "-c", _HOST, str(tmp_path / "key.pub"), str(plugin_dir)],
        stdout=subprocess.PIPE,
        text=True,
    ) as host:
        try:
            assert host.stdout is not None
            worker = int(host.stdout.readline())
            deadline = time.monotonic() + 30
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)  # until the call is running: the worker is not reading its pipe
            assert pid_file.exists()
            host.kill()  # no chance to stop its worker
            host.wait(timeout=30)
            assert _still_running([worker]) == []
        finally:
            host.kill()
            if pid_file.exists():  # a forked child outlives a killed host (docs/threats.md)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)


_HOST = """
import sys
from pathlib import Path
from vtreg.loader import KeyPolicy, PluginLoader
from vtreg.verifier.keys import read_public_key_file
key, plugin_dir = sys.argv[1], Path(sys.argv[2])
loader = PluginLoader(KeyPolicy([read_public_key_file(key)]), None, [plugin_dir.parent],
                      isolation="process", timeout=600)
plugin = loader.load_plugin(plugin_dir)
print(plugin._backend._proc.pid, flush=True)
plugin.execute()
"""


@pytest.mark.parametrize(
    ("define", "message"),
    [
        pytest.param(
            "CONSTRUCTOR_HANGS", r"no answer within 1 s while loading; stopped it", id="hang"
        ),
        pytest.param("CONSTRUCTOR_CRASHES", r"killed by SIGSEGV while loading", id="crash"),
    ],
)
def test_loading_runs_under_the_timeout_and_a_failure_there_cannot_decide(
    build: Build,
    trusted: Path,
    key: SigningKey,
    audit_log: RecordingAudit,
    define: str,
    message: str,
) -> None:
    loader = PluginLoader(
        KeyPolicy([key.public_key]), audit_log, [trusted], isolation="process", timeout=1.0
    )
    plugin_dir = build(defines={define: "1"})

    with pytest.raises(LoadError, match=message) as raised:
        loader.load_plugin(plugin_dir)

    # Not a refusal: the plugin is what was signed; it crashed or hung in its constructor.
    assert not isinstance(raised.value, VerificationError)
    assert [e.outcome for e in audit_log.events] == ["allowed", "error"]  # decided, then failed
    assert re.search(message, audit_log.events[1].reason or "")
    with pytest.raises(LoadError, match=message):
        loader.load_plugin(plugin_dir)  # nothing of the failed worker is kept or shared


def test_the_worker_never_sees_the_hosts_secrets(
    build: Build, isolated: PluginLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VTREG_PASSPHRASE", "correct horse battery staple")
    monkeypatch.setenv("VTREG_DATABASE_URL", "postgresql://admin:secret@db/registry")
    monkeypatch.setenv("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    plugin = isolated.load_plugin(build(mode="env"))

    output = plugin.execute().output

    assert output["VTREG_PASSPHRASE"] is False
    assert output["VTREG_DATABASE_URL"] is False
    assert output["PATH"] is True  # an allow-listed variable does arrive
    plugin.close()
