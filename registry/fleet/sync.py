"""The host's side: python-tuf ngclient's update workflow, then the trust state it carries.

A sync starts from the metadata the last sync trusted (kept in the state
file), runs ngclient's refresh (root chain, timestamp, snapshot, targets:
TUF spec section 5) against a URL or a local directory, loads every hash
bin through ngclient's delegation walk, and only then writes the new state
file, atomically. Any refusal leaves the state file as it was.

ngclient works in a private temporary directory seeded from the state file:
it is the only thing python-tuf writes to.

With a log key (``log``, kept in the state once given), the host also
witnesses the registry's transparency log: the checkpoint the verified
timestamp carries must extend the one it accepted before (see
:mod:`.witnessing`), or nothing is written.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, SuccinctRoles, Targets, Timestamp
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from vtreg.verifier.errors import FormatError, NotFoundError, UsageError, VerificationError
from vtreg.verifier.note import NoteVerifier
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState
from vtreg.verifier.trust_state import (
    canonical,
    content_from_json,
    floor_from_json,
    key_from_json,
    state_to_json,
)

from .repository import BIN_PREFIX, CHECKPOINT_FIELD, KEY_PATH, LOG_DIR, NAME_PATH
from .state import FleetState, RoleInfo, read_fleet_state, write_fleet_state
from .witnessing import checkpoint_size, witness_checkpoint

__all__ = ["LocalFetcher", "SyncError", "SyncRefused", "SyncResult", "sync"]

_CHUNK = 1 << 16

# Which attack each of ngclient's refusals is, for the one-line diagnosis and its code.
_ATTACKS: tuple[tuple[type[Exception], str, str], ...] = (
    (exceptions.DownloadLengthMismatchError, "metadata-oversize", "endless data"),
    (exceptions.UnsignedMetadataError, "metadata-unsigned", "arbitrary metadata"),
    (exceptions.BadVersionNumberError, "metadata-rollback", "rollback"),
    (exceptions.ExpiredMetadataError, "metadata-expired", "freeze"),
    (exceptions.LengthOrHashMismatchError, "metadata-mismatch", "mix-and-match"),
    (exceptions.RepositoryError, "malformed", "malformed metadata"),
)


class SyncRefused(VerificationError):
    """The repository served metadata the host refuses; nothing was changed."""


class SyncError(NotFoundError):
    """The repository could not be reached or read; nothing was changed."""


class LocalFetcher(FetcherInterface):
    """Serves ``file://`` URLs from a directory (an air-gapped copy of a repository)."""

    def _fetch(self, url: str) -> Iterator[bytes]:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise exceptions.DownloadError(f"not a file URL: {url}")
        path = unquote(parsed.path)
        try:
            # Non-blocking, so that a FIFO in the directory cannot hang the sync.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise exceptions.DownloadHTTPError(f"{path} does not exist", 404) from e
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise exceptions.DownloadError(f"{path} is not a regular file")
        return _chunks(fd)


def _chunks(fd: int) -> Iterator[bytes]:
    try:
        while chunk := os.read(fd, _CHUNK):
            yield chunk
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SyncResult:
    """What a sync found."""

    state: FleetState
    changed: bool
    downloaded: int  # bytes on the wire (or read from the directory)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        checkpoint = self.state.checkpoint
        return {
            "changed": self.changed,
            "downloaded_bytes": self.downloaded,
            "checkpoint": checkpoint_size(checkpoint) if checkpoint is not None else None,
            "roles": {name: info.to_json() for name, info in sorted(self.state.roles.items())},
        }


class _Counting(FetcherInterface):
    """Counts the bytes another fetcher delivers."""

    def __init__(self, inner: FetcherInterface) -> None:
        self.inner = inner
        self.total = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        for chunk in self.inner.fetch(url):
            self.total += len(chunk)
            yield chunk


def _source(source: str) -> tuple[str, FetcherInterface]:
    if source.startswith(("http://", "https://")):
        from tuf.ngclient import Urllib3Fetcher

        return source, Urllib3Fetcher(app_user_agent="vtreg-fleet")
    if "://" in source:
        raise UsageError(f"a fleet repository is an http(s) URL or a directory, not {source!r}")
    directory = Path(source).absolute()
    if not directory.is_dir():
        raise SyncError(f"repository directory {source} does not exist")
    return directory.as_uri() + "/", LocalFetcher()


def _seed(workdir: str, previous: FleetState | None, root: bytes | None) -> bytes:
    """Write the previously trusted metadata for ngclient; return the root to start from."""
    if previous is None:
        if root is None:
            raise UsageError("the first sync needs a trusted root: --root ROOT.json")
        return root
    for role, text in previous.metadata.items():
        if role != Root.type:
            Path(workdir, f"{role}.json").write_text(text, encoding="utf-8")
    return previous.metadata[Root.type].encode("utf-8")


