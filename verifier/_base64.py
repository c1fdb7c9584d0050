"""Strict, canonical base64 as DSSE allows it (standard or URL-safe alphabet).

Import-light on purpose: the capture decodes plugin.sig's payload before
pydantic loads, and must read it exactly as the envelope parser does.
"""

from __future__ import annotations

import base64
import binascii
import functools

__all__ = ["decode_canonical"]


# A load decodes plugin.sig's payload as the envelope is validated, as its claim is
# read and as it is authenticated: the same text, so the same bytes (a few kept).
@functools.lru_cache(maxsize=8)
def decode_canonical(text: str) -> bytes:
    """Decode ``text``; raise ``ValueError`` unless it is valid, canonical base64.

    Non-canonical encodings (stray padding bits, missing padding) are refused,
    so one envelope has exactly one byte representation of its payload and
    signatures: flipping any character of either is detected.
    """
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        raw = text.encode("ascii")
        data = base64.b64decode(raw, altchars=altchars, validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError("not valid base64") from e
    if base64.b64encode(data, altchars=altchars) != raw:
        raise ValueError("not canonical base64")
    return data
