"""A fleet host's local state: one SQLite file, replaced atomically by each sync that changes it.

The file holds what the last sync verified, in rows a load can pick:

* ``header`` (one row): the source, ``synced_at``, each role's version and
  expiry, the names synced (``NULL``: every name), counts, a digest of the
  trust entries, and the audit log's vkey and last accepted checkpoint;
* ``metadata``: the TUF metadata as downloaded (the next sync starts from it,
  so versions never go back);
* ``keys``: one trusted key per row; ``names``: one plugin name per row (its
  contents and rollback floors, the entry its bin's target carries), indexed
  by name, with the bin it came from.

The file is a trust store as the registry's SQLite file is: it and its
directory must be this user's (or root's) and writable by nobody else, or it
is not read; a sync creates a missing directory 0700 and the file 0600.

A load reads the header, the keys and the one row of the name plugin.sig
claims (:meth:`StateFile.trust_for`), so its cost does not grow with the
state. A sync that changes the trust writes a new file beside the old one,
fsyncs it and renames it over (a crash leaves the old one); a sync that
finds nothing new updates the header and the timestamp in one SQLite
transaction (its journal makes that atomic too). Nothing here imports TUF.

The reference time of every offline decision is the later of the clock and
the persisted ``synced_at`` (a clock set back cannot revive an expired
state); file modification times are never used.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vtreg.registry.sqlite_file import check_private
from vtreg.verifier.claim import claim_of
from vtreg.verifier.envelope import format_time
from vtreg.verifier.errors import FormatError, NotFoundError, VtregError, WriteError
from vtreg.verifier.text import path_text
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState
from vtreg.verifier.trust_state import content_from_json, floor_from_json, key_from_json

__all__ = [
    "FORMAT",
    "FleetState",
    "RoleInfo",
    "StateFile",
    "SyncedState",
    "read_fleet_state",
    "update_fleet_state",
    "write_fleet_state",
]

FORMAT = "vtreg-fleet-state-v2"

_SCHEMA = """
CREATE TABLE header (
    id INTEGER PRIMARY KEY CHECK (id = 1), format TEXT NOT NULL, source TEXT NOT NULL,
    synced_at TEXT NOT NULL, roles TEXT NOT NULL, names TEXT, keys INTEGER NOT NULL,
    contents INTEGER NOT NULL, trust_digest TEXT NOT NULL, log TEXT, checkpoint TEXT
);
CREATE TABLE metadata (role TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE keys (keyid TEXT PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE names (name TEXT PRIMARY KEY, bin TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX names_by_bin ON names (bin);
"""
_SELECT_HEADER = (
    "SELECT format, source, synced_at, roles, names, keys, contents, trust_digest, log, "
    "checkpoint FROM header"
)
_INSERT_HEADER = "INSERT INTO header VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class RoleInfo:
    """The version and expiry of one trusted role (``bins``: the lowest expiry of all bins)."""

    version: int
    expires: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"version": self.version, "expires": format_time(self.expires)}


@dataclass(frozen=True)
class FleetState:
    """What one successful sync verified: the header of the state file."""

    source: str
    synced_at: datetime
    roles: Mapping[str, RoleInfo]
    names: frozenset[str] | None = None  # the names synced (None: every name)
    keys: int = 0
    contents: int = 0
    trust_digest: str = ""  # changes exactly when a trust entry does
    log: str | None = None  # the log this host witnesses: its vkey, or a tlog-policy's text
    checkpoint: str | None = None  # the latest checkpoint of that log it accepted

    @property
    def expires(self) -> datetime:
        """When the first of the trusted roles expires: no decision from this state after it."""
        return min(info.expires for info in self.roles.values())

    def reference_time(self, clock: datetime) -> datetime:
        """The time to judge expiry at: the clock, but never before the last sync."""
        return max(clock, self.synced_at)

    def _row(self) -> tuple[Any, ...]:
        roles = {name: info.to_json() for name, info in sorted(self.roles.items())}
        names = json.dumps(sorted(self.names)) if self.names is not None else None
        return (
            FORMAT, self.source, format_time(self.synced_at), json.dumps(roles), names,
            self.keys, self.contents, self.trust_digest, self.log, self.checkpoint,
        )  # fmt: skip


@dataclass(frozen=True)
class SyncedState:
    """Everything a sync writes: the header, the verified metadata and the trust entries."""

    header: FleetState
    metadata: Mapping[str, str]  # role name -> the verified file's text, as downloaded
    keys: Mapping[str, str]  # keyid -> its entry's canonical JSON
    names: Mapping[str, tuple[str, str]]  # name -> (its bin, its entry's canonical JSON)


def _check_private(path: str) -> None:
    """Refuse a state file, or a directory it is in, that another user could swap.

    The registry's rules (:func:`~vtreg.registry.sqlite_file.check_private`): this
    user's or root's, writable by nobody else; the file's directory, and that of
    the file a symlink names, and the journal a write leaves beside it.
    """
    given = Path(path).absolute()
    real = Path(os.path.realpath(given))
    for directory in dict.fromkeys((given.parent, real.parent)):
        check_private(directory, "fleet state directory", VtregError)
    check_private(real, "fleet state file", VtregError)
    check_private(real.with_name(real.name + "-journal"), "fleet state file", VtregError)


def _time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise FormatError(f"{what} is not a time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise FormatError(f"{what} is not a time: {value!r}") from e
    if moment.tzinfo is None:
        raise FormatError(f"{what} has no UTC offset: {value!r}")
    return moment.astimezone(UTC)


def _role(value: object, name: str) -> RoleInfo:
    if not isinstance(value, dict) or not isinstance(value.get("version"), int):
        raise FormatError(f"role {name!r} in the fleet state is malformed")
    return RoleInfo(value["version"], _time(value.get("expires"), f"expiry of {name}"))


def _header(row: tuple[Any, ...] | None, what: str) -> FleetState:
    if row is None or row[0] != FORMAT:
        raise FormatError(f"{what} is not a vtreg fleet state ({FORMAT})")
    _, source, synced_at, roles_text, names_text, keys, contents, digest, log, checkpoint = row
    try:
        roles, names = json.loads(roles_text), json.loads(names_text or "null")
    except (TypeError, ValueError) as e:
        raise FormatError(f"{what}: its roles or names are not JSON") from e
    if not isinstance(roles, dict) or not roles:
        raise FormatError(f"{what} lacks its roles")
    listed = isinstance(names, list) and all(isinstance(n, str) for n in names)
    if names is not None and not listed:
        raise FormatError(f"{what}: the names synced must be a list of names")
    return FleetState(
        source=source,
        synced_at=_time(synced_at, "synced_at"),
        roles={name: _role(value, name) for name, value in roles.items()},
        names=frozenset(names) if names is not None else None,
        keys=keys,
        contents=contents,
        trust_digest=digest,
        log=log,
        checkpoint=checkpoint,
    )


class StateFile:
    """A state file opened read-only: its header, and the rows a decision needs.

    Raises:
        NotFoundError: there is no state file (run `vtreg fleet sync` first).
        VtregError: it is damaged: no decision can be made from it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._what = f"fleet state {path_text(self.path)}"
        if not Path(self.path).is_file():
            raise NotFoundError(f"{self._what} does not exist: run `vtreg fleet sync` first")
        _check_private(self.path)
        try:
            uri = Path(self.path).absolute().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self.header = _header(self._db.execute(_SELECT_HEADER).fetchone(), self._what)
        except sqlite3.Error as e:
            raise VtregError(f"cannot decide: {self._what} is not a vtreg fleet state: {e}") from e
        except FormatError as e:
            raise VtregError(f"cannot decide: {e}") from e
        self._keys: list[TrustedKey] | None = None

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as e:
            raise VtregError(f"cannot decide: {self._what} is not readable: {e}") from e

    def _trusted_keys(self) -> list[TrustedKey]:
        if self._keys is None:
            rows = self._rows("SELECT entry FROM keys ORDER BY keyid")
            self._keys = [key_from_json(json.loads(entry).get("key")) for (entry,) in rows]
        return self._keys

    def _name(self, entry: str) -> tuple[list[TrustedContent], dict[tuple[str, str], str]]:
        doc = json.loads(entry)
        contents = [content_from_json(c) for c in doc.get("contents", [])]
        return contents, dict(floor_from_json(f) for f in doc.get("floors", []))

    def trust_for(self, envelope: bytes | None) -> TrustState:
        """The keys and the one name ``envelope`` claims (as the registry's ``state_for``).

        A name the sync did not cover gives a state that covers no name (the
        decision then cannot decide about it).
        """
        try:
            keys, claim = self._trusted_keys(), claim_of(envelope)
            covered = self.header.names is None or (
                claim is not None and claim.name in self.header.names
            )
            if claim is None or not covered:
                return TrustState.build(keys, [], names=(), floors={})
            rows = self._rows("SELECT entry FROM names WHERE name = ?", (claim.name,))
            contents, floors = self._name(rows[0][0]) if rows else ([], {})
            return TrustState.build(keys, contents, names=(claim.name,), floors=floors)
        except (FormatError, ValueError) as e:
            raise VtregError(f"cannot decide: {self._what} holds a malformed entry: {e}") from e

    def full_trust(self) -> TrustState:
        """Every key and every name the state holds (for status, tests, tools)."""
        contents: list[TrustedContent] = []
        floors: dict[tuple[str, str], str] = {}
        for (entry,) in self._rows("SELECT entry FROM names ORDER BY name"):
            found, found_floors = self._name(entry)
            contents += found
            floors |= found_floors
        names = self.header.names
        return TrustState.build(self._trusted_keys(), contents, names=names, floors=floors)

    def metadata(self, roles: Iterable[str] | None = None) -> dict[str, str]:
        """The verified TUF metadata texts (of ``roles`` only, if given)."""
        rows = self._rows("SELECT role, text FROM metadata ORDER BY role")
        wanted = set(roles) if roles is not None else None
        return {role: text for role, text in rows if wanted is None or role in wanted}

    def bin_rows(self, bins: Iterable[str]) -> dict[str, tuple[str, str]]:
        """The name rows of ``bins``: name -> (bin, entry), to carry over unchanged."""
        found: dict[str, tuple[str, str]] = {}
        for role in bins:
            for name, entry in self._rows("SELECT name, entry FROM names WHERE bin = ?", (role,)):
                found[name] = (role, entry)
        return found


def read_fleet_state(path: str) -> FleetState:
    """The header of the state file at ``path``.

    Raises:
        NotFoundError: there is none (run `vtreg fleet sync` first).
        VtregError: it is damaged: no decision can be made from it.
    """
    state = StateFile(path)
    state.close()
    return state.header


def _fill(db: sqlite3.Connection, synced: SyncedState) -> None:
    db.executescript(_SCHEMA)
    db.execute(_INSERT_HEADER, synced.header._row())
    db.executemany("INSERT INTO metadata VALUES (?, ?)", sorted(synced.metadata.items()))
    db.executemany("INSERT INTO keys VALUES (?, ?)", sorted(synced.keys.items()))
    db.executemany(
        "INSERT INTO names VALUES (?, ?, ?)",
        ((name, role, entry) for name, (role, entry) in sorted(synced.names.items())),
    )
    db.commit()


def write_fleet_state(path: str, synced: SyncedState) -> None:
    """Replace the state file at ``path`` atomically: a new file, fsynced, renamed over.

    Raises:
        WriteError: it cannot be written (the old file is left as it was).
    """
    if not synced.header.roles:
        raise VtregError("a fleet state names its roles")
    directory = str(Path(path).absolute().parent)
    try:
        # A missing directory is made private (0700), as the registry's is; an existing one
        # must already be: a state written there would be refused by every load.
        Path(directory).mkdir(mode=0o700, exist_ok=True)
        check_private(Path(directory), "fleet state directory", WriteError)
        fd, temp = tempfile.mkstemp(prefix=".vtreg-state-", dir=directory)  # 0600
    except OSError as e:
        raise WriteError(f"cannot write the fleet state in {path_text(directory)}: {e}") from e
    try:
        os.close(fd)  # mkstemp made it 0600; SQLite opens it by name
        db = sqlite3.connect(temp)
        try:
            db.execute("PRAGMA journal_mode = DELETE")
            _fill(db, synced)
        finally:
            db.close()
        _fsync(temp)
        Path(temp).replace(path)
        _fsync(directory)
    except (OSError, sqlite3.Error) as e:
        Path(temp).unlink(missing_ok=True)
        raise WriteError(f"cannot write the fleet state {path_text(path)}: {e}") from e


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def update_fleet_state(path: str, header: FleetState, metadata: Mapping[str, str]) -> None:
    """Replace the header and some metadata texts in place, in one transaction.

    For a sync that found no new snapshot: a new timestamp (and maybe root)
    and a new checkpoint, the trust rows unchanged. SQLite's journal makes the
    transaction atomic: a crash leaves the old header or the new one.

    Raises:
        WriteError: it cannot be written.
    """
    try:
        db = sqlite3.connect(path)
        try:
            with db:
                db.execute("DELETE FROM header")
                db.execute(_INSERT_HEADER, header._row())
                db.executemany(
                    "INSERT OR REPLACE INTO metadata VALUES (?, ?)", sorted(metadata.items())
                )
        finally:
            db.close()
    except sqlite3.Error as e:
        raise WriteError(f"cannot update the fleet state {path_text(path)}: {e}") from e
