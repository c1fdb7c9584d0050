"""The ``vtreg`` command line (click). Importing this imports click and nothing heavy."""

from __future__ import annotations

from . import signing
from ._app import cli, main, run

__all__ = ["cli", "main", "run", "signing"]
