"""Operator commands on the registry: keys, trust, revoke, list, show, db."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vtreg.verifier.text import printable

from ._app import Report, Settings, chain_digest, cli, stream_json, vtreg_command
from ._paging import PAGE, Page, on_terminal, table_lines
from ._params import DIGEST, KEY_ID, NAME, TIME_OR_DURATION, utc_now

if TYPE_CHECKING:
    from vtreg.registry.records import KeyChange, PluginInfo
    from vtreg.registry.service import Registry

__all__ = ["confirm", "db_option", "open_registry"]

F = TypeVar("F", bound=Callable[..., Any])


def db_option(fn: F) -> F:
    """The ``--db URL`` option of the commands that work on the registry."""
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        help="Registry database URL (default: $VTREG_DATABASE_URL, else SQLite in $VTREG_HOME).",
    )(fn)


def open_registry(url: str | None, *, upgrade: bool = False, create: bool = False) -> Registry:
    """The registry at ``url`` (default: the environment's), importing SQLAlchemy only now.

    Only commands that write trust (``key add``, ``trust``, ``db upgrade``, ``audit init``)
    pass ``create``: any other command run against a mistyped URL says there is
    no registry there instead of showing a new, empty one.
    """
    from vtreg.registry.service import Registry

    return Registry.open(url, upgrade=upgrade, create=create)


def confirm(settings: Settings, yes: bool, question: str) -> None:
    """Ask ``question`` on a terminal unless ``--yes``; elsewhere (a script) go ahead.

    Raises:
        VtregError: the answer was no (nothing was done).
    """
    import sys

    from vtreg.verifier.errors import VtregError

    if yes or not sys.stdin.isatty():
        return
    if not click.confirm(printable(question), default=False, err=True):
        raise VtregError("not confirmed: nothing was changed")


def _yes_and_dry_run(fn: F) -> F:
    fn = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(fn)
    return click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")(
        fn
    )


def _short(keyid: str) -> str:
    return keyid[:16]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    return "\n".join(table_lines(headers, rows))


def _when(value: datetime | None) -> str:
    from vtreg.verifier.times import format_time  # not envelope's: that imports pydantic

    return format_time(value) if value else "-"


# --- keys ---


@cli.group("key")
def key_group() -> None:
    """Trust, list, change and revoke publisher keys."""


@vtreg_command(key_group, "add")
@click.argument("pubfile")
@click.option("--name", type=NAME, help="Name to show for the key (default: from the file).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="GLOB",
    help="Plugin names this key may sign (glob, repeatable; default: any).",
)
@click.option("--expires", type=TIME_OR_DURATION, help="When trust in the key ends (date or 1y).")
@db_option
def key_add(
    settings: Settings,
    pubfile: str,
    name: str | None,
    scopes: tuple[str, ...],
    expires: datetime | None,
    db_url: str | None,
) -> Report:
    """Trust the publisher key in PUBFILE."""
    from vtreg.verifier.keys import read_public_key_file

    public = read_public_key_file(pubfile)
    with open_registry(db_url, create=True) as registry:
        info, added = registry.add_key(public, name=name, scopes=scopes, expires=expires)
    verb = "trusted" if added else "already trusted:"
    warnings = []
    if not added and expires is not None and expires != info.expires_at:
        warnings.append(
            f"key {_short(info.keyid)} keeps its expiry ({info.expires_text}): adding it again "
            "does not change it (`vtreg key set --expires` does)"
        )
    return Report(
        data={"created": added, "changed": added, "key": info.to_json(utc_now())},
        text=f"{verb} key {_short(info.keyid)} ({info.name}); may sign {info.may_sign}; "
        f"expires {info.expires_text}",
        warnings=warnings,
    )


@vtreg_command(key_group, "list")
@db_option
def key_list(settings: Settings, db_url: str | None) -> Report:
    """List the registry's keys (revoked and expired ones included)."""
    from vtreg.registry.listing import key_infos
    from vtreg.registry.reader import read_registry

    now = utc_now()
    with read_registry(db_url) as reader:
        keys = key_infos(reader)
    rows = [
        [
            _short(k.keyid),
            k.name,
            k.status(now),
            ",".join(k.scopes) or "*",
            _when(k.expires_at),
            _when(k.added_at),
        ]
        for k in keys
    ]
    text = _table(["KEYID", "NAME", "STATUS", "SCOPE", "EXPIRES", "ADDED"], rows) or "no keys"
    return Report(data={"keys": [k.to_json(now) for k in keys]}, text=text)


@vtreg_command(key_group, "revoke")
@click.argument("keyid", type=KEY_ID)
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@_yes_and_dry_run
@db_option
def key_revoke(
    settings: Settings, keyid: str, reason: str, yes: bool, dry_run: bool, db_url: str | None
) -> Report:
    """Revoke a key: its signatures stop counting, for every plugin, from now on (final).

    KEYID is a key id, a unique prefix of 8 or more hex digits, or a key's name.
    """
    with open_registry(db_url) as registry:
        keyid = registry.resolve_keyid(keyid)
        if not dry_run:
            preview = registry.revoke_key(keyid, reason, dry_run=True)
            if preview.changed:
                confirm(
                    settings,
                    yes,
                    f"Revoke key {_short(keyid)} ({preview.key.name}) for good? "
                    f"{_count(preview.unloadable, 'trusted plugin')} would stop loading",
                )
        change = registry.revoke_key(keyid, reason, dry_run=dry_run)
        signed = registry.plugins(signed_by=change.key.keyid, revoked=False)
    info = change.key
    return Report(
        data={
            "changed": change.changed and not dry_run,
            "dry_run": dry_run,
            "key": info.to_json(utc_now()),
            "signed": [p.to_json() for p in signed],
            "unloadable": [p.to_json() for p in change.unloadable],
        },
        text=_key_revoke_text(change, signed, reason, dry_run),
    )


def _key_revoke_text(
    change: KeyChange, signed: list[PluginInfo], reason: str, dry_run: bool
) -> str:
    info = change.key
    if not change.changed:
        return f"key {_short(info.keyid)} was already revoked at {_when(info.revoked_at)}"
    verb = "would revoke" if dry_run else "revoked"
    return (
        f"{verb} key {_short(info.keyid)} ({info.name}): {reason}\n"
        f"trusted plugins it signed: {_labels(signed)}\n"
        f"{'would stop' if dry_run else 'stopped'} loading (too few other signers): "
        f"{_labels(change.unloadable)}"
    )


@vtreg_command(key_group, "set")
@click.argument("keyid", type=KEY_ID)
@click.option("--expires", type=TIME_OR_DURATION, help="New end of trust in the key (date or 1y).")
@click.option("--no-expiry", is_flag=True, help="Trust the key with no end date.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="GLOB",
    help="Plugin names the key may sign, replacing its scope (repeatable); '*' for any.",
)
@db_option
def key_set(
    settings: Settings,
    keyid: str,
    expires: datetime | None,
    no_expiry: bool,
    scopes: tuple[str, ...],
    db_url: str | None,
) -> Report:
    """Change a trusted key's expiry or scope (audited). A revoked key stays revoked."""
    new_scopes = None if not scopes else [] if scopes == ("*",) else list(scopes)
    with open_registry(db_url) as registry:
        change = registry.set_key(keyid, expires=expires, no_expiry=no_expiry, scopes=new_scopes)
    info = change.key
    what = "changed" if change.changed else "unchanged:"
    text = (
        f"{what} key {_short(info.keyid)} ({info.name}); may sign {info.may_sign}; "
        f"expires {info.expires_text}"
    )
    if change.unloadable:
        text += f"\nstopped loading: {_labels(change.unloadable)}"
    return Report(
        data={
            "changed": change.changed,
            "key": info.to_json(utc_now()),
            "unloadable": [p.to_json() for p in change.unloadable],
        },
        text=text,
    )


# --- plugins ---


@vtreg_command(cli, "trust")
@click.argument("directories", nargs=-1, required=True, metavar="DIR...")
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Distinct trusted keys that must have signed (now and at every later check).",
)
@click.option(
    "--pin", is_flag=True, help="Allow this version even when a newer one is trusted (no rollback)."
)
@click.option(
    "--replace",
    is_flag=True,
    help="Stop trusting another content of this same version (audited).",
)
@db_option
def trust(
    settings: Settings,
    directories: tuple[str, ...],
    threshold: int,
    pin: bool,
    replace: bool,
    db_url: str | None,
) -> Report:
    """Verify each plugin DIR against the registry's keys and trust its exact content.

    A DIR may also be a plugin.sig file alone: its signed statement pins every
    file's digest, so the plugin's files are not needed to trust it (each load
    checks them). Several directories are trusted in one process; `-` reads their paths from stdin,
    one a line. Then each gets one line (with --json: a result each) and a summary.
    """
    from ._batch import batch, single
    from ._batch import directories as named

    names = named(directories)
    with open_registry(db_url, create=True) as registry:

        def one(directory: str) -> Report:
            return _trust_one(registry, directory, threshold, pin, replace)

        if single(directories, names):
            return one(names[0])
        return batch(names, one, done="trusted")


