"""Fleet trust: the registry's trust state as TUF metadata, and hosts that decide from it.

The publisher writes a TUF repository (:mod:`.repository`); each host syncs
it with python-tuf's ngclient (:mod:`.sync`) into a local state file
(:mod:`.state`) and loads plugins deciding from that file alone
(:class:`FleetTrust`). Only this module's light names are exported: importing
it never imports TUF.
"""

from __future__ import annotations

from .state import FleetState, read_fleet_state
from .trust import GRACE_ACTION, FleetTrust, host_audit

__all__ = ["GRACE_ACTION", "FleetState", "FleetTrust", "host_audit", "read_fleet_state"]
