"""Text from outside, made safe to show: no control, escape or bidi-override characters.

A plugin directory, an unauthenticated envelope, an environment variable or a
database row can hold characters that a terminal or a log viewer acts on: an
escape sequence can repaint a refusal as "verified", a carriage return can
overwrite a line, a bidi override can reorder what is read, and a NUL cannot
be stored in PostgreSQL text at all. :func:`printable` writes each such
character as a visible ``\\xNN``/``\\uNNNN`` escape, so what is shown
still says what was there, only inert. ``--json`` output needs none of
this: JSON escapes control characters itself.
"""

from __future__ import annotations

import os
import re

__all__ = ["path_text", "printable"]

# C0 controls, DEL, C1 controls, the bidi embeddings/overrides/isolates, the line and
# paragraph separators, and lone surrogates (a file name that is not UTF-8, as Python
# decodes it: it cannot be written as UTF-8 at all).
_UNSAFE = re.compile(
    "[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069\\ud800-\\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal or log viewer would act on escaped."""
    return _UNSAFE.sub(_escape, text)


def path_text(path: str | os.PathLike[str]) -> str:
    """A file system path as text that can be stored, hashed and read back, whatever its bytes.

    POSIX paths are bytes: a name that is not UTF-8 is written with each such byte
    as ``\\xNN`` and each backslash doubled, so the text is valid UTF-8 and maps
    back to exactly one path.
    """
    raw = os.fsencode(path).replace(b"\\", b"\\\\")
    return raw.decode("utf-8", "backslashreplace")
