"""``vtreg fleet``: publish the registry's trust as TUF metadata, and sync hosts from it."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import click

from vtreg.verifier.text import path_text

from ._app import Report, Settings, cli, vtreg_command
from ._params import DURATION, utc_now
from .trust import db_option, open_registry

if TYPE_CHECKING:
    from pathlib import Path

    from vtreg.registry.fleet.repository import PublishResult
    from vtreg.registry.fleet.state import FleetState
    from vtreg.registry.service import Registry
    from vtreg.verifier.fork import ForkError
    from vtreg.verifier.signatures import VerifiedPlugin
    from vtreg.verifier.tree import PendingCapture

__all__ = ["fleet_group", "fleet_option", "grace_option", "verify_with_fleet"]

_passphrase_file = click.option(
    "--passphrase-file",
    type=click.Path(),
    help="Read the key passphrase from the first line of this file (else $VTREG_PASSPHRASE, "
    "else a prompt).",
)
_state_option = click.option(
    "--state",
    "state_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The host's fleet state file (written by sync).",
)


fleet_option = click.option(
    "--fleet",
    "fleet_state",
    type=click.Path(dir_okay=False),
    metavar="STATE",
    help="Decide from this fleet state file (vtreg fleet sync), without a registry or network.",
)
grace_option = click.option(
    "--grace",
    type=DURATION,
    help="With --fleet: after the state expires, still decide from it for this long "
    "(each decision audited as last-known-good).",
)


@cli.group("fleet")
def fleet_group() -> None:
    """Publish trust to many hosts as TUF metadata, and sync a host from it."""


def _bin_bits(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        bits = int(value)
    except ValueError:
        bits = 0
    if not 1 <= bits <= 16:
        raise click.BadParameter(f"{value!r} is not a number of bits from 1 to 16, nor auto")
    return bits


@vtreg_command(fleet_group, "init")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option(
    "--root-key",
    "root_keys",
    multiple=True,
    required=True,
    metavar="KEYREF",
    help="Offline root key (repeatable; each signs root v1): a key file, ssh-agent:..., "
    "or a pkcs11: URI.",
)
@click.option(
    "--root-threshold",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many root keys must sign each root.",
)
@click.option(
    "--online-key",
    required=True,
    metavar="KEYREF",
    help="Key of the timestamp, snapshot, targets and bin roles (a KEYREF; kept in the "
    "repository's settings and opened at each publish).",
)
@click.option("--root-expires", type=DURATION, default="365d", show_default=True)
@click.option(
    "--bin-bits",
    default="auto",
    show_default=True,
    callback=lambda _ctx, _param, value: _bin_bits(value),
    metavar="N|auto",
    help="Names are spread over 2^N hash bins (1 to 16); auto: as many as keep a bin "
    "about 16 KiB, chosen from the registry's size at each full publish.",
)
@_passphrase_file
def fleet_init(
    settings: Settings,
    repo: str,
    root_keys: tuple[str, ...],
    root_threshold: int,
    online_key: str,
    root_expires: timedelta,
    bin_bits: int | None,
    passphrase_file: str | None,
) -> Report:
    """Create a fleet repository in REPO: root v1 signed by the root keys."""
    from pathlib import Path

    from vtreg.registry.fleet.repository import init_repository

    from .signing import open_keyref

    roots = [open_keyref(ref, passphrase_file) for ref in root_keys]
    online = open_keyref(online_key, passphrase_file)
    root = init_repository(
        Path(repo),
        roots,
        root_threshold,
        online,
        online_key,
        expires=utc_now() + root_expires,
        bin_bits=bin_bits,
    )
    return Report(
        data={"repository": repo, "root_version": root.version, "root_threshold": root_threshold},
        text=f"fleet repository {path_text(repo)}: root v1 ({root_threshold} of "
        f"{len(roots)} root keys), hosts start from {path_text(repo)}/1.root.json",
    )


def log_checkpoint(registry: Registry, repo: Path) -> bytes | None:
    """The audit log's latest signed checkpoint, its tiles exported to ``repo/log`` first
    (None when the registry keeps no signed checkpoint)."""
    from vtreg.registry.export import export_tiles
    from vtreg.registry.fleet.repository import LOG_DIR

    note = registry.checkpoint()
    if note is None:
        return None
    with registry.snapshot() as connection:
        export_tiles(connection, note.encode(), repo / LOG_DIR)
    return note.encode()


def _published(repo: str, result: PublishResult, what: str) -> Report:
    entries = f", {result.entries} entries" if result.entries is not None else ""
    if result.touched is not None:
        entries = f", {result.touched} name(s) changed"
    return Report(
        data={"repository": repo, **result.to_json()},
        text=f"{what} {path_text(repo)}: timestamp v{result.timestamp}, snapshot "
        f"v{result.snapshot}, targets v{result.targets}{entries}; wrote "
        f"{len(result.written)} file(s)",
    )


@vtreg_command(fleet_group, "publish")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--timestamp-expires", type=DURATION, default="1d", show_default=True)
@click.option("--snapshot-expires", type=DURATION, default="7d", show_default=True)
@click.option("--targets-expires", type=DURATION, default="90d", show_default=True)
@click.option(
    "--full",
    is_flag=True,
    help="Read every trust record and compare every bin (default: only the names the audit "
    "log says changed since the last publish).",
)
@_passphrase_file
@db_option
def fleet_publish(
    settings: Settings,
    repo: str,
    timestamp_expires: timedelta,
    snapshot_expires: timedelta,
    targets_expires: timedelta,
    full: bool,
    passphrase_file: str | None,
    db_url: str | None,
) -> Report:
    """Publish the registry's trust state to REPO (only what changed is rewritten)."""
    from vtreg.registry.fleet.repository import Repository, publish

    from .signing import open_keyref

    repository = Repository(repo)
    signer = repository.online_signer(lambda ref: open_keyref(ref, passphrase_file))
    at = utc_now()
    since = (
        None
        if full
        else repository.incremental_since(signer, at=at, snapshot_expires=snapshot_expires)
    )
    with open_registry(db_url) as registry:
        seq, state, touched = registry.publish_view(since)
        checkpoint = log_checkpoint(registry, repository.path)
    result = publish(
        repository,
        state,
        signer,
        at=at,
        timestamp_expires=timestamp_expires,
        snapshot_expires=snapshot_expires,
        targets_expires=targets_expires,
        checkpoint=checkpoint,
        touched=touched,
        seq=seq,
    )
    return _published(repo, result, "published")


