"""Columns of registry rows turned into values through one checked path.

A row is only what the database hands back. A registry restored from a bad
backup, edited by hand or written by some other tool can hold a scope list
that is not JSON, a version that is not one, or a threshold of -5. Every site
that turns a row into a value (:mod:`.records`, :mod:`.state`, :mod:`.listing`)
reads such a column through these functions. They return the value, or raise
one :class:`~vtreg.verifier.errors.RegistryError` that names the table, the
row's key and the column. That error is exit 3, "could not decide": never an
internal error, and never a value that quietly decides (a threshold below 1
does not mean "any number of signers").

No SQLAlchemy, pydantic or cryptography here: the read paths import this module.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

from vtreg.verifier.errors import KeyFileError, RegistryError

if TYPE_CHECKING:
    from vtreg.verifier.keys import PublicKey

__all__ = ["corrupt", "floor_version", "public_key", "scopes", "threshold", "version"]

_SHOWN = 40  # characters of a corrupt value quoted in the message


def corrupt(table: str, key: str, problem: str) -> RegistryError:
    """The error for the row of ``table`` whose key is ``key``, corrupt as ``problem`` says."""
    return RegistryError(
        f"could not decide: the registry's {table} row {key} is corrupt: {problem}"
    )


def _shown(value: object) -> str:
    # repr() escapes control and bidi characters; a long value is cut.
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def public_key(keyid: str, stored: bytes, name: str | None) -> PublicKey:
    """The public key of the ``keys`` row ``keyid``, named ``name``.

    Only the decision paths call this (the listing shows keys without verifying with
    them): they have imported the key classes, and cryptography with them, already.

    Raises:
        RegistryError: ``stored`` is not a key vtreg could verify with.
    """
    from vtreg.verifier.keys import PublicKey

    try:
        return PublicKey(bytes(stored), name)
    except KeyFileError as e:  # neither ed25519's 32 bytes nor ECDSA's DER, or a weak point
        raise corrupt("keys", keyid, f"public_key is {e}") from e


def scopes(keyid: str, stored: object) -> tuple[str, ...]:
    """The scopes of the ``keys`` row ``keyid``: a JSON list of non-empty name patterns.

    Raises:
        RegistryError: ``stored`` is anything else.
    """
    try:
        value = json.loads(stored)  # type: ignore[arg-type] # None or a number: TypeError
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise corrupt("keys", keyid, f"scopes {_shown(stored)} is not a JSON list of names")
    return tuple(value)


def threshold(digest: str, stored: object) -> int:
    """The threshold of the ``plugins`` row ``digest``: a whole number of at least 1.

    SQLite keeps whatever was written in an INTEGER column that is not a number
    (text, a real), so the type is checked as well as the range.

    Raises:
        RegistryError: ``stored`` is anything else.
    """
    if type(stored) is not int or stored < 1:
        raise corrupt(
            "plugins", digest, f"threshold {_shown(stored)} is not a whole number of at least 1"
        )
    return stored


def version(digest: str, stored: object) -> str:
    """The version of the ``plugins`` row ``digest``, once it is a semantic version.

    Raises:
        RegistryError: ``stored`` is not a version vtreg would have trusted.
    """
    if isinstance(stored, str) and _is_version(stored):
        return stored
    raise corrupt("plugins", digest, _not_a_version(stored))


def floor_version(name: str, platform: str, stored: object) -> str:
    """The rollback floor of ``name`` on ``platform``, once it is a semantic version. The
    floor's statement reads only the version, so its row is named by name and version.

    Raises:
        RegistryError: ``stored`` is not a version vtreg would have trusted.
    """
    if isinstance(stored, str) and _is_version(stored):
        return stored
    where = f"{name} {_shown(stored)} (the floor on {platform})"
    raise corrupt("plugins", where, _not_a_version(stored))


def _not_a_version(stored: object) -> str:
    return f"version {_shown(stored)} is not a semantic version"


@functools.lru_cache(maxsize=4096)
def _is_version(text: str) -> bool:
    # Every load checks its content's version and its floor's: the same few strings,
    # parsed once. Only the decision and write paths get here, which have imported
    # the manifest's rules (and pydantic) already; the listing never does.
    from vtreg.verifier.manifest import SemVer

    try:
        SemVer.parse(text)
    except ValueError:
        return False
    return True
