"""What ``PluginLoader.discover_plugins`` found: the plugins that loaded, and why the rest did not.

VT Code logs a plugin that fails to load and moves on; a host showing a list of
plugins also needs to say why one is missing, so the refusals are data here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vtreg.verifier.errors import VerificationError, VtregError
from vtreg.verifier.text import printable

from .native import NativePlugin

__all__ = ["Discovery", "Skipped"]


@dataclass(frozen=True)
class Skipped:
    """A plugin directory that did not load.

    Attributes:
        path: the directory, as found in the trusted directory.
        code: the refusal code (docs/codes.md) for a definite "no", or
            ``"error"`` when the load could not be decided (unreadable
            directory, registry down, no descriptor left).
        message: one line saying why; text from the plugin is escaped.
        error: the exception itself, for a host that wants its type.
    """

    path: Path
    code: str
    message: str
    error: VtregError = field(repr=False, compare=False)

    @property
    def refused(self) -> bool:
        """Whether this was a definite "no" rather than a load that could not be decided."""
        return isinstance(self.error, VerificationError)

    @classmethod
    def of(cls, path: Path, error: VtregError) -> Skipped:
        """The record of ``error`` raised while loading ``path``."""
        code = error.code if isinstance(error, VerificationError) else "error"
        return cls(path=path, code=code, message=printable(str(error)), error=error)


@dataclass(frozen=True)
class Discovery:
    """Every plugin directory in the trusted directories, loaded or skipped.

    Attributes:
        plugins: the loaded plugins, in path order.
        skipped: the directories that did not load, each with its code and message.
    """

    plugins: tuple[NativePlugin, ...] = ()
    skipped: tuple[Skipped, ...] = ()
