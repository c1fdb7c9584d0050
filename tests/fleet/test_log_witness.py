"""Every syncing host is a witness: the timestamp's checkpoint must extend the last one seen.

The publisher puts the audit log's latest signed checkpoint into the fleet
timestamp and serves the log's tiles under ``log/``; a host that syncs with
the log's vkey refuses a checkpoint that is missing, signed by another key,
smaller than the last one it accepted, or of another history (a fork, with
evidence anyone can check). Each refusal leaves the state file unchanged.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Timestamp

from tests.cli.json_shapes import Checker
from tests.fleet.conftest import Fleet, Server, mirror, resign, utc_now
from tests.helpers import invoke_cli, ok
from vtreg.loader.protocols import AuditEvent
from vtreg.registry.checkpoints import gather_cosignatures, init_log, sign_checkpoint
from vtreg.registry.export import export_tiles
from vtreg.registry.fleet.repository import CHECKPOINT_FIELD, LOG_DIR, refresh
from vtreg.registry.fleet.state import read_fleet_state
from vtreg.registry.service import Registry
from vtreg.registry.tlog import TreeReader
from vtreg.registry.witness import Witness
from vtreg.registry.witness import serve as serve_witness
from vtreg.verifier.errors import LogError, UsageError
from vtreg.verifier.fork import ForkError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.note import ED25519, Checkpoint, Note, NoteVerifier, parse_note
from vtreg.verifier.policy import Policy

ORIGIN = "example.com/vtreg-audit"


class Log:
    """A registry's audit log with its log key; checkpoints signed as `vtreg audit checkpoint`."""

    def __init__(self, registry: Registry, key: SigningKey, state: Path) -> None:
        self.registry, self.key, self.state = registry, key, state
        init_log(registry, key, ORIGIN, state, new_log=True)  # the fleet registry has events
        self.vkey = NoteVerifier(ORIGIN, ED25519, key.public_key).vkey

    def grow(self, count: int, tag: str = "p") -> bytes:
        """Append ``count`` events and sign a checkpoint of the whole log."""
        for i in range(count):
            self.registry.record(AuditEvent("plugin.load", "allowed", plugin=f"{tag}{i}"))
        note = sign_checkpoint(self.registry, self.key, self.state, at=utc_now())
        assert note is not None
        return note.to_bytes()

    def export(self, directory: Path, note: bytes) -> None:
        with self.registry.snapshot() as connection:
            export_tiles(connection, note, directory)


@pytest.fixture
def log(fleet: Fleet, tmp_path: Path) -> Log:
    return Log(fleet.registry, SigningKey.generate("log"), tmp_path / "log-signer.json")


def size(note: bytes) -> int:
    return Checkpoint.parse(parse_note(note).text).size


def publish(fleet: Fleet, log: Log, note: bytes) -> None:
    log.export(fleet.repo.path / LOG_DIR, note)
    fleet.publish(checkpoint=note)


def restamp(directory: Path, fleet: Fleet, edit: Callable[[Timestamp], None]) -> None:
    """The attacker (with the online key) re-signs the mirror's timestamp, one version up."""

    def change(signed: Timestamp) -> None:
        signed.version += 1
        edit(signed)

    resign(directory / "timestamp.json", [fleet.online], change)


def carry(note: bytes | None) -> Callable[[Timestamp], None]:
    def edit(signed: Timestamp) -> None:
        signed.unrecognized_fields.pop(CHECKPOINT_FIELD, None)
        if note is not None:
            signed.unrecognized_fields[CHECKPOINT_FIELD] = note.decode()

    return edit


def test_a_host_keeps_the_latest_checkpoint_and_checks_each_new_one_over_http(
    fleet: Fleet, log: Log, serve: Callable[[Path], Server]
) -> None:
    server = serve(fleet.repo.path)
    first = log.grow(3)
    publish(fleet, log, first)
    fleet.sync(server.url, log=log.vkey)
    assert read_fleet_state(str(fleet.state)).checkpoint == first.decode()
    second = log.grow(600)  # the proof from 3+ events to 600+ needs tiles at two levels
    publish(fleet, log, second)
    result = fleet.sync(server.url)  # the state keeps the log key: no --log needed again
    state = read_fleet_state(str(fleet.state))
    assert (state.log, state.checkpoint) == (log.vkey, second.decode())
    assert result.downloaded > 256 * 32  # it read at least one full tile
    again = fleet.sync(server.url)
    assert again.downloaded < 1024  # nothing new: the timestamp alone, no tile


