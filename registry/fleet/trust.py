"""A fleet host's :class:`~vtreg.loader.protocols.TrustPolicy`: decide from the local state.

``PluginLoader(trust=FleetTrust(STATE), audit=host_audit())`` decides every
load with the same pure core as the registry, from the state file the last
``vtreg fleet sync`` wrote: no database of the publisher, no network, and no
TUF import (ngclient runs only in the sync).

Offline policy: once the state has expired (the first of its roles, usually
the timestamp), a load is refused with ``trust-expired``, unless ``grace``
allows last-known-good loads for that long after expiry; each such load is
preceded by a ``fleet.last-known-good`` audit event saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from vtreg.loader.protocols import AuditEvent, AuditSink, failed_to_record
from vtreg.verifier.envelope import format_time
from vtreg.verifier.errors import NotFoundError, PolicyError, UsageError, VtregError
from vtreg.verifier.text import path_text
from vtreg.verifier.trust import TrustState

from .state import FleetState, StateFile

if TYPE_CHECKING:
    from vtreg.registry.service import Registry

__all__ = ["GRACE_ACTION", "FleetTrust", "LazyHostAudit", "host_audit", "host_audit_url"]

GRACE_ACTION = "fleet.last-known-good"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FleetTrust:
    """Trust what the host's last verified fleet sync says.

    Args:
        state_path: the state file ``vtreg fleet sync --state`` writes.
        grace: how long after the state expires loads may still decide from
            it (``None``: refuse at once, the default).
        audit: where last-known-good decisions are announced (required with
            ``grace``: such loads are always audited as such).
        clock: the current time (for tests; the reference time is never
            earlier than the state's last sync).

    Raises:
        UsageError: a negative grace, or a grace without an audit sink.
    """

    def __init__(
        self,
        state_path: str | os.PathLike[str],
        *,
        grace: timedelta | None = None,
        audit: AuditSink | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if grace is not None and grace < timedelta(0):
            raise UsageError(f"grace must not be negative, not {grace}")
        if grace is not None and audit is None:
            raise UsageError(
                "a grace period needs an audit sink: last-known-good loads are audited"
            )
        self.path = os.fspath(state_path)
        self.grace = grace
        self.audit = audit
        self.clock = clock
        self._cached: tuple[tuple[int, ...], StateFile] | None = None

    def _file(self) -> StateFile:
        """The state file as it is now (opened again only when it was replaced or updated).

        Raises:
            NotFoundError: there is no state file: run ``vtreg fleet sync`` first.
        """
        try:
            info = os.stat(self.path)  # noqa: PTH116 - the state file's identity, not a Path
        except OSError as e:
            raise NotFoundError(
                f"no fleet state at {path_text(self.path)}: run `vtreg fleet sync` first"
            ) from e
        # Its owner and mode too: a chmod or chown since it was opened is checked again.
        identity = (
            info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode, info.st_uid
        )  # fmt: skip
        if self._cached is None or self._cached[0] != identity:
            if self._cached is not None:
                self._cached[1].close()
            self._cached = (identity, StateFile(self.path))
        return self._cached[1]

    def fleet_state(self) -> FleetState:
        """The state file's header: versions, expiry, last sync.

        Raises:
            NotFoundError: there is no state file: run ``vtreg fleet sync`` first.
        """
        return self._file().header

    def state_for(self, envelope: bytes | None) -> TrustState:
        """The synced trust state, unless it has expired (and no grace covers that).

        Raises:
            PolicyError: ``trust-expired``.
            NotFoundError: no state file.
        """
        state = self._file()
        fleet = state.header
        now = fleet.reference_time(self.clock())
        if now < fleet.expires:
            return state.trust_for(envelope)
        if self.grace is None or now >= fleet.expires + self.grace:
            allowed = f" and the {self.grace} grace is over" if self.grace is not None else ""
            raise PolicyError(
                f"the fleet trust state expired at {format_time(fleet.expires)}{allowed}: "
                f"run `vtreg fleet sync` (last sync {format_time(fleet.synced_at)})",
                code="trust-expired",
            )
        assert self.audit is not None  # noqa: S101 - __init__ requires it with a grace
        expired = format_time(fleet.expires)
        event = AuditEvent(
            GRACE_ACTION,
            "allowed",
            reason=f"decided from the fleet state that expired at {expired}",
            details={
                "state": path_text(self.path),
                "expired_at": expired,
                "synced_at": format_time(fleet.synced_at),
                "reference_time": format_time(now),
                "grace_seconds": int(self.grace.total_seconds()),
            },
        )
        try:
            self.audit.record(event)
        except VtregError as e:
            failed_to_record(e, self.audit)  # the loader then writes no second event there
            raise
        return state.trust_for(envelope)


def host_audit() -> Registry:
    """The host's own audit log: an SQLite registry file under ``$VTREG_HOME``.

    It holds this host's decisions only (nothing is trusted in it); ``vtreg
    audit --db sqlite:///$VTREG_HOME/fleet-audit.db`` reads it.
    """
    from vtreg.registry.service import Registry

    return Registry.open(host_audit_url())


def host_audit_url() -> str:
    """The URL of :func:`host_audit`'s database (its directory is created, 0700)."""
    from vtreg.registry.db import vtreg_home
    from vtreg.verifier.errors import RegistryError

    home = vtreg_home()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise RegistryError(f"cannot create {home}: {e.strerror}") from e
    return f"sqlite:///{home / 'fleet-audit.db'}"


class LazyHostAudit:
    """The :func:`host_audit` log, opened only when something is recorded."""

    def __init__(self) -> None:
        self._registry: Registry | None = None

    def record(self, event: AuditEvent) -> None:
        """Append ``event`` to the host's audit log (opening it the first time)."""
        if self._registry is None:
            self._registry = host_audit()
        self._registry.record(event)

    def close(self) -> None:
        """Close the log, if it was opened."""
        if self._registry is not None:
            self._registry.close()