def _trust_one(
    registry: Registry, directory: str, threshold: int, pin: bool, replace: bool
) -> Report:
    from pathlib import Path

    if Path(directory).is_file():  # a plugin.sig alone: its statement pins every file
        from vtreg.verifier.files import read_bounded
        from vtreg.verifier.layout import MAX_SIGNATURE_BYTES

        envelope = read_bounded(directory, MAX_SIGNATURE_BYTES, f"signature file {directory}")
        result = registry.trust_signature(
            envelope, path=directory, threshold=threshold, pin=pin, replace=replace
        )
    else:
        tree = registry.capture_signed("plugin.trust", directory, at=utc_now(), threshold=threshold)
        result = registry.trust(tree, threshold=threshold, pin=pin, replace=replace)
    info = result.plugin
    if result.created:
        what = f"trusted {info.name} {info.version}"
    elif result.previous_signers is not None:
        what = f"trusted {info.name} {info.version} with a newly signed envelope"
    elif result.changed:
        what = f"updated trust in {info.name} {info.version}"
    else:
        what = f"already trusted: {info.name} {info.version}"
    warnings = []
    if result.newer and not info.pinned:
        warnings.append(
            f"{info.name} {result.newer} is also trusted: {info.version} will be refused as a "
            "rollback unless pinned (vtreg trust --pin)"
        )
    lines = [
        what,
        f"  content    {info.content_digest}",
        f"  platform   {info.platform}",
        f"  signed by  {', '.join(_short(k) for k in info.signers)}",
    ]
    if result.previous_signers is not None:
        lines.append(f"  before     {', '.join(_short(k) for k in result.previous_signers)}")
    lines += [f"  replaced   {d} (no longer trusted)" for d in result.replaced]
    lines.append(f"  status     {info.status}")
    return Report(
        data={
            "created": result.created,
            "changed": result.changed,
            "plugin": info.to_json(),
            "previous_signers": list(result.previous_signers or ()),
            "replaced": list(result.replaced),
        },
        text="\n".join(lines),
        warnings=warnings,
    )


