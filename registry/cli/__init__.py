"""The ``vtreg`` command line (click).

:func:`main` is the console entry point. It imports nothing heavy itself: for
``vtreg verify DIR`` it first starts hashing DIR (see :func:`_prefetch`), so
that reading a large library overlaps the interpreter importing click,
pydantic and cryptography; then it hands over to the click application.
"""

from __future__ import annotations

import itertools
import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up path)

if TYPE_CHECKING:
    from typing import Any

    import click

    from vtreg.verifier.tree import PendingCapture

__all__ = ["cli", "main", "run"]

# verify's options that take a value: their values are not the directory.
_VALUE_OPTIONS = frozenset({"--key", "--threshold", "--db", "--fleet", "--grace"})


def _prefetch(args: list[str]) -> PendingCapture | None:
    """Start capturing the directory of ``verify DIR`` before the CLI is even imported.

    This only guesses where the directory is; the verify command uses the
    capture only if it was started for exactly the path click parsed, and
    captures again otherwise. A wrong guess costs a read, never a result.
    The ``--key`` files let the capture tell, itself, that plugin.sig was
    signed by one of them; until then it reads no more than a few MiB
    (:class:`~vtreg.verifier.tree.PendingCapture`).
    """
    positional = [a for a in args if not a.startswith("-")]
    if not positional or positional[0] != "verify":
        return None
    rest = iter(args[args.index("verify") + 1 :])
    keys = [v for k, v in itertools.pairwise(args) if k == "--key"]
    threshold = _threshold(args)
    for arg in rest:
        if arg == "--":
            arg = next(rest, "")
        elif arg in _VALUE_OPTIONS:
            next(rest, None)
            continue
        elif arg.startswith("-"):
            continue
        # os.path, not pathlib: this runs before anything else is imported.
        if arg and os.path.isdir(arg):
            from vtreg.verifier.tree import PendingCapture

            return PendingCapture(arg, tuple(keys), threshold)
        return None
    return None


def _threshold(args: list[str]) -> int:
    """The ``--threshold`` verify was given (the last one, as click takes it); one without
    a value that click would take lets the capture read nothing early on its own."""
    value = None
    for arg, following in itertools.zip_longest(args, args[1:]):
        if arg == "--threshold":
            value = following or ""
        elif arg.startswith("--threshold="):
            value = arg.split("=", 1)[1]
    if value is None:
        return 1
    return int(value) if value.isascii() and value.isdigit() and int(value) >= 1 else 0


def run(argv: list[str] | None = None, prefetch: PendingCapture | None = None) -> int:
    """Run the CLI and return its exit code."""
    from ._app import run as run_app

    return run_app(argv, prefetch=prefetch)


def _flush_c_stdio() -> None:
    """Flush the C library's stdio buffers, as the process's ``exit`` would: a native
    plugin run in this process may have printed into them. Only a process that loaded
    one has ctypes imported (the loader's ABI module), so nothing else pays for it."""
    ctypes = sys.modules.get("ctypes")
    if ctypes is not None and os.name == "posix":
        ctypes.CDLL(None).fflush(None)


def main() -> None:
    """Console entry point: ``vtreg``.

    Once the command has returned, its output is flushed and every file and
    connection it opened is closed, so the process ends at once instead of
    tearing the interpreter down (freeing every module costs ~80 ms that
    nobody needs). A plugin ``vtreg run`` loaded into this process has been
    unloaded by then (``dlclose`` ran its destructors and exit handlers);
    what it printed through C stdio is flushed here (:func:`_flush_c_stdio`).
    """
    args = sys.argv[1:]
    prefetch = _prefetch(args)
    try:
        code = run(args, prefetch)
        sys.stdout.flush()
        sys.stderr.flush()
        _flush_c_stdio()
    except BrokenPipeError:  # the reader went away (`vtreg list --json | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1  # as click exits when a command's own output meets a closed pipe
    os._exit(code)


def __getattr__(name: str) -> Any:
    if name == "cli":
        from ._app import cli, register_commands

        register_commands([])  # every command, as a caller that walks the CLI expects
        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    cli: click.Group
