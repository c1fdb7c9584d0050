"""The verified metadata ngclient left in a sync's work directory, as state-file rows.

Every trust entry is checked against its target's length and hash (the
canonical bytes the publisher hashed) and parsed, so that the state file
holds only entries that are well-formed and in their own bin. Nothing here
downloads or verifies signatures: ngclient has done that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, SuccinctRoles, Targets, Timestamp

from vtreg.verifier.errors import FormatError
from vtreg.verifier.trust_state import canonical, content_from_json, floor_from_json, key_from_json

from .errors import SyncRefused
from .repository import BIN_PREFIX, KEY_PATH, NAME_PATH
from .state import FleetState, RoleInfo, SyncedState

__all__ = ["TOP_ROLES", "bins_of", "collect", "read_role", "role_info", "succinct"]

TOP_ROLES = ("root", "timestamp", "snapshot", "targets")


def read_role(workdir: str, role: str) -> str:
    """The text of ``role``'s metadata file in the work directory."""
    return Path(workdir, f"{role}.json").read_text(encoding="utf-8")


def role_info(signed: Root | Timestamp | Snapshot | Targets) -> RoleInfo:
    """A role's version and expiry."""
    return RoleInfo(signed.version, signed.expires)


def succinct(targets: Targets) -> SuccinctRoles:
    """The hash bins targets delegates to.

    Raises:
        FormatError: none (not a vtreg fleet repository).
    """
    delegations = targets.delegations
    if delegations is None or delegations.succinct_roles is None:
        raise FormatError("targets delegates to no hash bins: not a vtreg fleet repository")
    return delegations.succinct_roles


def bins_of(roles: SuccinctRoles, names: frozenset[str]) -> set[str]:
    """The bins ``names`` fall in."""
    return {roles.get_role_for_target(f"{NAME_PATH}{name}") for name in names}


def _entries(targets: Targets, where: str) -> Iterator[tuple[str, str, str]]:
    """(path, entry's canonical JSON, its sha256) of each target, checked against its hash."""
    for path, target in targets.targets.items():
        custom = target.custom
        if not isinstance(custom, dict):
            raise FormatError(f"target {path} in {where} carries no trust entry")
        data = canonical(custom)
        try:
            target.verify_length_and_hashes(data)
        except exceptions.LengthOrHashMismatchError as e:
            raise SyncRefused(
                f"target {path} in {where}: its entry is not the one its hash names",
                code="metadata-mismatch",
            ) from e
        yield path, data.decode("utf-8"), target.hashes["sha256"]


def _keys(targets: Targets, digest: Any) -> dict[str, str]:
    keys: dict[str, str] = {}
    for path, entry, sha in _entries(targets, "targets"):
        key = key_from_json(_load(entry).get("key"))
        if path != f"{KEY_PATH}{key.keyid}":
            raise FormatError(f"target {path} carries the entry of key {key.keyid}")
        keys[key.keyid] = entry
        digest.update(f"{path} {sha}\n".encode())
    return keys


def _load(entry: str) -> dict[str, Any]:
    import json

    doc = json.loads(entry)
    if not isinstance(doc, dict):
        raise FormatError("a trust entry is not a JSON object")
    return doc


def _check_name(path: str, entry: dict[str, Any]) -> int:
    """Parse a name's entry (its contents and floors must be of that name); its content count."""
    contents = [content_from_json(c) for c in entry.get("contents", [])]
    floors = [floor_from_json(f) for f in entry.get("floors", [])]
    named = {c.name for c in contents} | {where[0] for where, _ in floors}
    if named - {path.removeprefix(NAME_PATH)}:
        raise FormatError(f"target {path} carries entries of other names")
    return len(contents)


def _names(
    bins: Mapping[str, Targets], roles: SuccinctRoles, wanted: frozenset[str] | None, digest: Any
) -> tuple[dict[str, tuple[str, str]], int]:
    rows: dict[str, tuple[str, str]] = {}
    count = 0
    for role_name, role in sorted(bins.items()):
        for path, entry, sha in sorted(_entries(role, role_name)):
            name = path.removeprefix(NAME_PATH)
            if wanted is not None and name not in wanted:
                continue
            if roles.get_role_for_target(path) != role_name:
                raise FormatError(f"target {path} is in {role_name}, not in its own bin")
            count += _check_name(path, _load(entry))
            rows[name] = (role_name, entry)
            digest.update(f"{path} {sha}\n".encode())
    return rows, count


def collect(
    workdir: str, source: str, synced_at: datetime, names: frozenset[str] | None
) -> SyncedState:
    """The verified state ngclient left in ``workdir`` (of ``names``' bins, if given).

    Raises:
        FormatError: an entry is malformed or in another name's bin.
        SyncRefused: an entry is not the one its target's hash names.
    """
    texts = {role: read_role(workdir, role) for role in TOP_ROLES}
    targets = Metadata[Targets].from_bytes(texts["targets"].encode()).signed
    info = {
        "root": role_info(Metadata[Root].from_bytes(texts["root"].encode()).signed),
        "timestamp": role_info(Metadata[Timestamp].from_bytes(texts["timestamp"].encode()).signed),
        "snapshot": role_info(Metadata[Snapshot].from_bytes(texts["snapshot"].encode()).signed),
        "targets": role_info(targets),
    }
    roles = succinct(targets)
    bins: dict[str, Targets] = {}
    for name in roles.get_roles() if names is None else sorted(bins_of(roles, names)):
        texts[name] = read_role(workdir, name)
        bins[name] = Metadata[Targets].from_bytes(texts[name].encode()).signed
    if bins:
        earliest = min(bins.values(), key=lambda b: b.expires)
        info[BIN_PREFIX] = RoleInfo(max(b.version for b in bins.values()), earliest.expires)
    digest = hashlib.sha256()
    keys = _keys(targets, digest)
    rows, contents = _names(bins, roles, names, digest)
    header = FleetState(
        source, synced_at, info, names=names, keys=len(keys), contents=contents,
        trust_digest=digest.hexdigest(),
    )  # fmt: skip
    return SyncedState(header, texts, keys, rows)