def _target(target: str | None, digest: str | None) -> tuple[str | None, str | None]:
    """NAME[@VERSION] as (name, version); exactly one of it and --digest."""
    from vtreg.verifier.errors import UsageError

    if (target is None) == (digest is None):
        raise UsageError("give NAME, NAME@VERSION or --digest DIGEST (exactly one)")
    name, at, version = (target or "").partition("@")
    if target is not None and (not name or (at and not version) or "@" in version):
        # "@1.0" must never widen to "every plugin at version 1.0"
        raise UsageError(f"{target!r} is not NAME or NAME@VERSION")
    return name or None, version or None


_target_argument = click.argument("target", required=False, metavar="NAME[@VERSION]")
_digest_option = click.option(
    "--digest",
    type=DIGEST,
    help="One exact content digest (sha256:..., or a prefix of 8+ hex digits).",
)


@vtreg_command(cli, "revoke")
@_target_argument
@_digest_option
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@_yes_and_dry_run
@db_option
def revoke(
    settings: Settings,
    target: str | None,
    digest: str | None,
    reason: str,
    yes: bool,
    dry_run: bool,
    db_url: str | None,
) -> Report:
    """Revoke trusted plugins for good: every version of NAME, NAME@VERSION, or --digest.

    A revoked content can never be trusted again; to stop trusting one without
    that ban, use `vtreg untrust`. Revoking what is revoked already succeeds.
    """
    from vtreg.verifier.errors import NotFoundError

    name, version = _target(target, digest)
    with open_registry(db_url) as registry:
        matches = registry.matching(name=name, version=version, digest=digest)
        if not matches:
            raise NotFoundError(
                f"nothing trusted matches {target or digest} (it was never trusted)"
            )
        pending = [p for p in matches if p.revoked_at is None]
        if pending and not dry_run:
            confirm(settings, yes, f"Revoke for good: {_labels(pending)}?")
        done = (
            registry.revoke(name=name, version=version, digest=digest, reason=reason)
            if pending and not dry_run
            else []
        )
    already = [p for p in matches if p.revoked_at is not None]
    if dry_run:
        lines = [f"would revoke {p.label}" for p in pending]
    else:
        lines = [f"revoked {p.label}: {reason}" for p in done]
    lines += [f"already revoked: {p.label} at {_when(p.revoked_at)}" for p in already]
    return Report(
        data={
            "changed": bool(done),
            "dry_run": dry_run,
            "revoked": [p.to_json() for p in done],
            "would_revoke": [p.to_json() for p in pending] if dry_run else [],
            "already_revoked": [p.to_json() for p in already],
        },
        text="\n".join(lines),
    )


