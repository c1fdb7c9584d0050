"""The registry database's edges: who may write it, what it is, how long it waits, read-only."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.databases import chain_head_held
from tests.helpers import c_string, invoke_cli, ok, one_line_error, run_cli
from tests.registry.conftest import SignedPlugin
from vtreg.registry import sqlite_file
from vtreg.registry.service import Registry
from vtreg.verifier.errors import RegistryError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.tree import capture

OTHER_UID = 12345  # any uid but this process's and root's


def _sqlite_registry(tmp_path: Path) -> tuple[Path, str]:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "registry.db"
    Registry.open(f"sqlite:///{path}").close()
    return path, f"sqlite:///{path}"


# --- who can write the trust store ---


@pytest.mark.parametrize("target", ["directory", "file", "-wal", "-shm"])
@pytest.mark.parametrize(
    ("attack", "message"),
    [
        pytest.param(
            "other-owner", f"belongs to uid {OTHER_UID}, not to this user", id="other-owner"
        ),
        pytest.param(0o020, r"is group- or world-writable \(0\d[2367]\d\)", id="group-writable"),
        pytest.param(0o002, r"is group- or world-writable \(0\d\d[2367]\)", id="world-writable"),
    ],
)
def test_a_registry_someone_else_could_swap_is_refused(
    tmp_path: Path, target: str, attack: str | int, message: str
) -> None:
    path, url = _sqlite_registry(tmp_path)
    ok(invoke_cli("list", "--db", url))  # the control: as created, it is fine
    victim = {"directory": path.parent, "file": path}.get(
        target, path.with_name(path.name + target)
    )
    if not victim.exists():  # a -wal or -shm left behind (SQLite removes them on close)
        victim.touch(mode=0o600)
    if attack == "other-owner":
        if os.geteuid() != 0:
            pytest.skip("giving a file to another user needs root")
        os.chown(victim, OTHER_UID, OTHER_UID)
    else:
        assert isinstance(attack, int)
        victim.chmod(victim.stat().st_mode | attack)
    what = "directory" if target == "directory" else "file"

    for args in (["list"], ["audit", "verify", "--json"]):
        one_line_error(invoke_cli(*args, "--db", url), 3, f"the registry {what} .*{message}")
    with pytest.raises(RegistryError, match=message):
        Registry.open(url)


def test_a_new_registry_is_private_whatever_the_umask(tmp_path: Path) -> None:
    home = tmp_path / "home"
    previous = os.umask(0)
    try:
        ok(invoke_cli("db", "upgrade", env={"VTREG_HOME": str(home)}))  # a command that creates it
        with Registry.open(f"sqlite:///{home / 'registry.db'}") as registry:
            registry.list_keys()  # while it is open, the -wal and -shm exist
            modes = {p.name: p.stat().st_mode & 0o777 for p in home.iterdir()}
    finally:
        os.umask(previous)
    assert home.stat().st_mode & 0o777 == 0o700
    assert modes == {"registry.db": 0o600, "registry.db-wal": 0o600, "registry.db-shm": 0o600}


# --- a file that is not a registry is refused, never re-created ---


def _empty_sqlite_database(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE t (x)")
        connection.execute("DROP TABLE t")
        connection.commit()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"S", id="one-byte"),
        pytest.param(b"SQLite format", id="truncated-header"),
        pytest.param(b"\x00" * 4096, id="zeros"),
        pytest.param(os.urandom(8192), id="garbage"),
        pytest.param(None, id="empty-sqlite-database"),
    ],
)
def test_a_file_that_is_not_a_registry_is_refused_never_recreated(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "registry.db"
    if content is None:
        _empty_sqlite_database(path)
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    url = f"sqlite:///{path}"

    for args in (["audit", "verify"], ["key", "list", "--json"], ["db", "upgrade"]):
        one_line_error(invoke_cli(*args, "--db", url), 3, "is not a vtreg registry")
    with pytest.raises(RegistryError, match="not a vtreg registry"):
        Registry.open(url)

    if content is not None:
        assert path.read_bytes() == before
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        if content is None:
            assert connection.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_a_missing_file_is_created_complete(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    ok(invoke_cli("db", "upgrade", "--db", url))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.db"]  # no scratch file left
    with contextlib.closing(sqlite3.connect(tmp_path / "registry.db")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


# --- lock waits are bounded ---


def test_a_held_chain_head_lock_ends_in_could_not_decide(
    database_url: str, key: SigningKey, signed_plugin: SignedPlugin
) -> None:
    plugin = signed_plugin("hello", "1.0.0", key)
    with Registry.open(database_url) as registry:
        registry.add_key(key.public_key)
    env = {"VTREG_LOCK_TIMEOUT": "1"}

    with chain_head_held(database_url):
        for command in ("trust", "verify", "run"):
            # A child process, so that a wait that is not bounded fails the test, not hangs it.
            try:
                result = run_cli(command, plugin, "--db", database_url, env=env, timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"vtreg {command} was still waiting for the lock after 60 s")
            one_line_error(
                result, 3, r"gave up waiting for a lock after 1 s \(VTREG_LOCK_TIMEOUT\)"
            )

    ok(invoke_cli("trust", plugin, "--db", database_url, env=env))  # the lock released
    with Registry.open(database_url) as registry:
        assert registry.verify_audit().events == 2  # the key and the trust: nothing half-written
        assert [p.version for p in registry.plugins(name="hello")] == ["1.0.0"]


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf", "1e9"])
def test_a_bad_lock_timeout_is_a_usage_error(database_url: str, value: str) -> None:
    one_line_error(
        invoke_cli("list", "--db", database_url, env={"VTREG_LOCK_TIMEOUT": value}),
        2,
        "VTREG_LOCK_TIMEOUT must be a number of seconds above 0",
    )


# --- a read-only registry can still be read ---


def _chattr(flag: str, path: Path) -> bool:
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


@contextlib.contextmanager
def _frozen(path: Path, frozen: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SQLite registry at ``path`` made unwritable while the block runs: ``file`` or
    ``directory`` immutable (``chattr +i``), ``detected`` read-only by its modes, the
    detection told so (as it would find for any user but root)."""
    if frozen == "detected":
        path.chmod(0o400)
        path.parent.chmod(0o500)
        monkeypatch.setattr(sqlite_file, "writable", lambda _: False)
    target = path if frozen == "file" else path.parent
    if frozen != "detected" and not _chattr("+i", target):
        pytest.skip("chattr +i is not available here")
    try:
        assert frozen == "detected" or not os.access(target, os.W_OK)
        yield
    finally:
        if frozen != "detected":
            _chattr("-i", target)
        path.parent.chmod(0o700)