def test_a_refresh_keeps_the_checkpoint_when_given_none(fleet: Fleet, log: Log) -> None:
    note = log.grow(2)
    publish(fleet, log, note)
    refresh(fleet.repo, fleet.signer, at=utc_now(), timestamp_expires=timedelta(days=1))
    fleet.sync(log=log.vkey)
    assert read_fleet_state(str(fleet.state)).checkpoint == note.decode()


def refused(fleet: Fleet, source: Path | str, code: str, **kwargs: Any) -> LogError:
    before = fleet.state.read_bytes()
    with pytest.raises(LogError) as caught:
        fleet.sync(source, **kwargs)
    assert caught.value.code == code
    assert fleet.state.read_bytes() == before  # a refused sync changes nothing
    return caught.value


def test_a_rolled_back_checkpoint_is_refused(fleet: Fleet, log: Log, tmp_path: Path) -> None:
    old = log.grow(5)
    publish(fleet, log, old)
    publish(fleet, log, log.grow(5))
    fleet.sync(log=log.vkey)  # the host has seen 10 events
    attack = mirror(fleet, tmp_path)
    restamp(attack, fleet, carry(old))  # a new timestamp naming the 5-event checkpoint
    error = refused(fleet, attack, "log-rollback")
    assert f"fewer than the {size(old) + 5}" in str(error)


def test_a_checkpoint_signed_by_an_unknown_key_is_refused(
    fleet: Fleet, log: Log, tmp_path: Path
) -> None:
    publish(fleet, log, log.grow(2))
    fleet.sync(log=log.vkey)
    impostor = Log(
        Registry.open(f"sqlite:///{tmp_path / 'other.db'}"),
        SigningKey.generate("impostor"),
        tmp_path / "impostor.json",
    )
    forged = impostor.grow(4)  # same origin, another key: signed-note ignores its line
    attack = mirror(fleet, tmp_path)
    restamp(attack, fleet, carry(forged))
    refused(fleet, attack, "log-signature")
    impostor.registry.close()


def test_a_missing_checkpoint_is_refused_once_the_host_witnesses_the_log(
    fleet: Fleet, log: Log, tmp_path: Path
) -> None:
    fleet.publish()  # a registry without a checkpoint yet
    with pytest.raises(LogError, match="carries no checkpoint") as caught:
        fleet.sync(log=log.vkey)  # the first sync already demands it
    assert caught.value.code == "log-checkpoint-missing"
    assert not fleet.state.exists()
    publish(fleet, log, log.grow(2))
    fleet.sync(log=log.vkey)
    attack = mirror(fleet, tmp_path)
    restamp(attack, fleet, carry(None))  # the checkpoint stripped from a re-signed timestamp
    refused(fleet, attack, "log-checkpoint-missing")  # demanded without --log: the state says so


def test_tiles_that_do_not_prove_the_new_root_are_refused(
    fleet: Fleet, log: Log, tmp_path: Path
) -> None:
    publish(fleet, log, log.grow(3))
    fleet.sync(log=log.vkey)
    note = log.grow(3)
    publish(fleet, log, note)
    attack = mirror(fleet, tmp_path)
    tile = attack / LOG_DIR / "tile" / "0" / f"000.p/{size(note)}"
    tile.write_bytes(bytes(32) + tile.read_bytes()[32:])  # the tiles are not signed: edit one
    refused(fleet, attack, "log-inconsistent")


