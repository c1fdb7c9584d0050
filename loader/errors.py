"""The errors a host catches around a load, importable from ``vtreg.loader``.

They are vtreg's one exception tree (``vtreg.verifier.errors``), re-exported so
that a host needs no second package to catch a refusal.
"""

from __future__ import annotations

from vtreg.verifier.errors import NotFoundError, UsageError, VerificationError, VtregError

__all__ = ["NotFoundError", "UsageError", "VerificationError", "VtregError"]
