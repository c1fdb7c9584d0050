"""``vtreg run``: the verified load and one call, as a host would do it."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._app import EXIT_UNDECIDED, Report, Settings, cli, vtreg_command
from .fleet import fleet_option, grace_option
from .trust import db_option, open_registry

if TYPE_CHECKING:
    from vtreg.loader import Isolation, NativePlugin, PluginContext, PluginResult
    from vtreg.loader.protocols import AuditSink, TrustPolicy

__all__ = ["run"]

_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|TiB)", re.ASCII | re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


class ByteSize(click.ParamType[int, object]):
    """A size with its unit (``512MiB``, ``2GiB``), as bytes: the unit the Python API takes.

    A bare number is refused: it meant MiB here once, and means bytes to
    ``PluginLoader(memory_limit=...)``, so it is ambiguous.
    """

    name = "SIZE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        """``value`` in bytes, or a usage error saying how to write a size."""
        if isinstance(value, int):
            return value
        text = str(value).strip()
        match = _SIZE.fullmatch(text)
        if match is None or int(match[1]) == 0:
            hint = f"; write {text}MiB for MiB" if text.isdigit() and text != "0" else ""
            self.fail(
                f"{text!r} is not a size with a unit like 512MiB or 2GiB (B, KiB, MiB, GiB, "
                f"TiB){hint}",
                param,
                ctx,
            )
        return int(match[1]) * _SIZE_UNITS[match[2].lower()]


@vtreg_command(cli, "run")
@click.argument("directory")
@click.option(
    "--input",
    "input_json",
    default="{}",
    metavar="JSON|@FILE|-",
    help="The context's input object: JSON, @FILE to read it from FILE, - from stdin.",
)
@click.option("--workspace-root", metavar="PATH", help="The context's workspace_root.")
@click.option(
    "--isolate",
    is_flag=True,
    help="Run the plugin in a child process (timeout, memory limit). Only with it does a "
    "crash give exit 3: without it, a crashing plugin kills this process.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Time limit on loading the plugin and on its call, each (implies --isolate: "
    "neither can be stopped in this process).",
)
@click.option(
    "--memory-limit",
    type=ByteSize(),
    default="512MiB",
    show_default=True,
    help="With --isolate: how much memory the plugin may allocate, with its unit "
    "(512MiB, 2GiB; at least 1MiB).",
)
@click.option(
    "--trusted-dir",
    "trusted_dirs",
    multiple=True,
    metavar="DIR",
    help="Directory plugins may be loaded from (repeatable; default: DIRECTORY's parent).",
)
@db_option
@fleet_option
@grace_option
def run(
    settings: Settings,
    directory: str,
    input_json: str,
    workspace_root: str | None,
    isolate: bool,
    timeout: float | None,
    memory_limit: int,
    trusted_dirs: tuple[str, ...],
    db_url: str | None,
    fleet_state: str | None,
    grace: timedelta | None,
) -> Report:
    """Verify DIRECTORY against the registry, load it, and execute it once.

    Refused (exit 1, recorded in the audit log) unless it is signed by trusted
    keys, its content is trusted and not revoked, it is not a rollback, and
    its paths and permissions are safe. Exit 3 if the plugin fails or reports
    failure. The plugin runs in this process unless --isolate is given, and a
    plugin that crashes in this process kills it (no exit code of ours).
    """
    from vtreg.loader import PluginLoader
    from vtreg.loader.isolation import DEFAULT_TIMEOUT

    context = _context(input_json, workspace_root)
    isolation: Isolation = "process" if isolate or timeout is not None else "none"
    roots = trusted_dirs or (str(Path(directory).expanduser().absolute().parent),)
    with _trust_and_audit(db_url, fleet_state, grace) as (trust, audit):
        loader = PluginLoader(
            trust,
            audit,
            roots,
            isolation=isolation,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,  # loading too
            memory_limit=memory_limit,
        )
        plugin = loader.load_plugin(directory)
        try:
            result = plugin.execute(context, timeout=timeout)
        finally:
            plugin.close()
    return _report(plugin, result, isolation)


_MAX_INPUT = 16 << 20


def _input_text(spec: str) -> str:
    """--input's JSON: the text itself, ``@FILE``'s content, or stdin's for ``-``."""
    import sys

    from vtreg.verifier.errors import UsageError
    from vtreg.verifier.files import read_bounded

    if spec == "-":
        text = sys.stdin.read(_MAX_INPUT + 1)
        if len(text) > _MAX_INPUT:
            raise UsageError(f"--input - is larger than {_MAX_INPUT >> 20} MiB")
        return text
    if spec.startswith("@"):
        data = read_bounded(spec[1:], _MAX_INPUT, f"--input file {spec[1:]}", too_large=UsageError)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"--input file {spec[1:]} is not UTF-8") from e
    return spec


@contextlib.contextmanager
def _trust_and_audit(
    db_url: str | None, fleet_state: str | None, grace: timedelta | None
) -> Iterator[tuple[TrustPolicy, AuditSink]]:
    """The registry (trust and audit), or with --fleet the fleet state and the host's own log."""
    from vtreg.verifier.errors import UsageError

    if fleet_state is None:
        if grace is not None:
            raise UsageError("--grace applies to --fleet only")
        with open_registry(db_url) as registry:
            yield registry, registry
        return
    if db_url is not None:
        raise UsageError("--fleet decides from the fleet state alone: drop --db")
    from vtreg.registry.fleet import FleetTrust, host_audit

    with host_audit() as audit:
        yield FleetTrust(fleet_state, grace=grace, audit=audit), audit


def _context(input_json: str, workspace_root: str | None) -> PluginContext:
    from vtreg.loader import PluginContext
    from vtreg.verifier.errors import UsageError

    try:
        payload = json.loads(_input_text(input_json))
    except ValueError as e:
        raise UsageError(f"--input is not valid JSON: {e}") from e
    if not isinstance(payload, dict):
        raise UsageError("--input must be a JSON object")
    return PluginContext(input=payload, workspace_root=workspace_root)


def _report(plugin: NativePlugin, result: PluginResult, isolation: str) -> Report:
    verified = plugin.verified
    data: dict[str, Any] = {
        "plugin": {
            "name": verified.name,
            "version": verified.version,
            "content_digest": verified.content_digest,
            "signers": list(verified.signers),
            "isolation": isolation,
        },
        "result": result.model_dump(mode="json"),
    }
    header = (
        f"{verified.name} {verified.version}: verified, loaded "
        f"{'in a child process' if plugin.isolated else 'in this process'}, executed"
    )
    text = json.dumps(data["result"], indent=2)  # stdout holds the result alone
    if result.success:
        return Report(data=data, text=text, notes=[header])
    reason = result.error or "no reason given"
    failure = f"{verified.name} {verified.version}: the plugin reported failure: {reason}"
    data["error"] = {"category": "undecided", "type": "PluginCallError", "message": failure}
    data["exit_code"] = EXIT_UNDECIDED
    return Report(
        data=data, text=text, exit_code=EXIT_UNDECIDED, notes=[header], warnings=[failure]
    )