def fork(fleet: Fleet, log: Log, tmp_path: Path, wanted: int) -> tuple[Path, bytes]:
    """A split view: another history of ``wanted`` events signed with the same log key
    (a stolen key, or a signer state reset), served by a mirror with its own tiles."""
    other = Registry.open(f"sqlite:///{tmp_path / 'fork.db'}")
    forked = Log(other, log.key, tmp_path / "fork-signer.json")
    with other.snapshot() as connection:
        start = TreeReader(connection).size()
    note = forked.grow(wanted - start, tag="forged")
    attack = mirror(fleet, tmp_path)
    shutil.rmtree(attack / LOG_DIR)
    forked.export(attack / LOG_DIR, note)
    other.close()
    restamp(attack, fleet, carry(note))
    return attack, note


@pytest.mark.parametrize("more", [0, 300], ids=["same-size", "larger-tree"])
def test_two_hosts_shown_two_histories_catch_the_fork_with_evidence(
    fleet: Fleet, log: Log, tmp_path: Path, more: int
) -> None:
    honest = log.grow(4)
    publish(fleet, log, honest)
    fleet.sync(log=log.vkey)  # host 1 sees the honest history
    attack, forged = fork(fleet, log, tmp_path, size(honest) + more)
    host2 = tmp_path / "host2.state"
    fleet.sync(attack, log=log.vkey, state=host2)  # host 2, new, sees only the forged one
    assert read_fleet_state(str(host2)).checkpoint == forged.decode()
    error = refused(fleet, attack, "log-fork")  # shown the forged one, host 1 catches it
    assert isinstance(error, ForkError)
    policy = Policy((NoteVerifier.parse(log.vkey),))
    older, newer = error.evidence.check(policy)  # evidence anyone with the vkey can check
    assert (older.size, newer.size) == (size(honest), size(forged))
    assert error.evidence.older == honest
    # and host 2, once shown the honest history grown past it, catches it as well
    publish(fleet, log, log.grow(200))  # (this timestamp has the forged one's version:
    publish(fleet, log, log.grow(200))  # ngclient keeps the one it has; the next one counts)
    before = host2.read_bytes()
    with pytest.raises(ForkError) as caught:
        fleet.sync(state=host2)
    assert caught.value.code == "log-fork"
    assert host2.read_bytes() == before
    caught.value.evidence.check(policy)


def test_the_cli_publishes_the_checkpoint_and_prints_a_fork_s_evidence(
    fleet: Fleet, log: Log, tmp_path: Path
) -> None:
    """`fleet publish` carries the checkpoint and tiles; `fleet sync --log` witnesses it."""
    db = ("--db", f"sqlite:///{tmp_path / 'registry.db'}")
    env = {"VTREG_HOME": str(tmp_path / "home")}
    log.grow(3)
    ok(invoke_cli("fleet", "publish", fleet.repo.path, *db, env=env))
    assert (fleet.repo.path / LOG_DIR / "checkpoint").exists()
    check = Checker(env)
    host = ("--state", fleet.state, "--root", fleet.repo.path / "1.root.json")
    sync = ("fleet", "sync", fleet.repo.path, *host)
    first = check("fleet sync", *sync, "--log", log.vkey)
    assert first["checkpoint"] == size(log.grow(0))
    log.grow(2)
    ok(invoke_cli("fleet", "refresh", fleet.repo.path, env=env))  # no --db: the same checkpoint
    assert check("fleet sync", *sync)["checkpoint"] == first["checkpoint"]
    ok(invoke_cli("fleet", "refresh", fleet.repo.path, *db, env=env))  # cron: the new checkpoint
    assert check("fleet sync", *sync)["checkpoint"] == first["checkpoint"] + 2
    attack, _ = fork(fleet, log, tmp_path, first["checkpoint"] + 2)
    before = fleet.state.read_bytes()
    forked = check("fleet sync", "fleet", "sync", attack, *host, code=1)
    assert (forked["fork"], forked["error"]["code"]) == (True, "log-fork")
    text = invoke_cli("fleet", "sync", attack, *host, env=env)
    assert text.code == 1
    assert "FORK" in text.stdout
    assert "checkpoint (larger tree):" in text.stdout
    assert fleet.state.read_bytes() == before


