"""Isolation: a crashing, hanging or memory-hungry plugin fails its call, never the host."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.loader.conftest import Build
from vtreg.loader import KeyPolicy, PluginCallError, PluginContext, PluginLoader
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
