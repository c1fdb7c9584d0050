"""``vtreg audit``: query the audit log, and ``vtreg audit verify``: check its hash chain."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import click

from vtreg.verifier.text import printable

from ._app import (
    EXIT_REFUSED,
    Report,
    Settings,
    chain_digest,
    cli,
    emit_report,
    error_detail,
    stream_json,
    vtreg_command,
)
from ._paging import PAGE, Page, on_terminal
from ._params import DIGEST, KEY_ID, PAST_TIME
from .checkpoint import checkpoint_options, checkpoint_report
from .trust import _table, _when, db_option, open_registry

if TYPE_CHECKING:
    from vtreg.registry.audit import AuditRecord, ChainReport, QueryFilters

__all__ = ["audit_group"]

ACTIONS = (
    "key.add",
    "key.set",
    "key.revoke",
    "plugin.trust",
    "plugin.untrust",
    "plugin.revoke",
    "plugin.verify",
    "plugin.load",
)
OUTCOMES = ("ok", "allowed", "refused", "error")
_HEADERS = ["SEQ", "AT", "ACTION", "OUTCOME", "PLUGIN", "DIGEST", "KEYS", "ACTOR", "REASON"]


@cli.group("audit", invoke_without_command=True)
@click.option(
    "--plugin", metavar="NAME", help="Events about this plugin name (or glob: 'hello-*')."
)
@click.option("--key", "key", type=KEY_ID, help="Events involving this key (id, prefix, name).")
@click.option("--action", type=click.Choice(ACTIONS), help="Only this action.")
@click.option("--outcome", type=click.Choice(OUTCOMES), help="Only this outcome.")
@click.option("--actor", metavar="WHO", help="Only events recorded by this actor ($VTREG_ACTOR).")
@click.option("--digest", type=DIGEST, help="Events about this content (digest or prefix).")
@click.option("--since", type=PAST_TIME, help="From this time on (date/time, or 24h, 7d ago).")
@click.option("--until", type=PAST_TIME, help="Before this time (date/time, or 24h, 7d ago).")
@click.option(
    "--after",
    type=click.IntRange(min=1),
    metavar="SEQ",
    help="Continue after event SEQ (older ones only): the `next` of a truncated answer.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help=f"At most this many events (default: all; {PAGE} on a terminal).",
)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")
@click.option("--verbose", is_flag=True, help="Show a traceback with any error.")
@db_option
@click.pass_context
def audit_group(
    ctx: click.Context,
    key: str | None,
    as_csv: bool,
    as_json: bool,
    verbose: bool,
    db_url: str | None,
    **filters: Unpack[QueryFilters],
) -> None:
    """Show audit events, newest first (filters combine). See also `vtreg audit verify`.

    With --json, --csv or output that is not a terminal, every matching event
    is printed unless --limit is given; on a terminal, a page of 50, and
    stderr says how many more there are. A truncated answer names the event
    to continue --after (`next` in JSON).
    """
    settings = ctx.ensure_object(Settings)
    settings.json |= as_json
    settings.verbose |= verbose
    if ctx.invoked_subcommand is not None:
        settings.db = db_url
        return
    from vtreg.verifier.errors import UsageError

    if as_csv and settings.json:
        raise UsageError("--csv and --json are alternatives")
    paged = filters.get("limit") is None and not (as_csv or settings.json) and on_terminal()
    limit = PAGE if paged else filters.get("limit")
    from vtreg.registry.audit_read import count_events, event_stream
    from vtreg.registry.listing import resolve_keyid
    from vtreg.registry.reader import read_registry

    with read_registry(db_url) as reader:
        filters["keyid"] = resolve_keyid(reader, key) if key else None
        unlimited: QueryFilters = {**filters, "limit": None}
        page = Page(event_stream(reader, **unlimited), limit, lambda event: event.seq)
        if as_csv:
            _write_csv(page)
        elif settings.json:
            _write_json(page)
        else:
            emit_report(_report(list(page)), settings)
        below: QueryFilters = {**unlimited, "after": page.last}
        more = count_events(reader, **below) if page.truncated and page.last is not None else 0
    if page.truncated and not settings.json:
        click.echo(
            f"vtreg: {more} more event{'s' if more != 1 else ''}: continue with "
            f"--after {page.last}, or give --limit",
            err=True,
        )


# A cell a spreadsheet would read as a formula (OWASP, "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    """``value`` for a CSV cell: text that would start a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _write_csv(events: Iterable[AuditRecord]) -> None:
    """The events as CSV on stdout, one row at a time."""
    from vtreg.verifier.audit_event import JSON_FIELDS

    out = sys.stdout
    # CRLF, as RFC 4180 says: a CR inside a cell is then quoted, never a row break.
    writer = csv.DictWriter(out, fieldnames=JSON_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for event in events:
        row = _event_json(event)
        row["keyids"] = " ".join(row["keyids"])
        row["details"] = json.dumps(row["details"], sort_keys=True)
        writer.writerow({name: _cell(value) for name, value in row.items()})
    out.flush()


def _write_json(page: Page[AuditRecord, int]) -> None:
    """One JSON document on stdout, written an event at a time (the same document
    :func:`emit_report` would print, with ``truncated`` and ``next``)."""
    stream_json(
        "events",
        (_event_json(event) for event in page),
        lambda: {"truncated": page.truncated, "next": page.last if page.truncated else None},
    )


def _event_json(event: AuditRecord) -> dict[str, Any]:
    """An event in the --json vocabulary: its chain ``hash`` written ``sha256:HEX``."""
    doc = event.to_json()
    doc["hash"] = chain_digest(event.hash)
    return doc


def _report(events: list[AuditRecord]) -> Report:
    from vtreg.registry.records import short_digest

    rows = [
        [
            str(e.seq),
            _when(e.at),
            e.action,
            e.outcome,
            f"{e.plugin}@{e.version}" if e.plugin and e.version else (e.plugin or "-"),
            short_digest(e.digest) if e.digest else "-",
            ",".join(k[:12] for k in e.keyids) or "-",
            e.actor,
            (e.reason or "")[:100],
        ]
        for e in events
    ]
    return Report(
        data={"events": [_event_json(e) for e in events]},
        text=_table(_HEADERS, rows) or "no events",
    )


class Anchor(click.ParamType[tuple[int, str], object]):
    """``SEQ:HASH``, as printed by an earlier ``vtreg audit verify``."""

    name = "SEQ:HASH"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, str]:
        """Parse ``SEQ:HASH`` into (seq, hash), or fail as a usage error."""
        if isinstance(value, tuple):
            return value  # already converted
        seq, _, digest = str(value).strip().partition(":")
        digest = digest.removeprefix("sha256:")  # the head as --json writes it
        if not (
            re.fullmatch(r"[0-9]+", seq) and int(seq) >= 1 and re.fullmatch(r"[0-9a-f]{64}", digest)
        ):
            self.fail(
                f"{value!r} is not an anchor: expected SEQ:HASH as printed by "
                "`vtreg audit verify` (an event number and 64 lowercase hex digits)",
                param,
                ctx,
            )
        return int(seq), digest


