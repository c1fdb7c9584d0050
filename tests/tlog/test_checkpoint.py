"""The log key and the signer: checkpoints signed only for histories that extend the last one."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import ok, one_line_error
from tests.tlog.conftest import ORIGIN, Log, rewrite_history
from vtreg.registry.checkpoints import SignerState
from vtreg.registry.db import connect
from vtreg.registry.service import Registry
from vtreg.registry.tlog import TreeReader
from vtreg.verifier.note import Checkpoint, NoteVerifier, open_note


def _signed(log: Log, note: str) -> Checkpoint:
    opened, _ = open_note(note.encode(), [NoteVerifier.parse(log.vkey)])
    return Checkpoint.parse(opened.text)


def test_init_prints_the_vkey_and_is_idempotent(log: Log) -> None:
    verifier = NoteVerifier.parse(log.vkey)
    assert verifier.name == ORIGIN
    again = ok(
        log.cli("audit", "init", "--key", log.keys / "log.key", "--origin", ORIGIN, "--json")
    )
    assert again.json()["vkey"] == log.vkey
    assert again.json()["created"] is False
    one_line_error(
        log.cli("audit", "init", "--key", log.keys / "log.key", "--origin", "other.example/log"),
        2,
        "signs for the log",
    )
    with Registry.open(log.url) as registry:
        assert registry.log_identity() == (ORIGIN, log.vkey)
        assert registry.audit_events(action="log.init")[0].details["vkey"] == log.vkey


def test_init_makes_the_state_directory_and_checkpoint_says_to_init(log: Log) -> None:
    state = log.home / "signer" / "state.json"  # kept apart from the registry, not made yet
    one_line_error(log.checkpoint("--state", state), 3, "run `vtreg audit init`")
    assert not state.parent.exists()
    init = ("audit", "init", "--key", log.keys / "log.key", "--origin", ORIGIN, "--state", state)
    ok(log.cli(*init, "--new-log"))  # the log holds its log.init event, never checkpointed
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    ok(log.checkpoint("--state", state))


def test_a_publisher_key_is_never_a_log_key_and_back(log: Log, tmp_path: Path) -> None:
    ok(log.cli("key", "add", log.keys / "alice.pub"))
    state = tmp_path / "other-signer.json"
    one_line_error(
        log.cli(
            "audit",
            "init",
            "--key",
            log.keys / "alice.key",
            "--origin",
            "x.example/log",
            "--state",
            state,
            "--new-log",
        ),
        2,
        "is a trusted publisher key",
    )
    one_line_error(log.cli("key", "add", log.keys / "log.pub"), 2, "is the audit log's key")


def test_a_checkpoint_is_a_signed_note_of_the_whole_tree(log: Log) -> None:
    log.record(5)
    result = ok(log.checkpoint())
    checkpoint = _signed(log, result.stdout)
    with Registry.open(log.url) as registry, registry.snapshot() as connection:
        tree = TreeReader(connection)
        assert checkpoint == Checkpoint(ORIGIN, tree.size(), tree.root(tree.size()))
        assert registry.checkpoint() == result.stdout
    assert checkpoint.size == 6  # log.init and the five loads
    state_file = log.home / "log-signer.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = json.loads(state_file.read_text())
    assert (state["size"], state["note"]) == (6, result.stdout)
    log.record(1)
    assert _signed(log, ok(log.checkpoint()).stdout).size == 7
    assert ok(log.checkpoint()).stdout == ok(log.checkpoint()).stdout  # nothing new: the same note


def test_the_cadence_signs_only_when_due(log: Log) -> None:
    ok(
        log.cli(
            "audit",
            "init",
            "--key",
            log.keys / "log.key",
            "--origin",
            ORIGIN,
            "--every",
            "3",
            "--interval",
            "1h",
        )
    )
    first = ok(log.checkpoint("--if-due", "--json")).json()
    assert first["created"] is True  # nothing signed yet: due
    log.record(2)
    assert ok(log.checkpoint("--if-due", "--json")).json() == {
        "schema": 1,
        "ok": True,
        "created": False,
        "checkpoint": None,
    }
    log.record(1)
    assert ok(log.checkpoint("--if-due", "--json")).json()["created"] is True


def test_the_cadence_signs_once_the_interval_has_passed(log: Log) -> None:
    init = ("audit", "init", "--key", log.keys / "log.key", "--origin", ORIGIN)
    ok(log.cli(*init, "--every", "1000", "--interval", "1h"))
    assert ok(log.checkpoint("--if-due", "--json")).json()["created"] is True
    log.record(1)
    assert ok(log.checkpoint("--if-due", "--json")).json()["created"] is False  # 1 of 1000
    # The last checkpoint signed two hours ago, as far as the signer knows: the interval is due.
    state_file = log.home / "log-signer.json"
    state = json.loads(state_file.read_text())
    assert state["interval_s"] == 3600
    signed_at = datetime.fromisoformat(state["signed_at"]) - timedelta(hours=2)
    state_file.write_text(json.dumps(state | {"signed_at": signed_at.isoformat()}))
    due = ok(log.checkpoint("--if-due", "--json")).json()
    assert due["created"] is True
    assert _signed(log, due["checkpoint"]).size == 2  # log.init and the load
    assert ok(log.checkpoint("--if-due", "--json")).json()["created"] is False  # nothing new


def test_the_interval_is_measured_from_the_last_checkpoint() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    state = SignerState(ORIGIN, "vkey", every=10, interval_s=10, size=5, signed_at=at.isoformat())
    assert not state.due(6, at + timedelta(seconds=9))
    assert state.due(6, at + timedelta(seconds=10))
    assert not state.due(5, at + timedelta(hours=1))  # due only if the log grew
    assert state.due(15, at)  # or by the count


def test_another_key_cannot_sign_for_the_log(log: Log) -> None:
    one_line_error(
        log.cli("audit", "checkpoint", "--key", log.keys / "witness.key"), 2, "is not the log key"
    )


def _edit_first(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events[1]["outcome"] = "refused"
    return events


def _reorder(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events[1], events[2] = events[2], events[1]
    return events


def _rebuild(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(e, actor="someone-else@host", plugin="innocent") for e in events]


def _drop_tail(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return events[:-3]


def _replace_tail(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return events[:-2] + [dict(events[-1], plugin="replaced")] * 3  # longer than before


@pytest.mark.parametrize(
    ("attack", "problem"),
    [
        pytest.param(_edit_first, "history was rewritten", id="edit-and-recompute-everything"),
        pytest.param(_reorder, "history was rewritten", id="reorder"),
        pytest.param(_rebuild, "history was rewritten", id="rebuild-from-scratch"),
        pytest.param(_drop_tail, "truncated", id="delete-tail-move-head"),
        pytest.param(_replace_tail, "history was rewritten", id="replace-tail-and-grow"),
    ],
)
def test_the_signer_refuses_a_rewritten_history(log: Log, attack: Any, problem: str) -> None:
    log.record(6)
    before = ok(log.checkpoint()).stdout
    rewrite_history(log.url, attack)
    with Registry.open(log.url) as registry:
        assert registry.verify_audit().ok  # the chain alone cannot tell
    refused = log.checkpoint("--json")
    assert refused.code == 1
    assert refused.json()["error"]["code"] == "log-inconsistent"
    assert problem in refused.json()["error"]["message"]
    assert json.loads((log.home / "log-signer.json").read_text())["note"] == before


def test_the_signer_refuses_tiles_that_disagree_with_the_events(log: Log) -> None:
    log.record(3)
    ok(log.checkpoint())
    log.record(2)
    # A new event's row edited, its tiles left alone: the tiles no longer hash the events.
    engine = connect(log.url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE audit_events SET plugin = 'other' WHERE seq = 6"))
    engine.dispose()
    refused = log.checkpoint()
    one_line_error(refused, 1, "tiles disagree with its events")


def test_a_lost_signer_state_is_not_a_fresh_start(log: Log, tmp_path: Path) -> None:
    log.record(6)
    trusted = tmp_path / "trusted-checkpoint"  # what a witness or a host kept
    trusted.write_text(ok(log.checkpoint()).stdout)
    state = log.home / "log-signer.json"
    state.unlink()
    rewrite_history(log.url, _edit_first)
    init = ("audit", "init", "--key", log.keys / "log.key", "--origin", ORIGIN)
    one_line_error(log.cli(*init), 2, "already holds 7 events")
    assert not state.exists()
    one_line_error(log.cli(*init, "--resume-from", trusted, "--new-log"), 2, "exclude each other")
    forged = tmp_path / "forged"  # the database owner's own checkpoint of the rewrite
    forged.write_text(trusted.read_text().replace(ORIGIN, "example.com/other-log"))
    assert log.cli(*init, "--resume-from", forged).code == 1
    ok(log.cli(*init, "--resume-from", trusted))
    assert json.loads(state.read_text())["note"] == trusted.read_text()
    one_line_error(log.cli(*init, "--resume-from", trusted), 2, "already holds this signer")
    refused = log.checkpoint("--json")
    assert refused.code == 1
    assert refused.json()["error"]["code"] == "log-inconsistent"
    assert "history was rewritten" in refused.json()["error"]["message"]


def test_a_resumed_signer_goes_on_from_its_checkpoint(log: Log, tmp_path: Path) -> None:
    log.record(2)
    trusted = tmp_path / "trusted-checkpoint"
    trusted.write_text(ok(log.checkpoint()).stdout)
    (log.home / "log-signer.json").unlink()
    log.record(2)
    init = ("audit", "init", "--key", log.keys / "log.key", "--origin", ORIGIN)
    ok(log.cli(*init, "--resume-from", trusted))
    assert _signed(log, ok(log.checkpoint()).stdout).size == 5


def test_new_log_starts_afresh_on_a_log_never_checkpointed(log: Log, tmp_path: Path) -> None:
    log.record(2)
    state = tmp_path / "signer.json"
    init = ("audit", "init", "--key", log.keys / "log.key", "--origin", ORIGIN, "--state", state)
    one_line_error(log.cli(*init), 2, "--new-log if no checkpoint")
    ok(log.cli(*init, "--new-log"))
    ok(log.cli(*init, "--new-log"))  # nothing signed yet: the same
    assert _signed(log, ok(log.checkpoint("--state", state)).stdout).size == 3
    one_line_error(log.cli(*init, "--new-log"), 2, "already holds this signer")
    ok(log.cli(*init))
