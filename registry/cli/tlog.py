"""The transparency log commands: ``vtreg audit init|checkpoint|prove|export`` and
``vtreg witness serve`` (the formats are C2SP's: signed-note, tlog-checkpoint,
tlog-proof, tlog-tiles, tlog-witness)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vtreg.verifier.text import printable

from ._app import EXIT_REFUSED, Report, Settings, cli, error_detail, vtreg_command
from ._params import DURATION, utc_now
from .audit import audit_group
from .signing import _passphrase_file, open_keyref
from .trust import db_option, open_registry

if TYPE_CHECKING:
    from vtreg.registry.service import Registry

__all__ = [
    "audit_checkpoint",
    "audit_export",
    "audit_init",
    "audit_prove",
    "audit_verify_proof",
    "witness_serve",
]

_state_option = click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path),
    help="The log signer's state file, kept outside the database "
    "(default: $VTREG_HOME/log-signer.json).",
)
_key_option = click.option(
    "--key",
    "key_file",
    required=True,
    metavar="KEYREF",
    help="The log key: a key file, ssh-agent:PUBFILE|SHA256:FP, or a pkcs11: URI.",
)


def _signer_state(path: Path | None) -> Path:
    from vtreg.registry.checkpoints import default_state_path

    return path or default_state_path()


@vtreg_command(audit_group, "init")
@_key_option
@click.option("--origin", required=True, help="The log's name, e.g. example.com/vtreg-audit.")
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Cadence: a checkpoint is due after this many new events...",
)
@click.option(
    "--interval",
    type=DURATION,
    default="10s",
    show_default=True,
    help="... or this long after the last one, if the log grew (`checkpoint --if-due`).",
)
@click.option(
    "--resume-from",
    "resume_file",
    type=click.Path(),
    metavar="CHECKPOINT",
    help="The signer state was lost: rebuild it from this checkpoint (the last one you "
    "trust, signed by the log key); later checkpoints must extend it.",
)
@click.option(
    "--new-log",
    is_flag=True,
    help="Start a signer state for a log that already holds events but was never "
    "checkpointed (or whose earlier checkpoints you abandon).",
)
@_state_option
@_passphrase_file
@db_option
def audit_init(
    settings: Settings,
    key_file: str,
    origin: str,
    every: int,
    interval: timedelta,
    resume_file: str | None,
    new_log: bool,
    state_path: Path | None,
    passphrase_file: str | None,
    db_url: str | None,
) -> Report:
    """Give the audit log a log key and an origin; print the log's vkey.

    The log key signs checkpoints and nothing else: a trusted publisher key
    is refused. Without a signer state, a log that already holds events
    needs --resume-from (the state was lost) or --new-log (never checkpointed).
    """
    from vtreg.registry.checkpoints import init_log
    from vtreg.verifier.files import read_bounded
    from vtreg.verifier.note import MAX_NOTE_BYTES

    key = open_keyref(key_file, passphrase_file)
    state = _signer_state(state_path)
    resume = None
    if resume_file is not None:
        resume = read_bounded(resume_file, MAX_NOTE_BYTES, f"checkpoint {resume_file}")
    with open_registry(db_url or settings.db, create=True) as registry:
        vkey, created = init_log(
            registry,
            key,
            origin,
            state,
            every=every,
            interval=interval,
            resume_from=resume,
            new_log=new_log,
        )
    return Report(
        data={"origin": origin, "vkey": vkey, "state": str(state), "created": created},
        text=vkey,
    )


@vtreg_command(audit_group, "checkpoint")
@_key_option
@click.option(
    "--if-due", is_flag=True, help="Sign only if the cadence set by `audit init` asks for it."
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(),
    help="Ask the witnesses this tlog-policy lists with a URL to cosign, and require its quorum.",
)
@_state_option
@_passphrase_file
@db_option
def audit_checkpoint(
    settings: Settings,
    key_file: str,
    if_due: bool,
    policy_file: str | None,
    state_path: Path | None,
    passphrase_file: str | None,
    db_url: str | None,
) -> Report:
    """Sign a checkpoint of the audit log and print it (a C2SP signed note).

    Refused (exit 1) unless the log extends the last checkpoint this signer
    signed: a rewritten, truncated or rebuilt history is never signed. With
    --policy, exit 1 also when the witnesses' cosignatures miss the quorum.
    """
    from vtreg.registry.checkpoints import gather_cosignatures, sign_checkpoint
    from vtreg.verifier.errors import VerificationError

    from .checkpoint import load_policy

    key = open_keyref(key_file, passphrase_file)
    policy = load_policy(policy_file, ()) if policy_file else None
    problems: list[str] = []
    with open_registry(db_url or settings.db) as registry:
        note = sign_checkpoint(
            registry, key, _signer_state(state_path), at=utc_now(), if_due=if_due
        )
        if note is None:
            return Report(data={"created": False, "checkpoint": None}, text="")
        if policy is not None:
            note, problems = gather_cosignatures(registry, note, policy)
            size = int(note.text.split("\n")[1])
            registry.store_checkpoint(size, note.to_bytes().decode(), replace=True)
    text = note.to_bytes().decode()
    data: dict[str, object] = {"created": True, "checkpoint": text}
    if policy is not None:
        try:
            data["witnesses"] = list(policy.accept(note.to_bytes()).witnesses)
        except VerificationError as e:
            problems.append(str(e))
            data |= {"quorum": False, "error": error_detail(e, EXIT_REFUSED, printable(str(e)))}
            shown = text.removesuffix("\n")
            return Report(data, shown, exit_code=EXIT_REFUSED, warnings=problems)
    return Report(data=data, text=text.removesuffix("\n"), warnings=problems)


@vtreg_command(audit_group, "prove")
@click.argument("seq", type=click.IntRange(min=1))
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(),
    help="Prove under this signed checkpoint (default: the smallest stored one holding SEQ).",
)
@click.option("--out", type=click.Path(), help="Write the proof to this file (default: stdout).")
@db_option
def audit_prove(
    settings: Settings,
    seq: int,
    checkpoint_file: str | None,
    out: str | None,
    db_url: str | None,
) -> Report:
    """Write a C2SP tlog-proof that event SEQ is in the log (the event's bytes as its extra)."""
    from vtreg.registry.tlog import prove_event
    from vtreg.verifier.files import atomic_write

    with open_registry(db_url or settings.db) as registry:
        note = _checkpoint_note(registry, checkpoint_file, seq)
        with registry.snapshot() as connection:
            proof = prove_event(connection, seq, note).to_bytes()
    if out is not None:
        atomic_write(out, proof)
    text = f"wrote {out}" if out else proof.decode().removesuffix("\n")
    return Report(data={"seq": seq, "proof": proof.decode(), "file": out}, text=text)


@vtreg_command(audit_group, "export")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(),
    help="Export the tree of this signed checkpoint (default: the latest stored one).",
)
@db_option
def audit_export(
    settings: Settings, directory: Path, checkpoint_file: str | None, db_url: str | None
) -> Report:
    """Write the audit log as static tlog-tiles files (checkpoint, tiles, entry bundles)."""
    from vtreg.registry.export import export_log

    with open_registry(db_url or settings.db) as registry:
        note = _checkpoint_note(registry, checkpoint_file, None)
        with registry.snapshot() as connection:
            written = export_log(connection, note, directory)
    return Report(
        data={"directory": str(directory), "files": written},
        text=printable(f"wrote {written} files to {directory}"),
    )