@vtreg_command(cli, "untrust")
@_target_argument
@_digest_option
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@_yes_and_dry_run
@db_option
def untrust(
    settings: Settings,
    target: str | None,
    digest: str | None,
    reason: str,
    yes: bool,
    dry_run: bool,
    db_url: str | None,
) -> Report:
    """Stop trusting plugins (NAME, NAME@VERSION or --digest) without banning them.

    Unlike `vtreg revoke`, `vtreg trust` may trust the same content again later.
    Revoked contents stay revoked.
    """
    from vtreg.verifier.errors import NotFoundError

    name, version = _target(target, digest)
    with open_registry(db_url) as registry:
        matches = registry.matching(name=name, version=version, digest=digest)
        pending = [p for p in matches if p.revoked_at is None]
        if dry_run and not matches:
            raise NotFoundError(f"nothing trusted matches {target or digest}")
        if pending and not dry_run:
            confirm(settings, yes, f"Stop trusting {_labels(pending)}?")
        done = (
            pending
            if dry_run
            else registry.untrust(name=name, version=version, digest=digest, reason=reason)
        )
    verb = "would untrust" if dry_run else "untrusted"
    return Report(
        data={
            "changed": bool(done) and not dry_run,
            "dry_run": dry_run,
            "untrusted": [p.to_json() for p in done],
        },
        text="\n".join(f"{verb} {p.label}: {reason}" for p in done),
    )


def _count(items: tuple[object, ...] | list[PluginInfo], what: str) -> str:
    return f"{len(items)} {what}" + ("" if len(items) == 1 else "s")


def _labels(plugins: tuple[PluginInfo, ...] | list[PluginInfo]) -> str:
    return ", ".join(p.label for p in plugins) or "none"


