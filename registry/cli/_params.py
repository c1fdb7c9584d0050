"""Option types and input helpers shared by commands (click and stdlib only)."""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import click

from vtreg.verifier.errors import PassphraseError
from vtreg.verifier.files import read_bounded
from vtreg.verifier.text import printable

__all__ = [
    "DIGEST",
    "DURATION",
    "KEY_ID",
    "NAME",
    "NEW_PASSPHRASE_ENV",
    "PAST_TIME",
    "STDIN_NAMES",
    "TIME",
    "TIME_OR_DURATION",
    "PassphraseSource",
    "ask_pin",
    "parse_time",
    "passphrase_reader",
    "utc_now",
]

PASSPHRASE_ENV = "VTREG_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
NEW_PASSPHRASE_ENV = "VTREG_NEW_PASSPHRASE"  # noqa: S105 - likewise
_MAX_PASSPHRASE_FILE = 4096
STDIN_NAMES = ("-", "/dev/stdin")  # --passphrase-file names for standard input
_DURATION = re.compile(r"(\d+)([smhdwy])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 date or time; naive values are taken as UTC.

    Raises:
        ValueError: not a date/time, or one that is not an instant in years
            1-9999 in UTC (``9999-12-31T23:00-05:00``), which no database stores.
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as e:
        raise ValueError(f"{text!r} is outside years 1-9999 in UTC") from e


class TimeOrDuration(click.ParamType[datetime, object]):
    """A date/time, or a duration from now: ahead (``90d``, ``1y``) or, with
    ``ago=True``, back (``24h``, ``7d``)."""

    def __init__(self, *, ago: bool = False) -> None:
        self.ago = ago
        self.name = "TIME|DURATION" if ago else "DURATION|DATE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """The time ``value`` names; a duration counts from now (back from now with ``ago``)."""
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        match = _DURATION.fullmatch(text)
        try:
            if match:
                span = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
                return utc_now() - span if self.ago else utc_now() + span
            return parse_time(text)
        except (ValueError, OverflowError):
            example = "24h or 7d (ago)" if self.ago else "90d, 12h, 2w, 1y"
            self.fail(
                f"{text!r} is neither a date/time like 2027-01-31 or 2026-11-24T08:00:00Z "
                f"nor a duration like {example}",
                param,
                ctx,
            )


class Duration(click.ParamType[timedelta, object]):
    """A length of time: a number and a unit (``30s``, ``12h``, ``1d``, ``2w``, ``1y``)."""

    name = "DURATION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        """``value`` as a timedelta, or a usage error saying how to write a duration."""
        if isinstance(value, timedelta):
            return value
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not a duration like 30s, 12h, 1d, 2w or 1y", param, ctx)
        return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


class Time(click.ParamType[datetime, object]):
    """An absolute date/time (RFC 3339 / ISO 8601); naive means UTC."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """``value`` as an aware datetime, or a usage error saying what a time looks like."""
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value).strip())
        except ValueError:
            self.fail(
                f"{value!r} is not a date/time like 2026-11-24 or 2026-11-24T08:00:00Z", param, ctx
            )


class Name(click.ParamType[str, object]):
    """A safe identifier: it may become a file name."""

    name = "NAME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        """``value`` unchanged if it is a safe name, else a usage error with the rule."""
        text = str(value)
        if not _NAME.fullmatch(text):
            self.fail(
                f"{text!r} is not a valid name (1-64 of A-Z a-z 0-9 . _ -, "
                "not starting with '.' or '-')",
                param,
                ctx,
            )
        return text


# A key id or digest as vtreg shows it in a table or message, perhaps with the ellipsis
# a message put after it (``f2380b46f9b39e76…``), which someone may copy along.
_SHOWN_ID = re.compile(r"((?:sha256:)?[0-9a-fA-F]{8,64})(?:…|\.\.\.)?", re.ASCII)


class ShownId(click.ParamType[str, object]):
    """A key reference (id, prefix or name) or, with ``digest``, a content digest or prefix.

    The short forms vtreg prints are taken as they are copied: a trailing ``…`` or ``...``
    after hex digits is dropped, and a digest's bare hex digits mean ``sha256:`` ones.
    What is left is for the registry to resolve (and refuse, saying why).
    """

    def __init__(self, *, digest: bool = False) -> None:
        self.digest = digest
        self.name = "DIGEST" if digest else "KEYID"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        """``value`` with a copied ellipsis dropped (and ``sha256:`` added to a bare digest)."""
        text = str(value).strip()
        shown = _SHOWN_ID.fullmatch(text)
        if shown is None:
            return text
        found = shown[1].lower() if self.digest else shown[1]
        if self.digest and not found.startswith("sha256:"):
            return f"sha256:{found}"
        return found


KEY_ID = ShownId()
DIGEST = ShownId(digest=True)
DURATION = Duration()
TIME_OR_DURATION = TimeOrDuration()
PAST_TIME = TimeOrDuration(ago=True)
TIME = Time()
NAME = Name()


class PassphraseSource:
    """Where a passphrase comes from: --passphrase-file, $VTREG_PASSPHRASE, or a prompt.

    Never from a plain command-line argument (it would show in ``ps`` and in
    shell history). Called only when a passphrase is actually needed; a file
    (``-`` or ``/dev/stdin``: standard input) gives its first line. The prompt
    names the key; ``prompted`` says whether the last call asked at a terminal,
    where a mistyped passphrase may be asked again.
    """

    def __init__(
        self, path: str | None, *, confirm: bool, what: str, env: str = PASSPHRASE_ENV
    ) -> None:
        self.path, self.confirm, self.what, self.env = path, confirm, what, env
        self.prompted = False

    def __call__(self) -> bytes:
        """The passphrase, or :class:`PassphraseError` saying why there is none."""
        self.prompted = False
        if self.path is not None:
            return self._from_file(self.path)
        env = os.environ.get(self.env)
        if env is not None:
            if not env:
                raise PassphraseError(f"{self.env} is set but empty")
            return env.encode("utf-8")
        if not sys.stdin.isatty():
            raise PassphraseError(
                f"a passphrase is needed: set {self.env}, use --passphrase-file, "
                "or run in a terminal"
            )
        self.prompted = True
        secret = getpass.getpass(f"Passphrase for {printable(self.what)}: ")
        if not secret:
            raise PassphraseError("empty passphrase")
        if self.confirm and getpass.getpass("Passphrase (again): ") != secret:
            raise PassphraseError("the two passphrases differ")
        return secret.encode("utf-8")

    @staticmethod
    def _from_file(path: str) -> bytes:
        what = "passphrase on standard input" if path in STDIN_NAMES else f"passphrase file {path}"
        if path in STDIN_NAMES:
            data = sys.stdin.buffer.read(_MAX_PASSPHRASE_FILE + 1)
            if len(data) > _MAX_PASSPHRASE_FILE:
                raise PassphraseError(f"{what}: more than {_MAX_PASSPHRASE_FILE:,} bytes")
        else:
            data = read_bounded(path, _MAX_PASSPHRASE_FILE, what)
        try:
            secret = data.decode("utf-8").split("\n", 1)[0].removesuffix("\r")
        except UnicodeDecodeError as e:
            raise PassphraseError(f"{what} is not UTF-8 text") from e
        if not secret:
            shown = f"{what}: its first line is empty" if data.strip() else f"{what} is empty"
            raise PassphraseError(shown)
        return secret.encode("utf-8")


def passphrase_reader(
    path: str | None, *, confirm: bool = False, what: str = "the key", env: str = PASSPHRASE_ENV
) -> PassphraseSource:
    """The passphrase source for ``--passphrase-file PATH`` (see :class:`PassphraseSource`)."""
    return PassphraseSource(path, confirm=confirm, what=what, env=env)


def ask_pin() -> Callable[[str], bytes] | None:
    """A PIN prompt at a terminal, or None where there is none to ask (a script, CI)."""
    if not sys.stdin.isatty():
        return None

    def ask(prompt: str) -> bytes:
        secret = getpass.getpass(printable(prompt))
        if not secret:
            raise PassphraseError("empty PIN")
        return secret.encode("utf-8")

    return ask