def _checkpoint_note(registry: Registry, checkpoint_file: str | None, seq: int | None) -> bytes:
    """The note of ``--checkpoint FILE``, else the stored checkpoint holding event ``seq``
    (the latest if None)."""
    from vtreg.verifier.errors import NotFoundError
    from vtreg.verifier.files import read_bounded
    from vtreg.verifier.note import MAX_NOTE_BYTES

    if checkpoint_file is not None:
        return read_bounded(checkpoint_file, MAX_NOTE_BYTES, f"checkpoint {checkpoint_file}")
    stored = registry.checkpoint(size=seq)
    if stored is None:
        holding = f" holds event {seq}" if seq else " exists"
        raise NotFoundError(f"no signed checkpoint{holding} yet: run `vtreg audit checkpoint`")
    return stored.encode()


@cli.group("witness")
def witness_group() -> None:
    """Run a C2SP tlog-witness that cosigns checkpoints of the logs it knows."""


@vtreg_command(witness_group, "serve")
@click.option(
    "--key",
    "key_file",
    required=True,
    metavar="KEYREF",
    help="The witness key: a key file, ssh-agent:..., or a pkcs11: URI.",
)
@click.option("--name", required=True, help="The witness's name, e.g. witness.example.com/w1.")
@click.option(
    "--log", "log_vkeys", multiple=True, required=True, metavar="VKEY", help="A log to witness."
)
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Where the latest checkpoint cosigned for each log is kept.",
)
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT")
@_passphrase_file
def witness_serve(
    settings: Settings,
    key_file: str,
    name: str,
    log_vkeys: tuple[str, ...],
    state_dir: Path,
    listen: str,
    passphrase_file: str | None,
) -> Report:
    """Serve POST /add-checkpoint until interrupted; print the witness's vkey first."""
    import signal
    import threading

    from vtreg.registry.witness import Witness, serve
    from vtreg.verifier.errors import UsageError, VtregError
    from vtreg.verifier.note import NoteVerifier

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {listen!r} is not HOST:PORT")
    key = open_keyref(key_file, passphrase_file)
    logs = [NoteVerifier.parse(v) for v in log_vkeys]
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        witness = Witness(key, name, logs, state_dir)
        server = serve(witness, host, int(port))
    except OSError as e:
        raise VtregError(f"cannot serve on {listen}: {e.strerror}") from e
    bound = server.server_address[1]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # before saying so: a stop may follow at once
        signal.signal(signum, lambda *_: stop.set())
    # With --json, stdout holds the one document printed at the end: this line goes to stderr.
    click.echo(
        printable(f"witness {witness.vkey} listening on http://{host}:{bound}"), err=settings.json
    )
    sys.stdout.flush()
    sys.stderr.flush()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()
    return Report(
        data={"vkey": witness.vkey, "url": f"http://{host}:{bound}", "port": bound},
        text="witness stopped",
    )


