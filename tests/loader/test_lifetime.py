"""Same content, same instance; closing the last one unloads it; a long-lived host stays bounded.

VT Code gets one shared library per path from dlopen's reference count and
dlcloses it when the plugin is dropped. vtreg shares by verified content
digest (in this process; per loader for isolated workers) and unloads when
the last NativePlugin over it is closed. Each test loads content no other
test loads (its own name), since in-process instances are shared process-wide.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.loader.conftest import Build, Compat, RecordingAudit
from tests.loader.test_vtcode_compat import _metadata
from vtreg.loader import KeyPolicy, PluginLoader
from vtreg.verifier.errors import UsageError
from vtreg.verifier.keys import SigningKey


def _mappings(name: str) -> int:
    """How many of this process's mappings come from the sealed copy of ``name``."""
    with open("/proc/self/maps") as maps:
        return sum(f"/memfd:{name} " in line or line.endswith(f"/memfd:{name}\n") for line in maps)


def _all_mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_loading_the_same_content_twice_shares_one_instance(
    build: Build, trusted: Path, key: SigningKey, audit_log: RecordingAudit
) -> None:
    loader = PluginLoader(KeyPolicy([key.public_key]), audit_log, [trusted])
    directory = build("shared1")
    first = loader.load_plugin(directory)
    second = loader.load_plugin(directory)
    # One library: its static counter of freed strings is shared by both handles.
    assert [first.execute().output["frees"], second.execute().output["frees"]] == [1, 2]
    assert _mappings("libshared1.so") > 0
    assert [e.outcome for e in audit_log.events] == ["allowed", "allowed"]  # both decided
    assert audit_log.events[1].details["shared"] is True
    first.close()
    assert second.execute().success  # the other handle still works
    with pytest.raises(UsageError, match="was closed"):
        first.execute()
    second.close()
    assert _mappings("libshared1.so") == 0  # unloaded with the last handle
    again = loader.load_plugin(directory)
    assert again.execute().output["frees"] == 1  # a fresh library: its counter starts over
    again.close()


def test_another_loader_shares_what_this_process_loaded(
    build: Build, trusted: Path, key: SigningKey
) -> None:
    directory = build("shared2")
    one = PluginLoader(KeyPolicy([key.public_key]), None, [trusted]).load_plugin(directory)
    two = PluginLoader(KeyPolicy([key.public_key]), None, [trusted]).load_plugin(directory)
    assert [one.execute().output["frees"], two.execute().output["frees"]] == [1, 2]
    one.close()
    two.close()
    assert _mappings("libshared2.so") == 0


def test_isolated_loads_of_one_content_share_one_worker(
    build: Build, trusted: Path, key: SigningKey
) -> None:
    loader = PluginLoader(KeyPolicy([key.public_key]), None, [trusted], isolation="process")
    directory = build("shared3")
    first, second = loader.load_plugin(directory), loader.load_plugin(directory)
    assert first.execute().success
    assert second.execute().success
    worker = first._backend._proc  # type: ignore[attr-defined]
    assert worker is second._backend._proc  # type: ignore[attr-defined]
    first.close()
    assert worker.poll() is None  # still serving the second
    second.close()
    assert worker.poll() is not None  # stopped with the last handle


def test_closing_the_loader_closes_what_it_handed_out(
    build: Build, trusted: Path, key: SigningKey
) -> None:
    with PluginLoader(KeyPolicy([key.public_key]), None, [trusted], isolation="process") as pl:
        isolated = pl.load_plugin(build("byloader1"))
        worker = isolated._backend._proc  # type: ignore[attr-defined]
        assert isolated.execute().success
    assert worker.poll() is not None
    with pytest.raises(UsageError, match="was closed"):
        isolated.execute()
    with pytest.raises(UsageError, match="PluginLoader was closed"):
        pl.load_plugin(build("byloader2"))
    loader = PluginLoader(KeyPolicy([key.public_key]), None, [trusted])
    with loader.load_plugin(build("byloader3")) as plugin:
        assert plugin.execute().success
    assert _mappings("libbyloader3.so") == 0


def test_close_waits_for_calls_in_flight_before_unloading(
    compat: Compat, trusted: Path, key: SigningKey
) -> None:
    # A thread-safe plugin whose call stays inside the library for ~400 ms (it waits
    # at a barrier no other call reaches); closing meanwhile must not unmap it under
    # the running call (that would crash this process).
    directory = compat("inflight", metadata=_metadata("inflight", thread_safe=True),
                       barrier_ms=400)  # fmt: skip
    plugin = PluginLoader(KeyPolicy([key.public_key]), None, [trusted]).load_plugin(directory)
    entered = threading.Event()
    results: list[object] = []

    def call() -> None:
        entered.set()
        results.append(plugin.execute().output)

    caller = threading.Thread(target=call)
    caller.start()
    entered.wait()
    plugin.close()  # returns once the call has
    caller.join()
    assert results == [{"reached": False, "max_active": 1}]
    assert _mappings("libinflight.so") == 0


def test_a_long_lived_host_stays_bounded(build: Build, trusted: Path, key: SigningKey) -> None:
    # A hot-reloading host: the same plugin and several different ones loaded and
    # closed over and over, in this process. Descriptors and mappings do not grow.
    loader = PluginLoader(KeyPolicy([key.public_key]), None, [trusted])
    directories = [build(f"longrun{i}") for i in range(8)]

    def cycle() -> None:
        for directory in directories:
            with loader.load_plugin(directory) as plugin:
                assert plugin.execute().success

    cycle()  # warm up: lazily opened descriptors and caches stay
    fds, maps = _descriptors(), _all_mappings()
    for _ in range(150):  # 1,200 loads and unloads
        cycle()
    same = [loader.load_plugin(directories[0])]
    one_copy = _mappings("liblongrun0.so")
    same += [loader.load_plugin(directories[0]) for _ in range(299)]  # one instance, 300 handles
    assert one_copy > 0
    assert _mappings("liblongrun0.so") == one_copy
    assert _all_mappings() <= maps + 16  # the 300 hold no mappings of their own
    for plugin in same:
        plugin.close()
    assert _descriptors() <= fds
    assert _all_mappings() <= maps + 4  # allocator arenas may settle; no per-load growth
    assert all(_mappings(f"liblongrun{i}.so") == 0 for i in range(8))
