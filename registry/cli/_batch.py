"""Commands over several plugin directories in one process (``vtreg verify A B C``, ``-``).

One directory keeps the command's own output. Several give one line per
directory and a summary (with ``--json``: one document with a result per
directory, each with its own ``ok`` and ``exit_code``); the command exits 0
when every directory succeeded, else with the highest exit code among them
(3 could not decide, 2 usage error, 1 refused).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from vtreg.verifier.errors import UsageError, VtregError
from vtreg.verifier.text import path_text, printable

from ._app import EXIT_OK, Report, error_detail, exit_code_for

__all__ = ["STDIN", "batch", "directories", "single"]

STDIN = "-"
_CATEGORY = {1: "refused", 2: "usage", 3: "undecided"}


def directories(arguments: Iterable[str]) -> list[str]:
    """The directories named, ``-`` replaced by the lines of stdin (blank lines skipped).

    Raises:
        UsageError: none at all, or ``-`` given twice.
    """
    arguments = list(arguments)
    if arguments.count(STDIN) > 1:
        raise UsageError("'-' (directories from stdin) may be given once")
    found: list[str] = []
    for argument in arguments:
        if argument == STDIN:
            found += [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
        else:
            found.append(argument)
    if not found:
        raise UsageError("no plugin directory given")
    return found


def _shown(name: str) -> str:
    return printable(path_text(name))


def single(arguments: tuple[str, ...], names: list[str]) -> bool:
    """Whether the command was given one directory itself (its own output), not a list."""
    return len(names) == 1 and STDIN not in arguments


def batch(
    names: list[str], one: Callable[[str], Report], *, done: str, first_line: bool = True
) -> Report:
    """Run ``one`` for each directory, collecting each report or error; one report for all.

    ``done`` names the success in the summary ("verified", "trusted").
    """
    results: list[dict[str, Any]] = []
    lines: list[str] = []
    warnings: list[str] = []
    worst = EXIT_OK
    for name in names:
        try:
            report = one(name)
        except VtregError as e:
            code = exit_code_for(e)
            message = printable(" ".join(str(e).split())) or type(e).__name__
            error = error_detail(e, code, message)
            results.append({"directory": name, "ok": False, "exit_code": code, "error": error})
            lines.append(f"{_CATEGORY.get(code, 'error')}  {_shown(name)}: {message}")
            worst = max(worst, code)
            continue
        warned = {"warnings": [printable(w) for w in report.warnings]} if report.warnings else {}
        results.append(
            {"directory": name, "ok": True, "exit_code": EXIT_OK, **report.data, **warned}
        )
        summary = report.text.splitlines()[0] if first_line and report.text else report.text
        lines.append(f"ok  {_shown(name)}: {summary}")
        warnings += [f"{_shown(name)}: {w}" for w in report.warnings]
    failed = sum(1 for r in results if not r["ok"])
    counts = {"directories": len(results), done: len(results) - failed, "failed": failed}
    lines.append(f"{counts[done]} of {len(results)} {done}, {failed} failed")
    data: dict[str, Any] = {"results": results, "summary": counts}
    if failed:  # the document's own error: the first of the worst, and how many failed
        first = next(r for r in results if r["exit_code"] == worst)
        message = f"{failed} of {len(results)} failed; {first['directory']}: "
        data["error"] = {**first["error"], "message": message + first["error"]["message"]}
    return Report(
        data=data,
        text="\n".join(lines),
        exit_code=worst,
        warnings=warnings,
    )
