"""The transparency log commands: ``vtreg audit init|checkpoint|prove|export`` and
``vtreg witness serve`` (the formats are C2SP's: signed-note, tlog-checkpoint,
tlog-proof, tlog-tiles, tlog-witness)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from vtreg.verifier.text import printable

from ._app import Report, Settings, vtreg_command
from ._params import DURATION, passphrase_reader, utc_now
from .audit import audit_group
from .signing import _passphrase_file
from .trust import db_option, open_registry

if TYPE_CHECKING:
    from vtreg.registry.service import Registry

__all__ = ["audit_checkpoint", "audit_export", "audit_init", "audit_prove"]

_state_option = click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path),
    help="The log signer's state file, kept outside the database "
    "(default: $VTREG_HOME/log-signer.json).",
)
_key_option = click.option(
    "--key", "key_file", required=True, type=click.Path(), help="The log's private key file."
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
@_state_option
@_passphrase_file
@db_option
def audit_init(
    settings: Settings,
    key_file: str,
    origin: str,
    every: int,
    interval: timedelta,
    state_path: Path | None,
    passphrase_file: str | None,
    db_url: str | None,
) -> Report:
    """Give the audit log a log key and an origin; print the log's vkey.

    The log key signs checkpoints and nothing else: a trusted publisher key
    is refused.
    """
    from vtreg.registry.checkpoints import init_log
    from vtreg.verifier.keys import read_private_key_file

    key = read_private_key_file(key_file, passphrase_reader(passphrase_file))
    state = _signer_state(state_path)
    with open_registry(db_url or settings.db) as registry:
        vkey, created = init_log(registry, key, origin, state, every=every, interval=interval)
    return Report(
        data={"origin": origin, "vkey": vkey, "state": str(state), "created": created},
        text=vkey,
    )


@vtreg_command(audit_group, "checkpoint")
@_key_option
@click.option(
    "--if-due", is_flag=True, help="Sign only if the cadence set by `audit init` asks for it."
)
@_state_option
@_passphrase_file
@db_option
def audit_checkpoint(
    settings: Settings,
    key_file: str,
    if_due: bool,
    state_path: Path | None,
    passphrase_file: str | None,
    db_url: str | None,
) -> Report:
    """Sign a checkpoint of the audit log and print it (a C2SP signed note).

    Refused (exit 1) unless the log extends the last checkpoint this signer
    signed: a rewritten, truncated or rebuilt history is never signed.
    """
    from vtreg.registry.checkpoints import sign_checkpoint
    from vtreg.verifier.keys import read_private_key_file

    key = read_private_key_file(key_file, passphrase_reader(passphrase_file))
    with open_registry(db_url or settings.db) as registry:
        note = sign_checkpoint(
            registry, key, _signer_state(state_path), at=utc_now(), if_due=if_due
        )
    if note is None:
        return Report(data={"signed": False, "checkpoint": None}, text="")
    text = note.to_bytes().decode()
    return Report(data={"signed": True, "checkpoint": text}, text=text.removesuffix("\n"))


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
