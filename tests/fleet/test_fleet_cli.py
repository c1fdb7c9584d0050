"""The whole fleet flow through the real CLI: publish, serve over HTTP, sync, load offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fleet.conftest import Server
from tests.helpers import example_hello, invoke_cli, ok, one_line_error


@dataclass
class Setup:
    publisher: dict[str, str]
    host: dict[str, str]
    keys: Path
    repo: Path
    state: Path
    plugin: Path

    def fleet(self, *args: str | Path) -> None:
        ok(invoke_cli("fleet", *args, env=self.publisher))


def _network_cut() -> list[str]:
    """``unshare -n``: run a command with no network at all (where this machine allows it)."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], check=False).returncode != 0:
        pytest.skip("unshare -n is not available here (needs a network namespace)")
    return [unshare, "-n"]


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    publisher = {"VTREG_HOME": str(tmp_path / "publisher")}
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("alice", "root1", "root2", "online"):
        ok(invoke_cli("keygen", name, "--out", keys, "--unencrypted"))
    plugin = example_hello(tmp_path / "plugins")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", env=publisher))
    ok(invoke_cli("trust", plugin, env=publisher))
    setup = Setup(
        publisher,
        {"VTREG_HOME": str(tmp_path / "host")},
        keys,
        tmp_path / "repo",
        tmp_path / "host.state",
        plugin,
    )
    setup.fleet(
        "init", setup.repo, "--root-key", keys / "root1.key", "--root-key", keys / "root2.key",
        "--root-threshold", "2", "--online-key", keys / "online.key",
    )  # fmt: skip
    setup.fleet("publish", setup.repo)
    return setup


def _sync(setup: Setup, url: str, *extra: str) -> dict[str, object]:
    result = invoke_cli(
        "fleet", "sync", url, "--state", setup.state, "--root", setup.repo / "1.root.json",
        "--json", *extra, env=setup.host,
    )  # fmt: skip
    document: dict[str, object] = result.json()
    document["exit_code"] = result.code
    return document


