"""VT Code's default trusted plugin directories, resolved as VT Code resolves them.

VT Code's skills loader trusts five directories (``plugin_loader_for_workspace``):

1. ``$CODEX_HOME/plugins`` (``~/.codex/plugins`` when ``CODEX_HOME`` is unset or empty);
2. its data directory's ``plugins``: ``$VTCODE_DATA``, else ``$XDG_DATA_HOME/vtcode``,
   else ``~/.local/share/vtcode`` (on Linux);
3. its legacy directory's ``plugins``: ``$VTCODE_HOME``, else ``~/.vtcode``;
4. ``<workspace>/.vtcode/plugins`` and 5. ``<workspace>/.agents/plugins``.

``~`` is ``$HOME`` when that is set and absolute, else the account's home
directory, for these and for every ``~`` a host passes to
:meth:`PluginLoader.add_trusted_dir`.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

__all__ = ["expand_home", "home_directory", "vtcode_trusted_dirs"]


def home_directory(environ: Mapping[str, str] | None = None) -> Path:
    """``$HOME`` if set and absolute, else the home directory of this process's user."""
    env = os.environ if environ is None else environ
    return _absolute(env, "HOME") or Path(pwd.getpwuid(os.getuid()).pw_dir)


def expand_home(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Path:
    """``path`` with a leading ``~`` (or ``~/``) made :func:`home_directory`; ``~user`` as the
    system says."""
    text = os.fspath(path)
    if text == "~" or text.startswith("~/"):
        return home_directory(environ) / text[2:]
    return Path(text).expanduser()


def _absolute(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "")
    return Path(value) if value and Path(value).is_absolute() else None


def vtcode_trusted_dirs(
    workspace: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> list[Path]:
    """The five directories VT Code trusts for ``workspace``, in its order (see above)."""
    env = os.environ if environ is None else environ
    home = home_directory(env)
    codex = Path(env["CODEX_HOME"]) if env.get("CODEX_HOME") else home / ".codex"
    xdg_data = _absolute(env, "XDG_DATA_HOME")
    data = _absolute(env, "VTCODE_DATA") or (
        xdg_data / "vtcode" if xdg_data else home / ".local" / "share" / "vtcode"
    )
    legacy = _absolute(env, "VTCODE_HOME") or home / ".vtcode"
    root = expand_home(workspace, env).absolute()
    return [
        codex / "plugins",
        data / "plugins",
        legacy / "plugins",
        root / ".vtcode" / "plugins",
        root / ".agents" / "plugins",
    ]