@pytest.mark.parametrize("frozen", ["file", "directory", "detected"])
def test_a_read_only_registry_can_still_be_read(
    tmp_path: Path,
    key: SigningKey,
    signed_plugin: SignedPlugin,
    frozen: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``file``/``directory``: made immutable (``chattr +i``), which stops root too;
    ``detected``: chmod 0400 in a 0500 directory, which does not stop root, so the
    detection is told so (as it would find for any other user)."""
    path, url = _sqlite_registry(tmp_path)
    plugin = signed_plugin("hello", "1.0.0", key)
    newer = signed_plugin("hello", "2.0.0", key)
    with Registry.open(url) as registry:
        registry.add_key(key.public_key)
        registry.trust(capture(plugin))
    before = path.read_bytes()
    with _frozen(path, frozen, monkeypatch):
        listed = ok(invoke_cli("list", "--db", url, "--json")).json()["plugins"]
        events = ok(invoke_cli("audit", "--db", url, "--json")).json()["events"]
        intact = ok(invoke_cli("audit", "verify", "--db", url))
        keys = ok(invoke_cli("key", "list", "--db", url, "--json")).json()["keys"]
        one_line_error(invoke_cli("trust", newer, "--db", url), 3, "readonly database")
    assert [p["name"] for p in listed] == ["hello"]
    assert [e["action"] for e in events] == ["plugin.trust", "key.add"]
    assert intact.stdout.startswith("audit log intact: 2 events")
    assert len(keys) == 1
    assert path.read_bytes() == before


# --- vtreg run on a registry it cannot write: one wait, one line, nothing loaded ---


def _marked_plugin(signed_plugin: SignedPlugin, key: SigningKey, marker: Path) -> Path:
    """A signed plugin whose ELF constructor creates ``marker`` when it is loaded."""
    defines = {"MARKER": c_string(str(marker))}
    plugin = signed_plugin("hello", "1.0.0", key, source="variants.c", defines=defines)
    plugin.chmod(0o755)
    return plugin


def test_run_on_a_locked_registry_waits_once_and_loads_nothing(
    database_url: str, key: SigningKey, signed_plugin: SignedPlugin, tmp_path: Path
) -> None:
    marker = tmp_path / "constructor-ran"
    plugin = _marked_plugin(signed_plugin, key, marker)
    with Registry.open(database_url) as registry:
        registry.add_key(key.public_key)
        registry.trust(capture(plugin))

    with chain_head_held(database_url):
        try:
            result = run_cli(
                "run", plugin, "--db", database_url, env={"VTREG_LOCK_TIMEOUT": "1"}, timeout=60
            )
        except subprocess.TimeoutExpired:
            pytest.fail("vtreg run was still waiting for the lock after 60 s")
    # One line: the allowed decision could not be recorded, and that write was not retried
    # as a second "could not audit" wait and warning.
    one_line_error(result, 3, r"gave up waiting for a lock after 1 s \(VTREG_LOCK_TIMEOUT\)")
    assert not marker.exists(), "a load whose decision was not recorded ran the plugin"

    ok(run_cli("run", plugin, "--db", database_url))  # the control: the lock released
    assert marker.exists()
    with Registry.open(database_url) as registry:
        report = registry.verify_audit()
        assert report.events == 3  # the key, the trust, the control's load: nothing else
        assert report.ok


@pytest.mark.parametrize("frozen", ["file", "directory", "detected"])
def test_run_on_a_read_only_registry_is_one_line_and_loads_nothing(
    tmp_path: Path,
    key: SigningKey,
    signed_plugin: SignedPlugin,
    frozen: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in :func:`test_a_read_only_registry_can_still_be_read`: ``file``/``directory``
    immutable (``chattr +i``), ``detected`` read-only by its modes, for root too."""
    path, url = _sqlite_registry(tmp_path)
    marker = tmp_path / "constructor-ran"
    plugin = _marked_plugin(signed_plugin, key, marker)
    with Registry.open(url) as registry:
        registry.add_key(key.public_key)
        registry.trust(capture(plugin))
    before = path.read_bytes()
    with _frozen(path, frozen, monkeypatch):
        # In this process: the detection is told the file is read-only, as it would find
        # for any user but root.
        result = invoke_cli("run", plugin, "--db", url)
    one_line_error(result, 3, "readonly database")
    assert not marker.exists(), "a load whose decision was not recorded ran the plugin"
    assert path.read_bytes() == before


# --- a corrupt row is named, never decided from ---

_KEY_ROW = r"the registry's keys row {keyid} is corrupt: "
_PLUGIN_ROW = r"the registry's plugins row {digest} is corrupt: "
_COMMANDS = ("verify", "list", "key list", "run")


@pytest.mark.parametrize(
    ("corruption", "params", "refused_by", "message"),
    [
        pytest.param(
            "UPDATE keys SET public_key = :b",
            {"b": b"\x01\x02"},
            {"verify", "run"},  # list and key list show keys; they never verify with one
            _KEY_ROW + "public_key is not a usable public key",
            id="keys.public_key",
        ),
        pytest.param(
            "UPDATE keys SET scopes = 'not json'",
            {},
            set(_COMMANDS),
            _KEY_ROW + r"scopes 'not json' is not a JSON list of names",
            id="keys.scopes-not-json",
        ),
        pytest.param(
            "UPDATE keys SET scopes = '[1]'",
            {},
            set(_COMMANDS),
            _KEY_ROW + r"scopes '\[1\]' is not a JSON list of names",
            id="keys.scopes-not-names",
        ),
        pytest.param(
            "UPDATE plugins SET version = 'x.y'",
            {},
            {"verify", "run"},  # list shows the version as stored (docs/decisions.md)
            _PLUGIN_ROW + r"version 'x.y' is not a semantic version",
            id="plugins.version",
        ),
        pytest.param(
            "UPDATE plugins SET threshold = -5",
            {},
            {"verify", "list", "run"},
            _PLUGIN_ROW + r"threshold -5 is not a whole number of at least 1",
            id="plugins.threshold-negative",
        ),
        pytest.param(
            "UPDATE plugins SET threshold = 0",
            {},
            {"verify", "list", "run"},
            _PLUGIN_ROW + r"threshold 0 is not a whole number of at least 1",
            id="plugins.threshold-zero",
        ),
    ],
)
def test_a_corrupt_row_is_named_and_decides_nothing(
    database_url: str,
    key: SigningKey,
    signed_plugin: SignedPlugin,
    corruption: str,
    params: dict[str, bytes],
    refused_by: set[str],
    message: str,
) -> None:
    plugin = signed_plugin("hello", "1.0.0", key)
    with Registry.open(database_url) as registry:
        registry.add_key(key.public_key)
        digest = registry.trust(capture(plugin)).plugin.content_digest
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(corruption), params)
    finally:
        engine.dispose()
    pattern = "^vtreg: error: could not decide: " + message.format(keyid=key.keyid, digest=digest)

    for command in _COMMANDS:
        # The real command line, in its own process: verify's early capture included.
        result = run_cli(
            *command.split(),
            *([plugin] if command in ("verify", "run") else []),
            "--db",
            database_url,
        )
        if command in refused_by:
            one_line_error(result, 3, pattern)
            assert result.stdout == "", (command, result.stdout)  # run: nothing loaded
        else:
            ok(result)
    with Registry.open(database_url) as registry:
        outcomes = [(e.action, e.outcome) for e in registry.audit_events()]
    assert ("plugin.load", "allowed") not in outcomes  # no load was decided from the row
