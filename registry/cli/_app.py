"""The ``vtreg`` click application: one place that turns results and errors into output.

Exit codes: 0 success; 1 refused (a definite "no");
2 usage error; 3 could not decide. Commands return a :class:`Report` or raise
from the :mod:`verifier.errors` tree; nothing else calls ``sys.exit`` or
prints a traceback unless ``--verbose`` was given.

Only click is imported here. Heavy modules (pydantic, cryptography,
SQLAlchemy, Alembic) are imported inside the commands that need them, so
``vtreg --help`` starts fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

import click

from vtreg.verifier.errors import ERROR_TYPES, UsageError, VerificationError, VtregError
from vtreg.verifier.text import printable

if TYPE_CHECKING:
    from vtreg.verifier.tree import PendingCapture

__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNDECIDED",
    "EXIT_USAGE",
    "Report",
    "Settings",
    "chain_digest",
    "cli",
    "error_detail",
    "register_commands",
    "run",
    "vtreg_command",
]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNDECIDED = 3

JSON_SCHEMA = 1
"""The version of the ``--json`` documents (docs/json.md): raised when a field changes meaning
or goes away; new fields may appear within a version."""

P = ParamSpec("P")


@dataclass
class Settings:
    """Options that apply to every command (given before or after the command name)."""

    json: bool = False
    verbose: bool = False
    db: str | None = None  # --db given to a group (`vtreg audit --db URL verify`)
    prefetch: PendingCapture | None = None

    def take_capture(self, directory: str) -> PendingCapture:
        """The capture started early for ``directory``, or a new one."""
        from vtreg.verifier.tree import PendingCapture

        early, self.prefetch = self.prefetch, None
        if early is not None and early.root == directory:
            return early
        if early is not None:
            early.cancel()
        return PendingCapture(directory)


@dataclass
class Report:
    """What a command has to say: a JSON document and the same for people."""

    data: dict[str, Any]
    text: str
    exit_code: int = EXIT_OK
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # status lines for people, on stderr
    printed: bool = False  # the command wrote its JSON itself (streamed): only warnings left


def exit_code_for(error: BaseException) -> int:
    """The one mapping from the exception tree to exit codes."""
    if isinstance(error, VerificationError):
        return EXIT_REFUSED
    if isinstance(error, UsageError | click.UsageError | click.BadParameter):
        return EXIT_USAGE
    return EXIT_UNDECIDED


_CATEGORY = {EXIT_REFUSED: "refused", EXIT_USAGE: "usage", EXIT_UNDECIDED: "undecided"}


def _emit_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False))


def json_head(ok: bool) -> dict[str, Any]:
    """The fields every ``--json`` document starts with."""
    return {"ok": ok, "schema": JSON_SCHEMA}


def chain_digest(hex_digest: str | None) -> str | None:
    """An audit chain hash (64 hex digits of SHA-256) as every digest in --json is written."""
    return None if hex_digest is None else f"sha256:{hex_digest}"


def stream_json(
    key: str, items: Iterable[dict[str, Any]], tail: Callable[[], dict[str, Any]]
) -> None:
    """One JSON document on stdout, ``key``'s list written an item at a time (constant
    memory), then the fields ``tail()`` returns once the list is done."""
    out = sys.stdout
    head = json.dumps(json_head(True), indent=2)[:-2]  # without its closing "\n}"
    out.write(f"{head},\n  {json.dumps(key)}: [")
    for count, item in enumerate(items):
        out.write(("," if count else "") + "\n    " + json.dumps(item))
    rest = tail()
    out.write("\n  ]" + ("," + json.dumps(rest, indent=2)[1:-2] if rest else "") + "\n}\n")
    out.flush()


def _error_type(error: BaseException) -> str:
    """A stable name for the kind of error (one of ERROR_TYPES): the nearest documented
    vtreg class ``error`` is an instance of, never a click or other library class."""
    if isinstance(error, click.UsageError | click.BadParameter):
        return "UsageError"
    if isinstance(error, VtregError):
        return next(c.__name__ for c in type(error).__mro__ if c.__name__ in ERROR_TYPES)
    return "VtregError"


def error_detail(error: BaseException, code: int, message: str) -> dict[str, Any]:
    """The ``error`` object of a --json document (docs/json.md)."""
    detail = {"category": _CATEGORY.get(code, "undecided"), "type": _error_type(error)}
    detail["message"] = message
    if isinstance(error, VerificationError):
        detail["code"] = error.code  # stable and machine-readable: docs/codes.md
    return detail


def emit_report(report: Report, settings: Settings) -> None:
    """Print a command's notes and warnings on stderr and its report on stdout (JSON with
    --json), so that stdout holds only the result."""
    for note in report.notes:
        click.echo(f"vtreg: {printable(note)}", err=True)
    for warning in report.warnings:
        click.echo(f"vtreg: warning: {printable(warning)}", err=True)
    if report.printed:
        return
    if settings.json:
        # The same warnings, for a script: present whenever there are any.
        warned = {"warnings": [printable(w) for w in report.warnings]} if report.warnings else {}
        failed = {"exit_code": report.exit_code} if report.exit_code != EXIT_OK else {}
        _emit_json({**json_head(not failed), **report.data, **warned, **failed})
    elif report.text:
        click.echo(report.text)


def emit_error(error: BaseException, code: int, settings: Settings) -> None:
    """Print one line for ``error`` on stderr (and one JSON document with --json)."""
    message = error.format_message() if isinstance(error, click.ClickException) else str(error)
    message = printable(" ".join(message.split())) or type(error).__name__
    category = _CATEGORY.get(code, "undecided")
    if settings.verbose:
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    label = {"refused": "refused", "usage": "usage error"}.get(category, "error")
    # The line first: it still reaches a person when nobody reads stdout any more.
    click.echo(f"vtreg: {label}: {message}", err=True)
    if settings.json:
        detail = error_detail(error, code, message)
        _emit_json({**json_head(False), "error": detail, "exit_code": code})


_ENVIRONMENT = """\b
Environment:
  VTREG_HOME           where the default SQLite registry lives (registry.db)
  VTREG_DATABASE_URL   the registry's database URL or SQLite path (as --db)
  VTREG_PASSPHRASE     the passphrase of a private key (else --passphrase-file or a prompt)
  VTREG_ACTOR          who is acting, as the audit log records it (default: user@host)
  VTREG_LOCK_TIMEOUT   seconds to wait for a registry lock (default 60)
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_ENVIRONMENT)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")
@click.option("--verbose", is_flag=True, help="Show a traceback with any error.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Show the version and exit.",
)
@click.pass_obj
def cli(settings: Settings, as_json: bool, verbose: bool) -> None:
    """vtreg: sign, trust and verify VT Code native plugins.

    Exit codes: 0 ok, 1 refused, 2 usage error, 3 could not decide.
    """
    settings.json |= as_json
    settings.verbose |= verbose


