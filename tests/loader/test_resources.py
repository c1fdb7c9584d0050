"""A long-lived host: descriptors stay bounded, and running out of them is a clear error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tests.loader.conftest import Build
from vtreg.loader import KeyPolicy, PluginLoader
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

# Loads every copy in this process under a small RLIMIT_NOFILE, then discovers
# them all again; prints what each load gave and what the audit sink was told.
_HOST = """
import json, resource, sys
from pathlib import Path
from vtreg.loader import KeyPolicy, PluginLoader
from vtreg.verifier.errors import VtregError
from vtreg.verifier.keys import read_public_key_file

resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
key, trusted = sys.argv[1], Path(sys.argv[2])

class Audit:
    outcomes = []
    def record(self, event):
        self.outcomes.append(event.outcome)

loader = PluginLoader(KeyPolicy([read_public_key_file(key)]), Audit(), [trusted])
loads = []
for plugin in sorted(trusted.iterdir()):
    try:
        loader.load_plugin(plugin)
        loads.append("ok")
    except VtregError as e:
        loads.append(f"{type(e).__name__}: {e}")
discovered = len(loader.discover_plugins().plugins)
print(json.dumps({"loads": loads, "audit": Audit.outcomes, "discovered": discovered}))
"""


def test_a_host_out_of_descriptors_fails_loads_clearly(
    build: Build, trusted: Path, key: SigningKey, tmp_path: Path, now: datetime
) -> None:
    original = build("vx")
    for i in range(100):  # more than 128 - 64 - 16 descriptor numbers
        copy = trusted / f"copy-{i:03}"
        shutil.copytree(original, copy)
        copy.chmod(0o755)
        # Contents of their own: the same content would share one loaded instance.
        (copy / "serial.txt").write_text(f"{i}\n")
        (copy / "plugin.sig").write_bytes(sign(capture(copy), key, at=now).envelope)
    (tmp_path / "key.pub").write_bytes(key.public_key.to_pem())

    proc = subprocess.run(
        [sys.executable, "-c", _HOST, str(tmp_path / "key.pub"), str(trusted)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr  # discover_plugins() finished
    report = json.loads(proc.stdout)
    loads = report["loads"]
    assert "ok" in loads
    failures = [load for load in loads if load != "ok"]
    assert failures  # the limit was reached
    for failure in failures:
        assert "\n" not in failure
        assert failure.startswith("LoadError: "), failure
        assert "names a library already loaded" in failure or "descriptor" in failure
    # Each load's decision is recorded before dlopen; one that then ran out of
    # descriptors is followed by its error.
    expected = [o for x in loads for o in (["allowed"] if x == "ok" else ["allowed", "error"])]
    assert report["audit"][: len(expected)] == expected


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_isolated_plugins_leave_no_descriptor_open(
    build: Build, trusted: Path, key: SigningKey
) -> None:
    loader = PluginLoader(KeyPolicy([key.public_key]), None, [trusted], isolation="process")
    plugin_dir = build()
    plugin = loader.load_plugin(plugin_dir)  # warm up: lazily opened descriptors stay
    plugin.execute()
    plugin.close()
    before = _open_descriptors()

    for _ in range(20):
        plugin = loader.load_plugin(plugin_dir)
        assert plugin.execute().success
        plugin.close()

    assert _open_descriptors() <= before