@vtreg_command(audit_group, "verify")
@click.option(
    "--anchor",
    type=Anchor(),
    help="SEQ:HASH from an earlier run, kept outside the database: the log must still hold it.",
)
@checkpoint_options
@db_option
def audit_verify(
    settings: Settings,
    anchor: tuple[int, str] | None,
    db_url: str | None,
    checkpoint_file: str | None,
    policy_file: str | None,
    log_vkeys: tuple[str, ...],
    verifier_state: Path | None,
) -> Report:
    """Check the audit log's hash chain; exit 1 and name the first broken event if it is broken.

    The chain shows edits, deletions and insertions, but whoever can write the
    database can also rebuild the whole chain. Keep the printed anchor
    somewhere they cannot write, and pass it back with --anchor; or check the
    log against a checkpoint its log key signed (--checkpoint, with --log or
    --policy).
    """
    url = db_url or settings.db
    with open_registry(url) as registry:
        if checkpoint_file is not None:  # the chain and the tree in one pass over the log
            policy = (policy_file, log_vkeys, verifier_state)
            return checkpoint_report(
                registry,
                checkpoint_file,
                *policy,
                anchor=anchor,
                chain=lambda report: _chain_report(report, anchor),
            )
        report = registry.verify_audit(anchor=anchor)
    return _chain_report(report, anchor)


def _chain_report(report: ChainReport, anchor: tuple[int, str] | None) -> Report:
    """What `vtreg audit verify` says of the hash chain."""
    current = f"{report.events}:{report.head}" if report.ok and report.events else None
    data: dict[str, Any] = {
        "intact": report.ok,
        "events": report.events,
        "head": chain_digest(report.head),
        "anchor": current,
        "broken_seq": report.broken_at,
        "problem": report.problem,
    }
    if report.ok:
        checked = f" (still holds anchor {anchor[0]})" if anchor else ""
        text = f"audit log intact: {report.events} events{checked}"
        if current:
            text += f"\nanchor {current}"
        return Report(data=data, text=text)
    from vtreg.verifier.errors import LogError

    broken = f"audit log broken at event {report.broken_at}: {report.problem}"
    data["error"] = error_detail(LogError(broken), EXIT_REFUSED, printable(broken))
    return Report(
        data=data,
        text=f"audit log BROKEN at event {report.broken_at}: {report.problem}\n"
        + (f"(events 1-{report.events} verify" if report.events else "(no event verifies")
        + f"; head {report.head})",
        exit_code=EXIT_REFUSED,
    )
