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

import re

__all__ = ["printable"]

# C0 controls, DEL, C1 controls, the bidi embeddings/overrides/isolates, the line and
# paragraph separators.
_UNSAFE = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal or log viewer would act on escaped."""
    return _UNSAFE.sub(_escape, text)