def _plugin_row(p: dict[str, Any]) -> list[str]:
    """A --json plugin document as a row of the table (its times are format_time's)."""
    from vtreg.registry.records import short_digest

    return [
        p["name"],
        p["version"],
        "+".join(p["platforms"]),
        p["status"] + (" (pinned)" if p["pinned"] else ""),
        ",".join(_short(k) for k in p["signers"]) or "-",
        short_digest(p["content_digest"]),
        p["trusted_at"],
    ]


def _document_label(p: dict[str, Any]) -> str:
    """:attr:`PluginInfo.label` of a --json plugin document."""
    from vtreg.registry.records import short_digest

    return f"{p['name']}@{p['version']} ({short_digest(p['content_digest'])})"


_PLUGIN_HEADERS = ["NAME", "VERSION", "PLATFORM", "STATUS", "SIGNERS", "DIGEST", "TRUSTED"]


@vtreg_command(cli, "list")
@click.option(
    "--signed-by",
    type=KEY_ID,
    metavar="KEYID",
    help="Only plugins this key (id, prefix or name) signed, now or in an envelope replaced since.",
)
@click.option("--revoked", is_flag=True, help="Only revoked plugins.")
@click.option(
    "--after",
    type=DIGEST,
    metavar="DIGEST",
    help="Continue after this content (in list order): the `next` of a truncated answer.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help=f"At most this many plugins (default: all; {PAGE} on a terminal).",
)
@db_option
def list_plugins(
    settings: Settings,
    signed_by: str | None,
    revoked: bool,
    after: str | None,
    limit: int | None,
    db_url: str | None,
) -> Report:
    """List trusted plugin versions and whether each would load now.

    STATUS is `loadable`, or the refusal code a load would meet now (for
    example `key-revoked`, `rollback`, `content-revoked`: docs/codes.md),
    judged from the envelope last trusted for that content.

    With --json or output that is not a terminal, every match is printed
    unless --limit is given; on a terminal, a page of 50, and stderr says how
    many more there are. A truncated answer names the content to continue
    --after (`next` in JSON).
    """
    from vtreg.registry.listing import PluginQuery, count_plugins, plugin_documents, resolve_keyid
    from vtreg.registry.reader import read_registry

    if limit is None and not settings.json and on_terminal():
        limit = PAGE
    with read_registry(db_url) as reader:
        keyid = resolve_keyid(reader, signed_by) if signed_by else None
        query = PluginQuery(signed_by=keyid, revoked=True if revoked else None, after=after)
        page = Page(plugin_documents(reader, query), limit, lambda p: str(p["content_digest"]))
        if settings.json:  # read, judged and written a row at a time: constant memory
            stream_json("plugins", page, lambda: _list_tail(page))
        else:
            _print_plugins(page, keyid)
        more = count_plugins(reader, replace(query, after=page.last)) if page.truncated else 0
    if page.truncated and not settings.json:
        click.echo(
            f"vtreg: {more} more plugin{'s' if more != 1 else ''}: continue with "
            f"--after {page.last}, or give --limit",
            err=True,
        )
    return Report(data={}, text="", printed=True)


def _list_tail(page: Page[dict[str, Any], str]) -> dict[str, Any]:
    return {"truncated": page.truncated, "next": page.last if page.truncated else None}


def _print_plugins(plugins: Iterable[dict[str, Any]], keyid: str | None) -> None:
    """The table of ``plugins`` on stdout, streamed; then, for --signed-by, those the key
    signed only in an envelope replaced since."""
    former: list[str] = []

    def rows() -> Iterator[list[str]]:
        for p in plugins:
            if keyid is not None and keyid in p["former_signers"]:
                former.append(_document_label(p))
            yield _plugin_row(p)

    out = sys.stdout  # a line at a time: click.echo's checks cost more than the line
    shown = False
    for line in table_lines(_PLUGIN_HEADERS, rows()):
        out.write(line + "\n")
        shown = True
    if not shown:
        out.write("no plugins\n")
    if former:
        out.write(f"signed by {_short(keyid or '')} before a newer envelope: {', '.join(former)}\n")
    out.flush()


