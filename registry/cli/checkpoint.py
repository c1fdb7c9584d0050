"""``vtreg audit verify --checkpoint FILE``: the log against a signed checkpoint and a policy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vtreg.verifier.text import printable

from ._app import EXIT_REFUSED, Report, error_detail

if TYPE_CHECKING:
    from vtreg.registry.audit import ChainReport
    from vtreg.registry.service import Registry
    from vtreg.verifier.policy import Policy

__all__ = ["checkpoint_options", "checkpoint_report", "load_policy"]

F = TypeVar("F", bound=Callable[..., Any])


def checkpoint_options(fn: F) -> F:
    """The options of ``vtreg audit verify`` that check the log against a signed checkpoint."""
    for option in reversed(
        [
            click.option(
                "--checkpoint",
                "checkpoint_file",
                type=click.Path(),
                help="A signed checkpoint: the log must hold exactly what it signed, and extend "
                "(or be extended by) the latest checkpoint accepted before.",
            ),
            click.option(
                "--policy",
                "policy_file",
                type=click.Path(),
                help="Which logs and witness quorum to accept (C2SP tlog-policy).",
            ),
            click.option(
                "--log",
                "log_vkeys",
                multiple=True,
                metavar="VKEY",
                help="The log's vkey, to accept its checkpoints without witnesses.",
            ),
            click.option(
                "--verifier-state",
                "verifier_state",
                type=click.Path(path_type=Path),
                help="Where the latest accepted checkpoint is kept "
                "(default: $VTREG_HOME/log-verifier).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def load_policy(policy_file: str | None, log_vkeys: tuple[str, ...]) -> Policy:
    """The policy of ``--policy FILE``, or one of ``--log VKEY`` logs and no witnesses."""
    from vtreg.verifier.errors import UsageError
    from vtreg.verifier.files import read_bounded
    from vtreg.verifier.note import NoteVerifier
    from vtreg.verifier.policy import Policy

    if (policy_file is None) == (not log_vkeys):
        raise UsageError("name the log with --log VKEY or give a --policy FILE (one of the two)")
    if policy_file is not None:
        data = read_bounded(policy_file, 64 * 1024, f"policy {policy_file}")
        return Policy.parse(data.decode("utf-8", "replace"))
    return Policy(tuple(NoteVerifier.parse(v) for v in log_vkeys))


def checkpoint_report(
    registry: Registry,
    checkpoint_file: str,
    policy_file: str | None,
    log_vkeys: tuple[str, ...],
    verifier_state: Path | None,
    *,
    anchor: tuple[int, str] | None,
    chain: Callable[[ChainReport], Report],
) -> Report:
    """Check the log's hash chain and, if it is intact, the log against a signed checkpoint
    (one pass over the log: see registry.monitor.verify_log).

    ``chain`` renders the chain's report (`vtreg audit verify`'s); the checkpoint's fields
    are added to its document.
    """
    from vtreg.registry.monitor import default_state_dir, walk_log
    from vtreg.verifier.files import read_bounded
    from vtreg.verifier.fork import ForkError
    from vtreg.verifier.note import MAX_NOTE_BYTES

    policy = load_policy(policy_file, log_vkeys)
    data = read_bounded(checkpoint_file, MAX_NOTE_BYTES, f"checkpoint {checkpoint_file}")
    walked = walk_log(registry, data, policy, verifier_state or default_state_dir(), anchor=anchor)
    intact = chain(walked.chain)
    if not walked.chain.ok:
        return intact
    try:
        found = walked.judge()
    except ForkError as e:
        forked = {"fork": True, "problem": str(e), "evidence": e.evidence.to_json()}
        forked["error"] = error_detail(e, EXIT_REFUSED, printable(str(e)))
        return Report(
            data={**intact.data, **forked},
            text=f"audit log FORKED: {e}\n\n{e.evidence.text()}",
            exit_code=EXIT_REFUSED,
        )
    events = walked.chain.events
    checkpoint = found.accepted.checkpoint
    witnesses = ", ".join(found.accepted.witnesses) or "none"
    before = (
        f"; consistent with the {found.previous.size} accepted before" if found.previous else ""
    )
    return Report(
        data={
            **intact.data,
            "fork": False,
            "origin": checkpoint.origin,
            "size": checkpoint.size,
            "witnesses": list(found.accepted.witnesses),
            "previous": found.previous.size if found.previous else None,
            "latest": found.latest.size,
        },
        text=f"audit log intact: {events} events\n"
        + printable(
            f"checkpoint of {checkpoint.origin}: the log holds its {checkpoint.size} events"
            f"{before} (cosigned by {witnesses})"
        ),
    )
