"""A fleet host's local state: one file, replaced atomically by each successful sync.

The file holds what the last sync verified: the TUF metadata it trusts (the
next sync starts from it, so versions never go back), the trust state that
metadata carries, and when the sync happened. Loads read the ``trust`` part
and the expiry; nothing here imports TUF, so the load path stays light.

The reference time of every offline decision is the later of the clock and
the persisted ``synced_at`` (a clock set back cannot revive an expired
state); file modification times are never used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vtreg.verifier._json import load_json_object
from vtreg.verifier.envelope import format_time
from vtreg.verifier.errors import FormatError, VtregError
from vtreg.verifier.files import atomic_write, read_bounded
from vtreg.verifier.text import path_text
from vtreg.verifier.trust import TrustState
from vtreg.verifier.trust_state import state_from_json, state_to_json

__all__ = ["FORMAT", "FleetState", "RoleInfo", "read_fleet_state", "write_fleet_state"]

FORMAT = "vtreg-fleet-state-v1"
MAX_STATE_BYTES = 1 << 30


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
    """What one successful sync verified."""

    source: str
    synced_at: datetime
    roles: Mapping[str, RoleInfo]
    trust: TrustState
    metadata: Mapping[str, str]  # role name -> the verified file's text, as downloaded
    log: str | None = None  # the vkey of the log this host witnesses
    checkpoint: str | None = None  # the latest checkpoint of that log it accepted

    @property
    def expires(self) -> datetime:
        """When the first of the trusted roles expires: no decision from this state after it."""
        return min(info.expires for info in self.roles.values())

    def reference_time(self, clock: datetime) -> datetime:
        """The time to judge expiry at: the clock, but never before the last sync."""
        return max(clock, self.synced_at)

    def to_bytes(self) -> bytes:
        """The state file's bytes."""
        doc = {
            "format": FORMAT,
            "source": self.source,
            "synced_at": format_time(self.synced_at),
            "roles": {name: info.to_json() for name, info in sorted(self.roles.items())},
            "trust": state_to_json(self.trust),
            "metadata": dict(sorted(self.metadata.items())),
            "log": self.log,
            "checkpoint": self.checkpoint,
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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


def parse_fleet_state(data: bytes, what: str) -> FleetState:
    """A state file's contents.

    Raises:
        FormatError: not a fleet state file of this format.
    """
    doc = load_json_object(data, what)
    if doc.get("format") != FORMAT:
        raise FormatError(f"{what} is not a vtreg fleet state ({FORMAT})")
    roles, metadata = doc.get("roles"), doc.get("metadata")
    if not isinstance(roles, dict) or not roles or not isinstance(metadata, dict):
        raise FormatError(f"{what} lacks its roles or metadata")
    if not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(f"{what}: metadata must be text")
    source, log, checkpoint = doc.get("source"), doc.get("log"), doc.get("checkpoint")
    if not isinstance(source, str):
        raise FormatError(f"{what}: source must be text")
    if not all(isinstance(v, str | None) for v in (log, checkpoint)):
        raise FormatError(f"{what}: the log and its checkpoint must be text")
    return FleetState(
        source=source,
        synced_at=_time(doc.get("synced_at"), "synced_at"),
        roles={name: _role(value, name) for name, value in roles.items()},
        trust=state_from_json(doc.get("trust")),
        metadata=metadata,
        log=log,
        checkpoint=checkpoint,
    )


def read_fleet_state(path: str) -> FleetState:
    """The state file at ``path``.

    Raises:
        NotFoundError: there is none (run `vtreg fleet sync` first).
        VtregError: it is damaged: no decision can be made from it (not a
            refusal of any plugin).
    """
    what = f"fleet state {path_text(path)}"
    data = read_bounded(path, MAX_STATE_BYTES, what)
    try:
        return parse_fleet_state(data, what)
    except FormatError as e:
        raise VtregError(f"cannot decide: {e}") from e


def write_fleet_state(path: str, state: FleetState) -> None:
    """Replace the state file at ``path`` atomically (a crash leaves the old one).

    Raises:
        WriteError: it cannot be written.
    """
    if not state.roles:
        raise VtregError("a fleet state names its roles")
    atomic_write(path, state.to_bytes(), 0o600)