@vtreg_command(cli, "show")
@click.argument("name", type=NAME)
@db_option
def show(settings: Settings, name: str, db_url: str | None) -> Report:
    """Show every trusted version of plugin NAME, and whether each would load now."""
    from vtreg.registry.listing import PluginQuery, key_infos, plugin_documents
    from vtreg.registry.reader import read_registry
    from vtreg.verifier.errors import NotFoundError

    with read_registry(db_url) as reader:
        plugins = list(plugin_documents(reader, PluginQuery(name=name)))
        names = {k.keyid: k.name for k in key_infos(reader)}
    if not plugins:
        raise NotFoundError(f"no plugin named {name} in the registry")

    def keys(keyids: list[str]) -> str:
        return ", ".join(f"{_short(k)} ({names[k]})" if k in names else _short(k) for k in keyids)

    blocks = []
    for p in plugins:
        lines = [
            f"{p['name']} {p['version']}" + (" [revoked]" if p["revoked_at"] else ""),
            f"  status     {p['status']}",
            f"  content    {p['content_digest']}",
            f"  platform   {'+'.join(p['platforms'])}",
            f"  signed by  {keys(p['signers']) or '-'} (threshold {p['threshold']})",
            f"  trusted    {p['trusted_at']} by {p['trusted_by']}"
            + (" (pinned)" if p["pinned"] else ""),
        ]
        if p["former_signers"]:
            lines.append(f"  earlier    {keys(p['former_signers'])}")
        if p["revoked_at"]:
            lines.append(f"  revoked    {p['revoked_at']}: {p['revoked_reason']}")
        blocks.append("\n".join(lines))
    return Report(data={"plugins": plugins}, text="\n\n".join(blocks))


# --- database ---


@cli.group("db")
def db_group() -> None:
    """Registry database maintenance."""


@vtreg_command(db_group, "upgrade")
@db_option
def db_upgrade(settings: Settings, db_url: str | None) -> Report:
    """Create the registry, or migrate it to this vtreg's schema."""
    from vtreg.registry.db import connect, default_url, ensure_schema, normalize_url, safe_url

    url = normalize_url(db_url or default_url())
    engine = connect(url)
    try:
        found, now = ensure_schema(engine, upgrade=True)
    finally:
        engine.dispose()
    text = (
        f"registry {safe_url(url)} is at revision {now}"
        if found == now
        else f"registry {safe_url(url)} upgraded from {found or 'nothing'} to revision {now}"
    )
    data: dict[str, object] = {"created": found is None, "changed": found != now}
    data |= {"url": safe_url(url), "from": found, "to": now}
    return Report(data=data, text=text)


@vtreg_command(db_group, "info")
@db_option
def db_info(settings: Settings, db_url: str | None) -> Report:
    """Which registry this is, its schema revision, what it holds, where the audit log stands."""
    from vtreg.registry.listing import registry_info
    from vtreg.registry.reader import read_registry

    with read_registry(db_url) as reader:
        info = registry_info(reader)
    head = info["audit"]
    head["head"] = chain_digest(head["head"])
    text = "\n".join(
        [
            f"registry   {info['url']} ({info['engine']})",
            f"schema     revision {info['revision']} (this vtreg: {info['head_revision']})",
            f"keys       {info['keys']['trusted']} trusted, {info['keys']['revoked']} revoked",
            f"plugins    {info['plugins']['trusted']} trusted, "
            f"{info['plugins']['revoked']} revoked",
            f"audit log  {head['events']} events, head {head['head'] or '-'}, "
            f"last at {head['last_at'] or '-'}",
            f"actor      {info['actor']}",
        ]
    )
    return Report(data=info, text=text)
