"""Strict JSON decoding shared by the manifest and envelope parsers.

Two parsers that disagree about a document are an attack surface, so we
refuse what JSON leaves ambiguous: duplicate keys, NaN/Infinity, invalid
UTF-8, a byte-order mark, absurd nesting.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic

from .errors import FormatError
from .text import printable

__all__ = ["first_error", "load_json_object", "load_model", "no_constants", "no_duplicates"]

_Model = TypeVar("_Model", bound=pydantic.BaseModel)


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook``: a key given twice is a ValueError."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def no_constants(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: NaN and Infinity are a ValueError."""
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every document: json.loads builds a new one for each call given hooks.
_DECODER = json.JSONDecoder(object_pairs_hook=no_duplicates, parse_constant=no_constants)


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Decode ``data`` as one JSON object or raise :class:`FormatError` naming ``what``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{what} is not valid UTF-8 (byte {e.start})") from e
    if text.startswith("\ufeff"):
        raise FormatError(f"{what} starts with a byte-order mark; expected plain UTF-8 JSON")
    try:
        obj = _DECODER.decode(text)
    except RecursionError as e:
        raise FormatError(f"{what} is nested too deeply") from e
    except ValueError as e:  # JSONDecodeError is a ValueError, as are our hooks' errors
        raise FormatError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise FormatError(f"{what} must be a JSON object, found {type(obj).__name__}")
    return obj


def load_model(
    model: type[_Model], data: bytes, what: str, *, invalid: str, limit: int | None = None
) -> _Model:
    """Decode ``data`` as one JSON object and validate it as ``model``.

    Args:
        model: the pydantic model to validate against.
        data: the document's bytes.
        what: names the document in size and JSON errors.
        invalid: prefixes the first validation problem in the error.
        limit: the most bytes accepted, if any.

    Raises:
        FormatError: oversize, not a strict JSON object, or not valid as ``model``.
    """
    if limit is not None and len(data) > limit:
        raise FormatError(f"{what} is {len(data)} bytes; the limit is {limit}")
    obj = load_json_object(data, what)
    try:
        return model.model_validate(obj)
    except pydantic.ValidationError as e:
        raise FormatError(f"{invalid}: {first_error(e)}") from e


def first_error(error: pydantic.ValidationError) -> str:
    """One line for the first problem pydantic found: ``field.path: message``."""
    detail = error.errors(include_url=False)[0]
    # A location may name a key from the document (a digest algorithm, a field the
    # predicate does not define): text from outside, shown inert.
    where = printable(".".join(str(part) for part in detail["loc"]))
    message = str(detail["msg"]).removeprefix("Value error, ")
    if detail["type"] == "extra_forbidden":
        message = "unexpected field"
    return f"{where}: {message}" if where else message
