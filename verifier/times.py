"""How vtreg writes a time: RFC 3339 UTC with a ``Z``, whole seconds (stdlib only).

Kept apart from :mod:`vtreg.verifier.envelope` (which defines the pydantic
models) so that a command that only reads the registry can print times
without importing pydantic.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_time"]


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, whole seconds."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