@pytest.fixture
def witness_url(log: Log, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real tlog-witness of the log on 127.0.0.1: its vkey and URL."""
    key = SigningKey.generate("witness")
    (tmp_path / "witness").mkdir()
    logs = [NoteVerifier.parse(log.vkey)]
    witness = Witness(key, "witness.example.com/w1", logs, tmp_path / "witness")
    server = serve_witness(witness, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield witness.vkey, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def cosigned(log: Log, note: bytes, policy: str) -> bytes:
    """``note`` with the cosignatures its policy's witnesses return (as `checkpoint --policy`)."""
    with_lines, problems = gather_cosignatures(log.registry, parse_note(note), Policy.parse(policy))
    assert problems == []
    return with_lines.to_bytes()


def test_a_host_with_a_policy_needs_its_witnesses_quorum(
    fleet: Fleet,
    log: Log,
    serve: Callable[[Path], Server],
    witness_url: tuple[str, str],
    tmp_path: Path,
) -> None:
    server = serve(fleet.repo.path)
    vkey, url = witness_url
    policy = f"log {log.vkey}\nwitness w1 {vkey} {url}\nquorum w1\n"
    first = log.grow(3)
    publish(fleet, log, first)  # signed by the log key, cosigned by nobody
    fleet.sync(server.url, log=log.vkey)  # a host that needs no witness accepts it
    error = refused(fleet, server.url, "log-quorum", policy=policy)
    assert "cosigned by 0 known witnesses" in str(error)
    first_cosigned = cosigned(log, first, policy)
    publish(fleet, log, first_cosigned)
    fleet.sync(server.url, policy=policy)
    assert read_fleet_state(str(fleet.state)).log == policy  # kept: later syncs demand it
    second = log.grow(2)
    publish(fleet, log, second)
    refused(fleet, server.url, "log-quorum")  # no --policy given: the state's holds
    refused(fleet, server.url, "log-quorum", log=log.vkey)  # --log of its key keeps it
    # A stale cosignature (the witness's line for the first checkpoint) moved onto the
    # second: it does not verify for it, so it cannot count towards the quorum.
    stale = parse_note(first_cosigned).signatures[-1]
    assert stale.name == "witness.example.com/w1"
    lines = (*parse_note(second).signatures, stale)
    attack = mirror(fleet, tmp_path)
    restamp(attack, fleet, carry(Note(parse_note(second).text, lines).to_bytes()))
    error = refused(fleet, serve(attack).url, "log-signature")
    assert "does not verify" in str(error)
    second_cosigned = cosigned(log, second, policy)
    publish(fleet, log, second_cosigned)
    assert fleet.sync(server.url).state.checkpoint == second_cosigned.decode()
    stranger = NoteVerifier(ORIGIN, ED25519, SigningKey.generate().public_key).vkey
    with pytest.raises(UsageError, match="this host witnesses the log"):
        fleet.sync(server.url, policy=f"log {stranger}\nquorum none\n")


def test_fleet_sync_takes_a_policy_file(
    fleet: Fleet, log: Log, witness_url: tuple[str, str], tmp_path: Path
) -> None:
    vkey, url = witness_url
    policy = tmp_path / "policy"
    policy.write_text(f"log {log.vkey}\nwitness w1 {vkey} {url}\nquorum w1\n")
    note = log.grow(2)
    publish(fleet, log, note)
    root = ("--root", fleet.repo.path / "1.root.json")
    sync = ("fleet", "sync", fleet.repo.path, "--state", fleet.state, "--json", *root)
    env = {"VTREG_HOME": str(tmp_path / "home")}
    refused = invoke_cli(*sync, "--policy", policy, env=env)
    assert (refused.code, refused.json()["error"]["code"]) == (1, "log-quorum")
    assert not fleet.state.exists()
    both = invoke_cli(*sync, "--policy", policy, "--log", log.vkey, env=env)
    assert both.code == 2
    publish(fleet, log, cosigned(log, note, policy.read_text()))
    assert ok(invoke_cli(*sync, "--policy", policy, env=env)).json()["checkpoint"] == size(note)
