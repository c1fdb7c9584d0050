"""Proofs of one event, and verifiers that keep the latest checkpoint and catch forks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.helpers import CliResult, ok, one_line_error
from tests.tlog.conftest import ORIGIN, Log, rewrite_history
from vtreg.registry.db import connect
from vtreg.registry.service import Registry
from vtreg.registry.tlog import event_bytes
from vtreg.verifier.fork import ForkEvidence
from vtreg.verifier.keys import read_private_key_file
from vtreg.verifier.note import ED25519, Note, NoteVerifier, parse_note, sign_note
from vtreg.verifier.policy import Policy
from vtreg.verifier.tlog_proof import TlogProof


def _policy(log: Log) -> Policy:
    return Policy((NoteVerifier.parse(log.vkey),))


def _checkpoint_file(log: Log, name: str, *args: str | Path) -> Path:
    path = log.home.parent / name
    path.write_text(ok(log.checkpoint(*args)).stdout)
    return path


def _verify(log: Log, checkpoint: Path, *args: str | Path) -> CliResult:
    return log.cli("audit", "verify", "--checkpoint", checkpoint, "--log", log.vkey, *args)


def test_a_proof_shows_one_event_under_a_signed_checkpoint(log: Log) -> None:
    log.record(9)
    ok(log.checkpoint())
    log.record(3)
    proof = TlogProof.parse(ok(log.cli("audit", "prove", "4")).stdout.encode())
    with Registry.open(log.url) as registry, registry.snapshot() as connection:
        (event,) = event_bytes(connection, 3, 4)
    assert (proof.index, proof.extra) == (3, event)
    accepted = proof.verify(event, _policy(log))
    assert accepted.checkpoint.size == 10  # the stored checkpoint, not the log's 13 events
    assert b'"plugin.load","allowed","p2"' in event
    out = log.home.parent / "event-4.tlog-proof"
    ok(log.cli("audit", "prove", "4", "--out", out))
    assert TlogProof.parse(out.read_bytes()) == proof
    checked = ok(log.cli("audit", "verify-proof", out, "--log", log.vkey, "--json", db=False))
    assert (checked.json()["seq"], checked.json()["event"]["action"]) == (4, "plugin.load")
    shown = ok(log.cli("audit", "verify-proof", out, "--log", log.vkey, db=False)).stdout
    assert shown.splitlines() == [
        f"event 4 is in {ORIGIN} (10 events, cosigned by none):",
        event.decode(),
    ]  # the event on its own line, not after a literal \x0a
    # The event in the proof changed: no longer the leaf the log holds.
    out.write_bytes(TlogProof(proof.index, proof.hashes, proof.checkpoint, event + b" ").to_bytes())
    one_line_error(
        log.cli("audit", "verify-proof", out, "--log", log.vkey, db=False), 1, "not in the tree"
    )


def test_a_proof_needs_a_checkpoint_holding_the_event(log: Log) -> None:
    log.record(2)
    one_line_error(log.cli("audit", "prove", "1"), 3, "no signed checkpoint holds event 1")
    ok(log.checkpoint())
    one_line_error(log.cli("audit", "prove", "9"), 3, "no signed checkpoint holds event 9")


def test_no_proof_of_an_event_the_checkpoint_did_not_sign(log: Log) -> None:
    log.record(4)
    ok(log.checkpoint())
    engine = connect(log.url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE audit_events SET plugin = 'x' WHERE seq = 3"))
    engine.dispose()
    one_line_error(log.cli("audit", "prove", "3"), 1, "is not in the tree")


def test_a_verifier_keeps_the_latest_checkpoint_and_demands_consistency(log: Log) -> None:
    log.record(3)
    first = _checkpoint_file(log, "first")
    result = ok(_verify(log, first, "--json")).json()
    assert (result["size"], result["previous"], result["latest"]) == (4, None, 4)
    log.record(5)
    second = _checkpoint_file(log, "second")
    result = ok(_verify(log, second, "--json")).json()
    assert (result["size"], result["previous"], result["latest"]) == (9, 4, 9)
    again = ok(_verify(log, first, "--json")).json()  # an older one, consistent: fine
    assert (again["size"], again["latest"]) == (4, 9)
    assert "consistent with the 9 accepted before" in ok(_verify(log, second)).stdout


def test_verify_needs_the_log_key_from_outside_the_database(log: Log) -> None:
    log.record(1)
    checkpoint = _checkpoint_file(log, "c")
    one_line_error(log.cli("audit", "verify", "--checkpoint", checkpoint), 2, "--log VKEY")


def test_a_checkpoint_signed_by_an_unknown_key_is_refused(log: Log) -> None:
    log.record(2)
    genuine = parse_note(_checkpoint_file(log, "genuine").read_bytes())
    # The same tree, signed under the log's name by a key of the database owner's.
    key = read_private_key_file(log.keys / "witness.key", None)
    forged = log.home.parent / "forged"
    forged.write_bytes(Note(genuine.text, (sign_note(genuine.text, key, ORIGIN),)).to_bytes())
    refused = _verify(log, forged, "--json")
    assert refused.code == 1
    assert refused.json()["error"]["code"] == "unknown-key"
    # Beside the genuine signature it is ignored, as signed-note says.
    both = genuine.with_signatures([sign_note(genuine.text, key, ORIGIN)])
    forged.write_bytes(both.to_bytes())
    ok(_verify(log, forged))


def _edit(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events[2]["reason"] = "nothing to see"
    return events


def _reorder(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events[1], events[2] = events[2], events[1]
    return events


def _rebuild(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(e, actor="someone-else@host") for e in events]


@pytest.mark.parametrize("attack", [_edit, _reorder, _rebuild], ids=["edit", "reorder", "rebuild"])
def test_a_rewritten_log_no_longer_holds_what_was_signed(log: Log, attack: Any) -> None:
    log.record(5)
    checkpoint = _checkpoint_file(log, "c")
    ok(_verify(log, checkpoint))
    rewrite_history(log.url, attack)
    refused = _verify(log, checkpoint, "--json")
    assert refused.json()["error"]["code"] == "log-inconsistent"
    assert "not those the checkpoint signed" in refused.json()["error"]["message"]
    rewrite_history(log.url, lambda events: events[:3])
    one_line_error(_verify(log, checkpoint), 1, "truncated")


def _fork(log: Log, first_host: Path | None = None) -> tuple[Path, Path]:
    """The log key's holder signs two histories: one (seen by ``first_host``), then another."""
    log.record(5)
    honest = _checkpoint_file(log, "honest")
    if first_host is not None:
        ok(_verify(log, honest, "--verifier-state", first_host))
    rewrite_history(log.url, _edit)  # the other history
    log.record(2)
    other_state = log.home.parent / "second-signer.json"
    ok(
        log.cli(
            "audit",
            "init",
            "--key",
            log.keys / "log.key",
            "--origin",
            ORIGIN,
            "--state",
            other_state,
            "--new-log",  # the key holder abandons what it signed
        )
    )
    other = _checkpoint_file(log, "other", "--state", other_state)
    return honest, other