@vtreg_command(fleet_group, "refresh")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--timestamp-expires", type=DURATION, default="1d", show_default=True)
@_passphrase_file
@db_option
def fleet_refresh(
    settings: Settings,
    repo: str,
    timestamp_expires: timedelta,
    passphrase_file: str | None,
    db_url: str | None,
) -> Report:
    """Re-sign REPO's timestamp only (a new expiry), e.g. from cron.

    With --db (or $VTREG_DATABASE_URL) it carries the audit log's latest checkpoint;
    without, the previous timestamp's.
    """
    import os

    from vtreg.registry.fleet.repository import Repository, refresh

    from .signing import open_keyref

    repository = Repository(repo)
    signer = repository.online_signer(lambda ref: open_keyref(ref, passphrase_file))
    checkpoint = None
    if db_url is not None or os.environ.get("VTREG_DATABASE_URL"):
        # Only when a registry is named: a cron box that holds the online key alone still
        # refreshes, carrying the previous timestamp's checkpoint forward.
        with open_registry(db_url) as registry:
            checkpoint = log_checkpoint(registry, repository.path)
    result = refresh(
        repository,
        signer,
        at=utc_now(),
        timestamp_expires=timestamp_expires,
        checkpoint=checkpoint,
    )
    return _published(repo, result, "refreshed")