def _probes(roles: SuccinctRoles) -> dict[str, str]:
    """One target path per bin that falls in it: asking ngclient for it loads that bin."""
    wanted = set(roles.get_roles())
    probes: dict[str, str] = {}
    for i in itertools.count():
        path = f"{NAME_PATH}.bin-probe-{i}"
        probes.setdefault(roles.get_role_for_target(path), path)
        if len(probes) == len(wanted):
            return probes
    raise AssertionError("unreachable")  # pragma: no cover


def _read(workdir: str, role: str) -> str:
    return Path(workdir, f"{role}.json").read_text(encoding="utf-8")


def _entries(targets: Targets, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, target in targets.targets.items():
        custom = target.custom
        if not isinstance(custom, dict):
            raise FormatError(f"target {path} in {where} carries no trust entry")
        try:
            target.verify_length_and_hashes(canonical(custom))
        except exceptions.LengthOrHashMismatchError as e:
            raise SyncRefused(
                f"target {path} in {where}: its entry is not the one its hash names",
                code="metadata-mismatch",
            ) from e
        yield path, custom


def _keys(targets: Targets) -> list[TrustedKey]:
    keys = []
    for path, custom in _entries(targets, "targets"):
        key = key_from_json(custom.get("key"))
        if path != f"{KEY_PATH}{key.keyid}":
            raise FormatError(f"target {path} carries the entry of key {key.keyid}")
        keys.append(key)
    return keys


def _names(
    bins: Mapping[str, Targets], roles: SuccinctRoles, wanted: frozenset[str] | None
) -> tuple[list[TrustedContent], dict[tuple[str, str], str]]:
    contents: list[TrustedContent] = []
    floors: dict[tuple[str, str], str] = {}
    for name, role in bins.items():
        for path, custom in _entries(role, name):
            if wanted is not None and path.removeprefix(NAME_PATH) not in wanted:
                continue
            if roles.get_role_for_target(path) != name:
                raise FormatError(f"target {path} is in {name}, not in its own bin")
            entry = [content_from_json(c) for c in custom.get("contents", [])]
            entry_floors = [floor_from_json(f) for f in custom.get("floors", [])]
            named = {c.name for c in entry} | {where[0] for where, _ in entry_floors}
            if named - {path.removeprefix(NAME_PATH)}:
                raise FormatError(f"target {path} carries entries of other names")
            contents += entry
            floors.update(entry_floors)
    return contents, floors


def _role_info(signed: Root | Timestamp | Snapshot | Targets) -> RoleInfo:
    return RoleInfo(signed.version, signed.expires)


def _collect(
    workdir: str, source: str, synced_at: datetime, names: frozenset[str] | None
) -> FleetState:
    """The verified state ngclient left in ``workdir`` (of ``names``' bins, if given)."""
    texts = {role: _read(workdir, role) for role in ("root", "timestamp", "snapshot", "targets")}
    root = Metadata[Root].from_bytes(texts["root"].encode()).signed
    timestamp = Metadata[Timestamp].from_bytes(texts["timestamp"].encode()).signed
    snapshot = Metadata[Snapshot].from_bytes(texts["snapshot"].encode()).signed
    targets = Metadata[Targets].from_bytes(texts["targets"].encode()).signed
    roles = _succinct(targets)
    bins: dict[str, Targets] = {}
    loaded = roles.get_roles() if names is None else sorted(_bins_of(roles, names))
    for name in loaded:
        texts[name] = _read(workdir, name)
        bins[name] = Metadata[Targets].from_bytes(texts[name].encode()).signed
    contents, floors = _names(bins, roles, names)
    info = {
        name: _role_info(signed)
        for name, signed in (
            ("root", root),
            ("timestamp", timestamp),
            ("snapshot", snapshot),
            ("targets", targets),
        )
    }
    if bins:
        earliest = min(bins.values(), key=lambda b: b.expires)
        info[BIN_PREFIX] = RoleInfo(max(b.version for b in bins.values()), earliest.expires)
    trust = TrustState.build(_keys(targets), contents, names=names, floors=floors)
    return FleetState(source, synced_at, info, trust, texts)


def _succinct(targets: Targets) -> SuccinctRoles:
    delegations = targets.delegations
    if delegations is None or delegations.succinct_roles is None:
        raise FormatError("targets delegates to no hash bins: not a vtreg fleet repository")
    return delegations.succinct_roles


def _refused(error: Exception) -> SyncRefused | None:
    for kind, code, attack in _ATTACKS:
        if isinstance(error, kind):
            return SyncRefused(f"refused: {attack}: {error}", code=code)
    return None


def _bins_of(roles: SuccinctRoles, names: frozenset[str]) -> set[str]:
    return {roles.get_role_for_target(f"{NAME_PATH}{name}") for name in names}


def _update(
    workdir: str,
    url: str,
    fetcher: FetcherInterface,
    bootstrap: bytes,
    names: frozenset[str] | None,
) -> None:
    updater = Updater(workdir, url, fetcher=fetcher, config=UpdaterConfig(), bootstrap=bootstrap)
    updater.refresh()
    targets = Metadata[Targets].from_bytes(Path(workdir, "targets.json").read_bytes()).signed
    roles = _succinct(targets)
    probes = _probes(roles).values() if names is None else [f"{NAME_PATH}{n}" for n in names]
    for probe in probes:
        updater.get_targetinfo(probe)  # loads (and verifies) the bin the path falls in


def _log_key(log: str | None, previous: FleetState | None) -> str | None:
    """The vkey this host witnesses: the one given, else the one its state keeps."""
    kept = previous.log if previous is not None else None
    if log is not None and kept is not None and log != kept:
        raise UsageError(f"this host witnesses the log {kept}, not {log}")
    if log is not None:
        NoteVerifier.parse(log)  # a malformed vkey is a usage error, before any download
    return log or kept


def _witness(
    workdir: str,
    url: str,
    fetcher: FetcherInterface,
    vkey: str,
    previous: FleetState | None,
) -> str:
    """The checkpoint the verified timestamp carries, once checked against the last one."""
    timestamp = Metadata[Timestamp].from_bytes(Path(workdir, "timestamp.json").read_bytes())
    carried = timestamp.signed.unrecognized_fields.get(CHECKPOINT_FIELD)
    note = carried.encode("utf-8") if isinstance(carried, str) else None
    before = previous.checkpoint if previous is not None else None

    def fetch(path: str, length: int) -> bytes:
        try:
            return fetcher.download_bytes(f"{url}{LOG_DIR}/{path}", length)
        except exceptions.DownloadError as e:
            raise SyncError(f"could not read tile {path} of the published log: {e}") from e

    accepted = witness_checkpoint(
        note, before.encode("utf-8") if before else None, NoteVerifier.parse(vkey), fetch
    )
    return accepted.decode("utf-8")


def sync(
    source: str,
    state_path: str,
    *,
    root: bytes | None,
    clock: datetime,
    names: Iterable[str] | None = None,
    log: str | None = None,
) -> SyncResult:
    """Update the host's state from a fleet repository (a URL, or a directory).

    Args:
        source: the repository's base URL (http or https), or its directory.
        state_path: the host's state file (made by the first sync).
        root: the trusted root metadata for the first sync (ignored later:
            the state file's root is trusted, and newer ones must chain to it).
        clock: the current time.
        names: the plugin names this host loads: only their bins are
            downloaded, and the state can decide about them alone (``None``:
            every bin, every name).
        log: the vkey of the registry's transparency log: the timestamp's
            checkpoint must be signed by it and extend the one accepted
            before (kept in the state, and demanded from then on).

    Returns:
        The new state, whether the trust state changed, and the bytes read.

    Raises:
        SyncRefused: the repository served metadata TUF refuses (the attack
            is named, with its code); the state file is unchanged.
        LogError: the timestamp's checkpoint is refused (``log-*`` codes; a
            fork is a ForkError with evidence); the state file is unchanged.
        SyncError: the repository could not be reached or read.
        UsageError: no state yet and no root.
    """
    wanted = frozenset(names) if names is not None else None
    previous = read_fleet_state(state_path) if os.path.lexists(state_path) else None
    vkey = _log_key(log, previous)
    url, fetcher = _source(source)
    counting = _Counting(fetcher)
    with tempfile.TemporaryDirectory(prefix="vtreg-sync-") as workdir:
        bootstrap = _seed(workdir, previous, root)
        try:
            _update(workdir, url, counting, bootstrap, wanted)
        except (exceptions.RepositoryError, exceptions.DownloadError) as e:
            refusal = _refused(e)
            if refusal is not None:
                raise refusal from e
            raise SyncError(f"could not read the repository at {source}: {e}") from e
        except OSError as e:
            raise SyncError(f"could not sync from {source}: {e.strerror or e}") from e
        synced_at = clock if previous is None else previous.reference_time(clock)
        state = _collect(workdir, source, synced_at, wanted)
        if vkey is not None:
            checkpoint = _witness(workdir, url, counting, vkey, previous)
            state = dataclasses.replace(state, log=vkey, checkpoint=checkpoint)
    changed = previous is None or state_to_json(previous.trust) != state_to_json(state.trust)
    write_fleet_state(state_path, state)
    return SyncResult(state, changed, counting.total)
