"""A PostgreSQL that is gone, or that drops the connection mid-command: one line, exit 3.

Issue 8 found that a crashed, stopped or restarted PostgreSQL gave one-line
errors with exit 3 and no traceback. The shared server is not restarted here
(other tests use it); what a client sees of those events is made instead:
nothing listening on the port (stopped), a listener that hangs up at once
(crashed while accepting), and the server ending this very client's backend
with ``pg_terminate_backend`` in the middle of its ``trust`` transaction (what
a restart or a crash does to every open connection). Afterwards nothing of the
interrupted command is left, the chain holds, and the next command works.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import invoke_cli, ok, one_line_error, run_cli
from vtreg.registry.service import Registry

PluginFactory = Callable[..., Path]

pytestmark = pytest.mark.postgres

# Runs ``vtreg ARGS``; the server ends its connection just before its first INSERT.
_TERMINATED = textwrap.dedent(
    """
    import sys
    import psycopg
    import sqlalchemy as sa

    admin, done = sys.argv[1], []

    @sa.event.listens_for(sa.Engine, "before_cursor_execute")
    def terminate(connection, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT") and not done:
            done.append(True)
            pid = connection.connection.dbapi_connection.info.backend_pid
            with psycopg.connect(admin, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))

    from vtreg.registry.cli import main

    sys.argv = ["vtreg", *sys.argv[2:]]
    main()
    """
)


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    from tests.databases import _fresh_postgres_database

    yield from _fresh_postgres_database(postgres_server)


@pytest.fixture
def signed(plugin_factory: PluginFactory, tmp_path: Path) -> list[Path]:
    """Three plugins signed by keys/alice.key."""
    keys = tmp_path / "keys"
    keys.mkdir()
    ok(invoke_cli("keygen", "alice", "--out", keys, "--unencrypted"))
    plugins = [plugin_factory(name) for name in ("one", "two", "three")]
    for plugin in plugins:
        ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    return plugins


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once it is closed


def _hanging_up_listener() -> tuple[int, threading.Event]:
    """A port whose listener closes every connection at once; set the event to stop it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        with server:
            while not stop.is_set():
                try:
                    server.accept()[0].close()
                except TimeoutError:
                    continue

    threading.Thread(target=serve, daemon=True).start()
    return int(server.getsockname()[1]), stop


@pytest.mark.parametrize("server", ["stopped", "hanging-up"])
def test_an_unreachable_postgres_is_one_line_and_exit_3(
    postgres_url: str, signed: list[Path], tmp_path: Path, server: str
) -> None:
    home = tmp_path / "home"
    stop = threading.Event()
    if server == "stopped":
        port = _closed_port()
    else:
        port, stop = _hanging_up_listener()
    gone = sa.make_url(postgres_url).set(port=port).render_as_string(hide_password=False)
    try:
        failed = run_cli("trust", signed[0], "--db", gone, env={"VTREG_HOME": str(home)})
    finally:
        stop.set()

    one_line_error(failed, 3, rf"^vtreg: error: registry .*:{port}/.*connection")
    assert "Traceback" not in failed.stderr


def test_a_connection_ended_by_the_server_mid_trust_leaves_nothing_and_the_next_works(
    postgres_url: str, signed: list[Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {"VTREG_HOME": str(home)}
    keys = tmp_path / "keys"
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", postgres_url, env=env))
    ok(run_cli("trust", signed[0], "--db", postgres_url, env=env))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")} | env
    args = ["trust", str(signed[1]), "--db", postgres_url]
    cut = subprocess.run(
        [sys.executable, "-c", _TERMINATED, _libpq(postgres_url), *args],
        capture_output=True, text=True, env=child_env, stdin=subprocess.DEVNULL, timeout=120,
        check=False,
    )  # fmt: skip

    assert cut.returncode == 3, cut.stderr
    assert len(cut.stderr.strip().splitlines()) == 1, cut.stderr
    assert "Traceback" not in cut.stderr
    with Registry.open(postgres_url) as registry:
        assert [p.name for p in registry.plugins()] == ["one"]  # the cut trust left nothing
        assert registry.verify_audit().events == 2
    for plugin in signed[1:]:  # the next commands work, on new connections
        ok(run_cli("trust", plugin, "--db", postgres_url, env=env))
    with Registry.open(postgres_url) as registry:
        report = registry.verify_audit()
        assert report.ok, report.problem
        assert report.events == 4
        assert sorted(p.name for p in registry.plugins()) == ["one", "three", "two"]