@vtreg_command(fleet_group, "rotate-root")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option(
    "--old-key",
    "old_keys",
    multiple=True,
    required=True,
    metavar="KEYREF",
    help="A key of the current root (repeatable; a threshold of them must sign).",
)
@click.option(
    "--root-key",
    "root_keys",
    multiple=True,
    required=True,
    metavar="KEYREF",
    help="A key of the new root (repeatable; each signs; may repeat old keys).",
)
@click.option("--root-threshold", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--online-key",
    metavar="KEYREF",
    help="A new online key (rotates timestamp, snapshot, targets and bins at the next publish).",
)
@click.option("--root-expires", type=DURATION, default="365d", show_default=True)
@_passphrase_file
def fleet_rotate_root(
    settings: Settings,
    repo: str,
    old_keys: tuple[str, ...],
    root_keys: tuple[str, ...],
    root_threshold: int,
    online_key: str | None,
    root_expires: timedelta,
    passphrase_file: str | None,
) -> Report:
    """Write the next root version, signed by a threshold of the old and of the new root keys."""
    from vtreg.registry.fleet.repository import Repository, rotate_root

    from .signing import open_keyref

    repository = Repository(repo)
    old = [open_keyref(ref, passphrase_file) for ref in old_keys]
    new = [open_keyref(ref, passphrase_file) for ref in root_keys]
    online = open_keyref(online_key, passphrase_file) if online_key else None
    root = rotate_root(
        repository,
        old,
        new,
        root_threshold,
        expires=utc_now() + root_expires,
        online=online,
        online_key_file=online_key,
    )
    warnings = (
        [
            "run `vtreg fleet publish` now: under this root, hosts refuse what the old "
            "online key signed"
        ]
        if online is not None
        else []
    )
    return Report(
        data={"repository": repo, "root_version": root.version, "root_threshold": root_threshold},
        text=f"root v{root.version} written ({root_threshold} of {len(new)} root keys)",
        warnings=warnings,
    )


@vtreg_command(fleet_group, "sync")
@click.argument("source")
@_state_option
@click.option(
    "--root",
    "root_file",
    type=click.Path(dir_okay=False),
    help="Trusted root metadata for the first sync (e.g. 1.root.json, had out of band).",
)
@click.option(
    "--name",
    "names",
    multiple=True,
    metavar="NAME",
    help="A plugin name this host loads (repeatable): only their bins are downloaded, and "
    "only they can be decided (default: every name).",
)
@click.option(
    "--log",
    "log_vkey",
    metavar="VKEY",
    help="Witness the registry's audit log: the timestamp's checkpoint must be signed by this "
    "log key and extend the last one accepted (kept in STATE, demanded from then on).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False),
    help="As --log, with the witnesses a checkpoint needs: a C2SP tlog-policy file (log, "
    "witness, group, quorum lines), kept in STATE; a checkpoint under its quorum is refused.",
)
def fleet_sync(
    settings: Settings,
    source: str,
    state_path: str,
    root_file: str | None,
    names: tuple[str, ...],
    log_vkey: str | None,
    policy_file: str | None,
) -> Report:
    """Sync the host's trust state from a fleet repository (URL or directory).

    Exit 0: updated or unchanged; 1: refused (the attack is named; the state
    is unchanged; on a log fork, the evidence is printed); 3: the repository
    could not be reached or read.
    """
    from vtreg.registry.fleet.sync import sync
    from vtreg.verifier.files import read_bounded
    from vtreg.verifier.fork import ForkError

    root = read_bounded(root_file, 1 << 20, f"root {root_file}") if root_file else None
    policy = None
    if policy_file is not None:  # parsed, and kept in STATE, as its text
        policy = read_bounded(policy_file, 64 * 1024, f"policy {policy_file}").decode(
            "utf-8", "replace"
        )
    try:
        result = sync(
            source,
            state_path,
            root=root,
            clock=utc_now(),
            names=names or None,
            log=log_vkey,
            policy=policy,
        )
    except ForkError as e:
        return _forked(state_path, e)
    verb = "updated" if result.changed else "unchanged"
    return Report(
        data={"state": state_path, **result.to_json(), "roles": _roles_json(result.state)},
        text=f"{verb}: {_summary(result.state)}; {result.downloaded} bytes read",
    )


