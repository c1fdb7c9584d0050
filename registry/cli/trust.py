"""Operator commands on the registry: keys, trust, revoke, list, show, db."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vtreg.verifier.text import printable

from ._app import Report, Settings, cli, vtreg_command
from ._params import NAME, TIME_OR_DURATION, utc_now

if TYPE_CHECKING:
    from vtreg.registry.records import PluginInfo
    from vtreg.registry.service import Registry

__all__ = ["db_option", "open_registry"]

F = TypeVar("F", bound=Callable[..., Any])


def db_option(fn: F) -> F:
    """The ``--db URL`` option of the commands that work on the registry."""
    return click.option(
        "--db",
        "db_url",
        metavar="URL",
        help="Registry database URL (default: $VTREG_DATABASE_URL, else SQLite in $VTREG_HOME).",
    )(fn)


def open_registry(url: str | None, *, upgrade: bool = False) -> Registry:
    """The registry at ``url`` (default: the environment's), importing SQLAlchemy only now."""
    from vtreg.registry.service import Registry

    return Registry.open(url, upgrade=upgrade)


def _short(keyid: str) -> str:
    return keyid[:16]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return ""
    rows = [[printable(cell) for cell in row] for row in rows]  # names, reasons: from outside
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _when(value: datetime | None) -> str:
    from vtreg.verifier.envelope import format_time

    return format_time(value) if value else "-"


# --- keys ---


@cli.group("key")
def key_group() -> None:
    """Trust, list and revoke publisher keys."""


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
    with open_registry(db_url) as registry:
        info, added = registry.add_key(public, name=name, scopes=scopes, expires=expires)
    verb = "trusted" if added else "already trusted:"
    warnings = []
    if not added and expires is not None and expires != info.expires_at:
        warnings.append(
            f"key {_short(info.keyid)} keeps its expiry ({info.expires_text}): adding it again "
            "does not change it"
        )
    return Report(
        data={"added": added, "key": info.to_json(utc_now())},
        text=f"{verb} key {_short(info.keyid)} ({info.name}); may sign {info.may_sign}; "
        f"expires {info.expires_text}",
        warnings=warnings,
    )


@vtreg_command(key_group, "list")
@db_option
def key_list(settings: Settings, db_url: str | None) -> Report:
    """List the registry's keys (revoked and expired ones included)."""
    now = utc_now()
    with open_registry(db_url) as registry:
        keys = registry.list_keys()
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
@click.argument("keyid")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@db_option
def key_revoke(settings: Settings, keyid: str, reason: str, db_url: str | None) -> Report:
    """Revoke a key: its signatures stop counting, for every plugin, from now on."""
    with open_registry(db_url) as registry:
        info, revoked = registry.revoke_key(keyid, reason)
        signed = registry.plugins(signed_by=info.keyid, revoked=False)
    affected = ", ".join(f"{p.name}@{p.version}" for p in signed) or "none"
    text = (
        f"revoked key {_short(info.keyid)} ({info.name}): {reason}\n"
        f"trusted plugins it signed (now valid only with enough other signers): {affected}"
        if revoked
        else f"key {_short(info.keyid)} was already revoked at {_when(info.revoked_at)}"
    )
    return Report(
        data={
            "revoked": revoked,
            "key": info.to_json(utc_now()),
            "signed": [p.to_json() for p in signed],
        },
        text=text,
    )


# --- plugins ---


@vtreg_command(cli, "trust")
@click.argument("directory")
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
@db_option
def trust(
    settings: Settings, directory: str, threshold: int, pin: bool, db_url: str | None
) -> Report:
    """Verify DIRECTORY against the registry's keys and trust its exact content."""
    with open_registry(db_url) as registry:
        tree = registry.capture_signed("plugin.trust", directory, at=utc_now(), threshold=threshold)
        result = registry.trust(tree, threshold=threshold, pin=pin)
    info = result.plugin
    if result.created:
        what = f"trusted {info.name} {info.version}"
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
    signers = ", ".join(_short(k) for k in info.signers)
    return Report(
        data={"created": result.created, "changed": result.changed, "plugin": info.to_json()},
        text=f"{what}\n  content    {info.content_digest}\n  signed by  {signers}",
        warnings=warnings,
    )


@vtreg_command(cli, "revoke")
@click.argument("target", required=False, metavar="NAME[@VERSION]")
@click.option("--digest", help="Revoke one exact content digest (sha256:...).")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@db_option
def revoke(
    settings: Settings, target: str | None, digest: str | None, reason: str, db_url: str | None
) -> Report:
    """Revoke trusted plugins: every version of NAME, NAME@VERSION, or --digest."""
    from vtreg.verifier.errors import UsageError

    if (target is None) == (digest is None):
        raise UsageError("give NAME, NAME@VERSION or --digest DIGEST (exactly one)")
    name, at, version = (target or "").partition("@")
    if target is not None and (not name or (at and not version) or "@" in version):
        # "@1.0" must never widen to "every plugin at version 1.0"
        raise UsageError(f"{target!r} is not NAME or NAME@VERSION")
    with open_registry(db_url) as registry:
        revoked = registry.revoke(
            name=name or None, version=version or None, digest=digest, reason=reason
        )
    lines = [f"revoked {p.name} {p.version} ({p.content_digest}): {reason}" for p in revoked]
    return Report(data={"revoked": [p.to_json() for p in revoked]}, text="\n".join(lines))


def _plugin_rows(plugins: list[PluginInfo]) -> list[list[str]]:
    return [
        [
            p.name,
            p.version,
            "revoked" if p.revoked_at else ("pinned" if p.pinned else "trusted"),
            ",".join(_short(k) for k in p.signers),
            p.content_digest[:23] + "…",
            _when(p.trusted_at),
        ]
        for p in plugins
    ]


_PLUGIN_HEADERS = ["NAME", "VERSION", "STATUS", "SIGNERS", "DIGEST", "TRUSTED"]


@vtreg_command(cli, "list")
@click.option("--signed-by", metavar="KEYID", help="Only plugins this key (id or prefix) signed.")
@click.option("--revoked", is_flag=True, help="Only revoked plugins.")
@db_option
def list_plugins(
    settings: Settings, signed_by: str | None, revoked: bool, db_url: str | None
) -> Report:
    """List trusted plugin versions."""
    with open_registry(db_url) as registry:
        keyid = registry.resolve_keyid(signed_by) if signed_by else None
        plugins = registry.plugins(signed_by=keyid, revoked=True if revoked else None)
    text = _table(_PLUGIN_HEADERS, _plugin_rows(plugins)) or "no plugins"
    return Report(data={"plugins": [p.to_json() for p in plugins]}, text=text)


@vtreg_command(cli, "show")
@click.argument("name", type=NAME)
@db_option
def show(settings: Settings, name: str, db_url: str | None) -> Report:
    """Show every trusted version of plugin NAME."""
    from vtreg.verifier.errors import NotFoundError

    with open_registry(db_url) as registry:
        plugins = registry.plugins(name=name)
        names = {k.keyid: k.name for k in registry.list_keys()}
    if not plugins:
        raise NotFoundError(f"no plugin named {name} in the registry")
    blocks = []
    for p in plugins:
        signers = ", ".join(
            f"{_short(k)} ({names[k]})" if k in names else _short(k) for k in p.signers
        )
        lines = [
            f"{p.name} {p.version}" + (" [revoked]" if p.revoked_at else ""),
            f"  content    {p.content_digest}",
            f"  platform   {p.platform}",
            f"  signed by  {signers} (threshold {p.threshold})",
            f"  trusted    {_when(p.trusted_at)} by {p.trusted_by}"
            + (" (pinned)" if p.pinned else ""),
        ]
        if p.revoked_at:
            lines.append(f"  revoked    {_when(p.revoked_at)}: {p.revoked_reason}")
        blocks.append("\n".join(lines))
    return Report(data={"plugins": [p.to_json() for p in plugins]}, text="\n\n".join(blocks))


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
    return Report(data={"url": safe_url(url), "from": found, "to": now}, text=text)
