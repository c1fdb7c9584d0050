"""The two ways a sync fails: the repository served something refused, or could not be read."""

from __future__ import annotations

from vtreg.verifier.errors import NotFoundError, VerificationError

__all__ = ["SyncError", "SyncRefused"]


class SyncRefused(VerificationError):
    """The repository served metadata the host refuses; nothing was changed."""


class SyncError(NotFoundError):
    """The repository could not be reached or read; nothing was changed."""