def _forked(state_path: str, error: ForkError) -> Report:
    """A refused sync whose log forked: the evidence, as `vtreg audit verify` prints it."""
    from vtreg.verifier.text import printable

    from ._app import EXIT_REFUSED, error_detail

    data = {
        "state": state_path,
        "fork": True,
        "evidence": error.evidence.to_json(),
        "error": error_detail(error, EXIT_REFUSED, printable(str(error))),
    }
    text = f"refused: audit log FORKED: {printable(str(error))}\n\n{error.evidence.text()}"
    return Report(data=data, text=text, exit_code=EXIT_REFUSED)


def _roles_json(state: FleetState) -> dict[str, dict[str, object]]:
    """Each trusted role's version and expiry, in the --json vocabulary (``expires_at``)."""
    from vtreg.verifier.envelope import format_time

    return {
        name: {"version": info.version, "expires_at": format_time(info.expires)}
        for name, info in sorted(state.roles.items())
    }


def _summary(state: FleetState) -> str:
    from vtreg.verifier.envelope import format_time

    roles = state.roles
    return (
        f"root v{roles['root'].version}, timestamp v{roles['timestamp'].version}, snapshot "
        f"v{roles['snapshot'].version}, expires {format_time(state.expires)}"
    )


@vtreg_command(fleet_group, "status")
@_state_option
def fleet_status(settings: Settings, state_path: str) -> Report:
    """Show the host's fleet state: versions, expiry, last sync, entries."""
    from vtreg.registry.fleet.state import read_fleet_state
    from vtreg.verifier.envelope import format_time

    state = read_fleet_state(state_path)
    now = utc_now()
    expired = state.reference_time(now) >= state.expires
    contents = state.contents
    data = {
        "state": state_path,
        "source": state.source,
        "synced_at": format_time(state.synced_at),
        "expires_at": format_time(state.expires),
        "expired": expired,
        "roles": _roles_json(state),
        "keys": state.keys,
        "contents": contents,
    }
    text = "\n".join(
        [
            f"fleet state {path_text(state_path)} from {path_text(state.source)}",
            f"  {_summary(state)}{' (EXPIRED)' if expired else ''}",
            f"  last sync  {format_time(state.synced_at)}",
            f"  entries    {state.keys} keys, {contents} contents",
        ]
    )
    return Report(data=data, text=text)


def verify_with_fleet(
    state_path: str,
    grace: timedelta | None,
    threshold: int,
    directory: str,
    pending: PendingCapture | None,
) -> VerifiedPlugin:
    """``vtreg verify DIR --fleet STATE``: decide from the host's fleet state alone."""
    import dataclasses

    from vtreg.registry.fleet.trust import FleetTrust, LazyHostAudit
    from vtreg.verifier.decision import authenticate, decide
    from vtreg.verifier.tree import capture, read_signature

    audit = LazyHostAudit()
    try:
        trust = FleetTrust(state_path, grace=grace, audit=audit)
        signature = read_signature(directory)
        state = dataclasses.replace(trust.state_for(signature), threshold=threshold)
    finally:
        audit.close()
    at = utc_now()
    signed = authenticate(signature, state, at=at)
    early = pending.result(signature, signed.expected) if pending is not None else None
    tree = early or capture(
        directory, expect=signed.expected, algorithms=signed.algorithms, exclude=signed.exclude
    )
    from vtreg.verifier.platforms import host_platform

    return decide(tree, state, at=at, signed=signed, platform=host_platform())