def _check_evidence(log: Log, result: CliResult) -> None:
    assert result.code == 1
    document = result.json()
    assert document["fork"] is True
    evidence = document["evidence"]
    proven = ForkEvidence(
        evidence["older"].encode(),
        evidence["newer"].encode(),
        tuple(base64.b64decode(h) for h in evidence["proof"]),
        base64.b64decode(evidence["older_root_in_newer"]),
    )
    older, newer = proven.check(_policy(log))  # anyone with the vkey can check it
    assert (older.size, newer.size) == (6, 8)


def test_a_fork_is_caught_with_transferable_evidence(log: Log) -> None:
    first_host = log.home.parent / "host-a"
    _, other = _fork(log, first_host)
    forked = _verify(log, other, "--verifier-state", first_host, "--json")
    _check_evidence(log, forked)
    text = _verify(log, other, "--verifier-state", first_host)
    assert "FORK" in text.stdout
    assert "checkpoint (smaller tree):" in text.stdout


def test_a_fork_is_caught_when_the_other_history_came_first(log: Log) -> None:
    honest, other = _fork(log)
    host = log.home.parent / "host-b"
    ok(_verify(log, other, "--verifier-state", host))  # the log shows the other history
    _check_evidence(log, _verify(log, honest, "--verifier-state", host, "--json"))


def test_a_signed_checkpoint_names_the_log_key(log: Log) -> None:
    verifier = NoteVerifier.parse(log.vkey)
    assert (verifier.name, verifier.kind) == (ORIGIN, ED25519)


def test_a_broken_chain_is_reported_and_the_checkpoint_not_accepted(log: Log) -> None:
    log.record(4)
    checkpoint = _checkpoint_file(log, "c")
    engine = connect(log.url)
    with engine.begin() as connection:  # an edit that does not recompute the chain
        connection.execute(sa.text("UPDATE audit_events SET reason = 'x' WHERE seq = 2"))
    engine.dispose()
    state = log.home.parent / "state"
    broken = _verify(log, checkpoint, "--verifier-state", state, "--json")
    assert broken.code == 1
    document = broken.json()
    assert (document["intact"], document["broken_seq"]) == (False, 2)
    assert "does not match its hash" in document["problem"]
    assert "size" not in document  # the checkpoint was judged no further
    assert not state.exists() or not any(state.iterdir())  # nor kept as the latest
    assert "audit log BROKEN at event 2" in _verify(log, checkpoint).stdout


def test_verify_checks_an_anchor_and_a_checkpoint_in_one_pass(log: Log) -> None:
    log.record(2)
    checkpoint = _checkpoint_file(log, "c")
    anchor = ok(log.cli("audit", "verify", "--json")).json()["anchor"]
    result = ok(_verify(log, checkpoint, "--anchor", anchor, "--json")).json()
    assert (result["intact"], result["size"], result["anchor"]) == (True, 3, anchor)
    other = anchor.split(":")[0] + ":" + "0" * 64
    refused = _verify(log, checkpoint, "--anchor", other, "--json")
    assert refused.code == 1
    assert "is not the event anchored earlier" in refused.json()["problem"]
