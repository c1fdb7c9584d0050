"""The README's least-privilege PostgreSQL role for hosts that only load, run as written."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.databases import _admin_engine, _fresh_postgres_database
from tests.helpers import invoke_cli, ok, one_line_error
from vtreg.loader.protocols import AuditEvent
from vtreg.registry.service import Registry

README = Path(__file__).parents[2] / "README.md"
HEADING = "### A least-privilege PostgreSQL role for hosts that only load"


def _grants() -> list[str]:
    """The SQL statements of the README's section, in order."""
    section = README.read_text().split(HEADING, 1)[1]
    block = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's role section has no sql block"
    return [s.strip() for s in block[1].split(";") if s.strip()]


@pytest.fixture
def owner_url(postgres_server: str) -> Iterator[str]:
    yield from _fresh_postgres_database(postgres_server)


@pytest.fixture
def host_url(owner_url: str) -> Iterator[str]:
    """``owner_url`` as a new role made by the README's statements (dropped afterwards)."""
    role = f"vtreg_host_{secrets.token_hex(4)}"
    database = sa.make_url(owner_url).database
    ok(invoke_cli("db", "upgrade", "--db", owner_url))
    engine = _admin_engine(owner_url)
    try:
        with engine.connect() as connection:
            for statement in _grants():
                statement = statement.replace("vtreg_host", role)
                statement = statement.replace("DATABASE vtreg ", f'DATABASE "{database}" ')
                connection.execute(sa.text(statement))
        yield sa.make_url(owner_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP OWNED BY "{role}"'))
            connection.execute(sa.text(f'DROP ROLE "{role}"'))
        engine.dispose()


@pytest.mark.postgres
def test_a_host_role_loads_and_is_audited_but_cannot_trust(
    owner_url: str,
    host_url: str,
    keys: Path,
    plugin_factory: Callable[..., Path],
    tmp_path: Path,
) -> None:
    plugin = plugin_factory("hello", parent=tmp_path / "plugins")
    other = plugin_factory("other", parent=tmp_path / "plugins")
    for directory in (plugin, other):
        ok(invoke_cli("sign", directory, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", "--db", owner_url))
    ok(invoke_cli("trust", plugin, "--db", owner_url))

    ran = ok(invoke_cli("run", plugin, "--input", '{"name": "Ada"}', "--db", host_url))
    refused = invoke_cli("trust", other, "--db", host_url)
    key_refused = invoke_cli("key", "add", keys / "bob.pub", "--db", host_url)
    events = ok(invoke_cli("audit", "--json", "--db", owner_url)).json()["events"]

    assert "Ada" in ran.stdout
    one_line_error(refused, 3, "permission denied")
    one_line_error(key_refused, 3, "permission denied")
    assert [(e["action"], e["outcome"], e["plugin"]) for e in events[:1]] == [
        ("plugin.load", "allowed", "hello")  # the host's decision, in the owner's log
    ]
    assert not [e for e in events if e["plugin"] == "other"]
    assert ok(invoke_cli("audit", "verify", "--json", "--db", owner_url)).json()["intact"]


@pytest.mark.postgres
def test_a_host_role_fills_the_merkle_tiles_of_its_events(owner_url: str, host_url: str) -> None:
    # Every 256th event writes the level-0 tile it fills, from its events' leaf hashes.
    with Registry.open(host_url) as registry:
        for _ in range(257):
            registry.record(AuditEvent("plugin.load", "allowed", plugin="hello"))
    with Registry.open(owner_url) as registry, registry.snapshot() as connection:
        assert registry.verify_audit().ok
        tiles = connection.execute(sa.text("SELECT level, idx FROM audit_tiles ORDER BY 1, 2"))
        assert [tuple(row) for row in tiles] == [(0, 0), (1, 0)]