@vtreg_command(audit_group, "verify-proof")
@click.argument("proof_file", type=click.Path())
@click.option("--policy", "policy_file", type=click.Path(), help="Logs and witness quorum.")
@click.option("--log", "log_vkeys", multiple=True, metavar="VKEY", help="The log's vkey.")
def audit_verify_proof(
    settings: Settings, proof_file: str, policy_file: str | None, log_vkeys: tuple[str, ...]
) -> Report:
    """Check a tlog-proof offline (no registry): the event its extra data holds is in the log."""
    from vtreg.verifier.errors import FormatError
    from vtreg.verifier.files import read_bounded
    from vtreg.verifier.note import MAX_NOTE_BYTES
    from vtreg.verifier.tlog_proof import TlogProof

    from .checkpoint import load_policy

    policy = load_policy(policy_file, log_vkeys)
    proof = TlogProof.parse(read_bounded(proof_file, 2 * MAX_NOTE_BYTES, f"proof {proof_file}"))
    if proof.extra is None:
        raise FormatError("the proof carries no event (no extra line): nothing to check it against")
    accepted = proof.verify(proof.extra, policy)
    event = _proven_event(proof.extra)
    checkpoint = accepted.checkpoint
    return Report(
        data={"seq": proof.index + 1, "event": event, "size": checkpoint.size},
        text=printable(
            f"event {proof.index + 1} is in {checkpoint.origin} ({checkpoint.size} events, "
            f"cosigned by {', '.join(accepted.witnesses) or 'none'}):"
        )
        + "\n"
        + printable(proof.extra.decode()),  # the line break is ours, not the proof's
    )


def _proven_event(extra: bytes) -> dict[str, object]:
    """The event a proof carries (its canonical bytes), as ``vtreg audit --json`` shows an
    event, less the chain ``hash`` that the canonical bytes do not hold."""
    import json

    from vtreg.verifier.audit_event import HASHED_FIELDS
    from vtreg.verifier.errors import FormatError

    try:
        tag, *values = json.loads(extra)
        event = dict(zip(HASHED_FIELDS, values, strict=True))
        event["at"] = str(event["at"]).replace("+00:00", "Z")
        event["keyids"] = str(event["keyids"]).split()
        event["details"] = json.loads(str(event["details"]))
    except (ValueError, TypeError) as e:
        raise FormatError("the proof's event is not a vtreg audit event") from e
    if tag != "vtreg-audit-v1" or not isinstance(event["details"], dict):
        raise FormatError("the proof's event is not a vtreg audit event")
    return event