def _print_version(ctx: click.Context) -> None:
    """``vtreg --version`` (with --json: a document with the version and the JSON schema)."""
    from importlib.metadata import version

    settings = ctx.ensure_object(Settings)
    number = version("vtreg")
    if settings.json:
        _emit_json({**json_head(True), "version": number})
    else:
        click.echo(f"vtreg, version {number}")
    ctx.exit(EXIT_OK)


def vtreg_command(
    group: click.Group, name: str | None = None, **attrs: Any
) -> Callable[[Callable[Concatenate[Settings, P], Report]], click.Command]:
    """Register ``fn(settings, **options) -> Report`` as a command with --json/--verbose."""

    def decorate(fn: Callable[Concatenate[Settings, P], Report]) -> click.Command:
        def callback(as_json: bool, verbose: bool, **kwargs: Any) -> int:
            settings = click.get_current_context().ensure_object(Settings)
            settings.json |= as_json
            settings.verbose |= verbose
            try:
                report = fn(settings, **kwargs)  # type: ignore[call-arg] # click passes by name
            except KeyboardInterrupt as e:
                # Ours to report in one line; click would print a blank line and "Aborted".
                raise VtregError("interrupted") from e
            emit_report(report, settings)
            return report.exit_code

        functools.update_wrapper(callback, fn)  # name, help text and fn's click parameters
        with_flags = click.option(
            "--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout."
        )(
            click.option("--verbose", is_flag=True, help="Show a traceback with any error.")(
                callback
            )
        )
        return group.command(name, **attrs)(with_flags)

    return decorate


