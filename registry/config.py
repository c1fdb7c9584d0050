"""The registry's settings from the environment: where it lives, how long to wait for a
lock, who is acting.

Stdlib only, so that the read paths (:mod:`vtreg.registry.reader`) find the
registry without importing SQLAlchemy; :mod:`vtreg.registry.db` re-exports
every name.
"""

from __future__ import annotations

import getpass
import math
import os
import socket
import sys
import unicodedata
from pathlib import Path

from vtreg.verifier.errors import RegistryError, UsageError

__all__ = [
    "ENV_ACTOR",
    "ENV_DATABASE_URL",
    "ENV_HOME",
    "ENV_LOCK_TIMEOUT",
    "SUPPORTED_BACKENDS",
    "checked_actor",
    "default_actor",
    "default_url",
    "lock_timeout",
    "normalize_url",
    "vtreg_home",
]

ENV_ACTOR = "VTREG_ACTOR"
_MAX_ACTOR = 255  # models.AuditRow.actor, Key.added_by, ...: String(255)
ENV_DATABASE_URL = "VTREG_DATABASE_URL"
ENV_HOME = "VTREG_HOME"
ENV_LOCK_TIMEOUT = "VTREG_LOCK_TIMEOUT"
_DEFAULT_LOCK_TIMEOUT_S = 60.0
_MAX_LOCK_TIMEOUT_S = 24 * 3600.0


def vtreg_home() -> Path:
    """``$VTREG_HOME``, else the per-user data directory for vtreg."""
    configured = os.environ.get(ENV_HOME)
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "vtreg"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "vtreg"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vtreg"


def default_url(*, create: bool = True) -> str:
    """``$VTREG_DATABASE_URL``, else SQLite in :func:`vtreg_home` (created 0700 if missing,
    unless ``create`` is False)."""
    configured = os.environ.get(ENV_DATABASE_URL)
    if configured:
        return configured
    home = vtreg_home()
    if not create:
        return f"sqlite:///{home / 'registry.db'}"
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise RegistryError(f"cannot create {home}: {e.strerror}") from e
    return f"sqlite:///{home / 'registry.db'}"


SUPPORTED_BACKENDS = ("sqlite", "postgresql")
_PATH_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _plain_path(text: str) -> bool:
    """Whether ``text`` names a SQLite file by its path rather than by a URL.

    A path has no scheme and no ``key=value`` (a libpq connection string, never
    a path to take apart in messages), and it says it is one: a directory part,
    a database file suffix, or a file that exists.
    """
    if "://" in text or text.startswith("sqlite:") or "=" in text or not text.strip():
        return False
    return os.sep in text or text.endswith(_PATH_SUFFIXES) or Path(text).is_file()


def normalize_url(url: str) -> str:
    """A URL with the drivers we ship: ``postgresql://`` means psycopg 3, not psycopg2,
    and a plain path (``./registry.db``) means that SQLite file."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if _plain_path(url):
        return f"sqlite:///{Path(url).expanduser().absolute()}"
    return url


def lock_timeout() -> float:
    """How long to wait for a lock, in seconds: ``$VTREG_LOCK_TIMEOUT``, else 60.

    Raises:
        UsageError: not a number of seconds above 0 (and at most a day).
    """
    text = os.environ.get(ENV_LOCK_TIMEOUT, "").strip()
    if not text:
        return _DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= _MAX_LOCK_TIMEOUT_S:
        raise UsageError(
            f"{ENV_LOCK_TIMEOUT} must be a number of seconds above 0 and at most "
            f"{_MAX_LOCK_TIMEOUT_S:g}, got {text!r}"
        )
    return value


def default_actor() -> str:
    """Who is acting: ``$VTREG_ACTOR``, else ``user@host``."""
    configured = os.environ.get(ENV_ACTOR)
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except OSError:
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def checked_actor(actor: str) -> str:
    """``actor`` if every engine can store it: at most 255 characters (the column),
    none of them control or format characters (it is shown on terminals and in CSV)."""
    if len(actor) > _MAX_ACTOR:
        raise UsageError(f"{ENV_ACTOR} is {len(actor)} characters long; at most {_MAX_ACTOR}")
    if any(unicodedata.category(c)[0] == "C" or c in "\u2028\u2029" for c in actor):
        raise UsageError(f"{ENV_ACTOR} {actor!r} holds control characters")
    return actor