def test_publish_serve_sync_and_load_with_the_network_cut(
    setup: Setup, serve: Callable[[Path], Server], tmp_path: Path
) -> None:
    server = serve(setup.repo)
    synced = _sync(setup, server.url)
    assert synced["ok"]
    assert synced["changed"]

    status = ok(invoke_cli("fleet", "status", "--state", setup.state, "--json", env=setup.host))
    assert status.json()["contents"] == 1
    assert status.json()["roles"]["timestamp"]["version"] == 1

    # No publisher database and no network from here on.
    shutil.move(setup.publisher["VTREG_HOME"], tmp_path / "elsewhere")
    cut = _network_cut()
    base = [*cut, sys.executable, "-m", "vtreg"]
    env = {"PATH": "/usr/bin:/bin", **setup.host}
    verified = subprocess.run(
        [*base, "verify", str(setup.plugin), "--fleet", str(setup.state)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    ran = subprocess.run(
        [*base, "run", str(setup.plugin), "--fleet", str(setup.state), "--input", '{"name": "Ada"}'],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Hello, Ada!" in ran.stdout

    audit_db = f"sqlite:///{setup.host['VTREG_HOME']}/fleet-audit.db"
    events = ok(invoke_cli("audit", "--db", audit_db, "--json", env=setup.host)).json()["events"]
    assert [(e["action"], e["outcome"], e["plugin"]) for e in events] == [
        ("plugin.load", "allowed", "hello")
    ]


def test_a_revocation_reaches_the_host_at_its_next_sync(
    setup: Setup, serve: Callable[[Path], Server]
) -> None:
    server = serve(setup.repo)
    _sync(setup, server.url)
    ok(invoke_cli("verify", setup.plugin, "--fleet", setup.state, env=setup.host))
    ok(invoke_cli("revoke", "hello", "--reason", "recalled", env=setup.publisher))
    setup.fleet("publish", setup.repo)
    assert _sync(setup, server.url)["changed"]
    one_line_error(
        invoke_cli("verify", setup.plugin, "--fleet", setup.state, env=setup.host),
        1,
        r"refused: hello 1\.0\.0 was revoked .*recalled",
    )


def test_sync_exit_codes_name_the_attack_and_keep_the_state(
    setup: Setup, serve: Callable[[Path], Server], tmp_path: Path
) -> None:
    assert _sync(setup, str(setup.repo))["exit_code"] == 0  # a directory works as well
    before = setup.state.read_bytes()
    setup.fleet("refresh", setup.repo)
    (setup.repo / "timestamp.json").write_bytes(
        (setup.repo / "timestamp.json").read_bytes().replace(b'"version":2', b'"version":9')
    )
    refused = _sync(setup, serve(setup.repo).url)
    assert refused["exit_code"] == 1
    assert refused["error"]["code"] == "metadata-unsigned"  # type: ignore[index]
    assert "arbitrary metadata" in refused["error"]["message"]  # type: ignore[index]
    assert setup.state.read_bytes() == before

    unreachable = _sync(setup, "http://127.0.0.1:9/")
    assert unreachable["exit_code"] == 3
    assert setup.state.read_bytes() == before


def test_an_expired_state_is_refused_unless_a_grace_allows_it(setup: Setup) -> None:
    setup.fleet("publish", setup.repo, "--timestamp-expires", "1s")
    _sync(setup, str(setup.repo))
    import time

    time.sleep(1.1)  # the only way for a separate process's clock to be past the expiry
    result = invoke_cli("--json", "verify", setup.plugin, "--fleet", setup.state, env=setup.host)
    assert result.code == 1
    assert result.json()["error"]["code"] == "trust-expired"
    ok(invoke_cli("verify", setup.plugin, "--fleet", setup.state, "--grace", "1h", env=setup.host))
    audit_db = f"sqlite:///{setup.host['VTREG_HOME']}/fleet-audit.db"
    events = ok(invoke_cli("audit", "--db", audit_db, "--json", env=setup.host)).json()["events"]
    assert [e["action"] for e in events] == ["fleet.last-known-good"]


def test_the_load_path_never_imports_tuf(setup: Setup) -> None:
    _sync(setup, str(setup.repo))
    script = f"""
import sys
from vtreg.loader import PluginLoader
from vtreg.registry.fleet import FleetTrust
from vtreg.registry.cli import run
loader = PluginLoader(FleetTrust({str(setup.state)!r}), None, [{str(setup.plugin.parent)!r}])
loader.load_plugin({str(setup.plugin)!r})
assert run(["verify", {str(setup.plugin)!r}, "--fleet", {str(setup.state)!r}]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tuf", "securesystemslib")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=setup.host, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_bad_input_is_one_line(setup: Setup, tmp_path: Path) -> None:
    one_line_error(
        invoke_cli("fleet", "status", "--state", tmp_path / "none", env=setup.host),
        3,
        r"fleet state .* does not exist",
    )
    (tmp_path / "junk").write_text("{}")
    one_line_error(
        invoke_cli("verify", setup.plugin, "--fleet", tmp_path / "junk", env=setup.host),
        3,
        r"cannot decide: .* is not a vtreg fleet state",
    )
    one_line_error(
        invoke_cli("fleet", "init", setup.repo, "--root-key", setup.keys / "root1.key",
                   "--online-key", setup.keys / "online.key"),
        2,
        r"exists and is not an empty directory",
    )  # fmt: skip
    one_line_error(
        invoke_cli("fleet", "publish", setup.repo, "--timestamp-expires", "soon"),
        2,
        r"not a duration",
    )


def test_rotate_root_and_the_online_key_through_the_cli(setup: Setup) -> None:
    _sync(setup, str(setup.repo))
    for name in ("root3", "online2"):
        ok(invoke_cli("keygen", name, "--out", setup.keys, "--unencrypted"))
    rotated = invoke_cli(
        "fleet", "rotate-root", setup.repo, "--old-key", setup.keys / "root1.key",
        "--old-key", setup.keys / "root2.key", "--root-key", setup.keys / "root3.key",
        "--online-key", setup.keys / "online2.key", env=setup.publisher,
    )  # fmt: skip
    ok(rotated)
    assert "run `vtreg fleet publish` now" in rotated.stderr
    setup.fleet("publish", setup.repo)
    synced = _sync(setup, str(setup.repo))
    assert synced["exit_code"] == 0
    assert synced["roles"]["root"]["version"] == 2  # type: ignore[index]
    ok(invoke_cli("verify", setup.plugin, "--fleet", setup.state, env=setup.host))
    status = ok(invoke_cli("fleet", "status", "--state", setup.state, env=setup.host))
    assert "root v2" in status.stdout
    one_line_error(
        invoke_cli("fleet", "rotate-root", setup.repo, "--old-key", setup.keys / "root1.key",
                   "--root-key", setup.keys / "root1.key", env=setup.publisher),
        2,
        r"root v2 needs 1 of its keys to sign the next root; 0 given",
    )  # fmt: skip