# The modules that register each command (and its subcommands). `vtreg list` then imports
# one module, not all six; tests/cli/test_read_paths.py checks this table against the CLI.
_COMMAND_MODULES = {
    "audit": ("audit",),
    "db": ("trust",),
    "fleet": ("fleet",),
    "key": ("trust",),
    "keygen": ("signing",),
    "list": ("trust",),
    "revoke": ("trust",),
    "run": ("runner",),
    "show": ("trust",),
    "sign": ("signing",),
    "trust": ("trust",),
    "untrust": ("trust",),
    "verify": ("signing",),
    "witness": ("tlog",),
}
_EVERY_MODULE = ("audit", "fleet", "runner", "signing", "tlog", "trust")
# Subcommands registered by another module than their group's, imported only when one of
# them is on the command line, or --help, or (for a group that cannot run alone) no
# subcommand at all: those list every subcommand.
_SUBCOMMAND_MODULES = {
    "audit": ("tlog", {"init", "checkpoint", "export", "prove", "verify-proof"}, False),
    "key": ("signing", {"pub", "passphrase"}, True),
}
_HELP = {"--help", "-h"}


def register_commands(args: list[str]) -> None:
    """Import the modules whose commands ``args`` may run (importing registers them): the
    named command's, or every one (no command, an unknown one: help and errors list all)."""
    import importlib

    name = next((a for a in args if not a.startswith("-")), None)
    modules = list(_COMMAND_MODULES.get(name or "", _EVERY_MODULE))
    extra, names, lists_when_alone = _SUBCOMMAND_MODULES.get(name or "", ("", set(), False))
    rest = args[args.index(name) + 1 :] if name is not None else []
    alone = lists_when_alone and all(a.startswith("-") for a in rest)
    if extra and (alone or not (names | _HELP).isdisjoint(args)):  # "export" as a value: harmless
        modules.append(extra)
    for module in modules:
        importlib.import_module(f"{__package__}.{module}")


def run(argv: list[str] | None = None, prefetch: PendingCapture | None = None) -> int:
    """Run the CLI and return its exit code (for tests and :func:`registry.cli.main`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Usage errors can happen before click has parsed --json, so look for it first.
    settings = Settings(json="--json" in args, verbose="--verbose" in args, prefetch=prefetch)
    try:
        register_commands(args)
        result = cli.main(args=args, prog_name="vtreg", standalone_mode=False, obj=settings)
    except click.exceptions.NoArgsIsHelpError as e:
        if settings.json:  # still exactly one JSON document on stdout
            group = e.ctx.command if e.ctx else cli
            names = ", ".join(group.list_commands(e.ctx)) if isinstance(group, click.Group) else ""
            path = e.ctx.command_path if e.ctx else "vtreg"
            emit_error(click.UsageError(f"{path} needs a command: {names}"), EXIT_USAGE, settings)
        else:
            click.echo(e.ctx.get_help() if e.ctx else str(e), err=True)
        return EXIT_USAGE
    except click.ClickException as e:
        code = EXIT_USAGE if isinstance(e, click.UsageError) else EXIT_UNDECIDED
        emit_error(e, code, settings)
        return code
    except click.Abort:
        emit_error(VtregError("aborted"), EXIT_UNDECIDED, settings)
        return EXIT_UNDECIDED
    except KeyboardInterrupt:
        emit_error(VtregError("interrupted"), EXIT_UNDECIDED, settings)
        return EXIT_UNDECIDED
    except VtregError as e:
        code = exit_code_for(e)
        emit_error(e, code, settings)
        return code
    except Exception as e:  # a bug: still one line and exit 3, the traceback with --verbose
        emit_error(VtregError(f"internal error: {type(e).__name__}: {e}"), EXIT_UNDECIDED, settings)
        if settings.verbose:
            import traceback

            traceback.print_exception(e, file=sys.stderr)
        return EXIT_UNDECIDED
    return result if isinstance(result, int) else EXIT_OK
