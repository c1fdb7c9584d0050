"""The host's side: python-tuf ngclient's update workflow, then the trust state it carries.

A sync starts from the metadata the last sync trusted (kept in the state
file), runs ngclient's refresh (root chain, timestamp, snapshot, targets:
TUF spec section 5) against a URL or a local directory, loads every hash
bin through ngclient's delegation walk, and only then writes the new state
file, atomically. Any refusal leaves the state file as it was.

ngclient works in a private temporary directory seeded from the state file:
it is the only thing python-tuf writes to.

With a log key (``log``, or a tlog-``policy`` that also names the witnesses
a checkpoint needs; kept in the state once given), the host also witnesses
the registry's transparency log: the checkpoint the verified timestamp
carries must extend the one it accepted before (see :mod:`.witnessing`),
or nothing is written.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, SuccinctRoles, Targets, Timestamp
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from vtreg.verifier.errors import UsageError

from ._collect import TOP_ROLES, collect, read_role, role_info, succinct
from .errors import SyncError, SyncRefused
from .repository import CHECKPOINT_FIELD, LOG_DIR, NAME_PATH
from .state import FleetState, StateFile, update_fleet_state, write_fleet_state
from .witnessing import checkpoint_size, log_policy, witness_checkpoint

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


def _seed(workdir: str, previous: StateFile | None, root: bytes | None) -> bytes:
    """Write the previously trusted top-level metadata for ngclient; the root to start from.

    The bins are written only if the snapshot changed (:func:`_seed_bins`).
    """
    if previous is None:
        if root is None:
            raise UsageError("the first sync needs a trusted root: --root ROOT.json")
        return root
    texts = previous.metadata(TOP_ROLES)
    for role, text in texts.items():
        if role != Root.type:
            Path(workdir, f"{role}.json").write_text(text, encoding="utf-8")
    return texts[Root.type].encode("utf-8")


def _seed_bins(workdir: str, previous: StateFile) -> None:
    for role, text in previous.metadata().items():
        if role not in TOP_ROLES:
            Path(workdir, f"{role}.json").write_text(text, encoding="utf-8")


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


def _refused(error: Exception) -> SyncRefused | None:
    for kind, code, attack in _ATTACKS:
        if isinstance(error, kind):
            return SyncRefused(f"refused: {attack}: {error}", code=code)
    return None


def _unchanged(workdir: str, previous: FleetState, names: frozenset[str] | None) -> bool:
    """Whether the snapshot and targets ngclient now trusts are the ones the state holds."""
    snapshot = Metadata[Snapshot].from_bytes(Path(workdir, "snapshot.json").read_bytes()).signed
    targets_v = snapshot.meta["targets.json"].version
    return (
        snapshot.version == previous.roles["snapshot"].version
        and targets_v == previous.roles["targets"].version
        and names == previous.names
    )


def _update(
    workdir: str,
    url: str,
    fetcher: FetcherInterface,
    bootstrap: bytes,
    names: frozenset[str] | None,
    previous: StateFile | None,
) -> bool:
    """ngclient's refresh, then every wanted bin unless nothing changed; whether it walked them."""
    updater = Updater(workdir, url, fetcher=fetcher, config=UpdaterConfig(), bootstrap=bootstrap)
    updater.refresh()
    if previous is not None and _unchanged(workdir, previous.header, names):
        return False  # the same snapshot: the bins the state holds are the ones it names
    if previous is not None:
        _seed_bins(workdir, previous)  # ngclient verifies each again against the new snapshot
    targets = Metadata[Targets].from_bytes(Path(workdir, "targets.json").read_bytes()).signed
    roles = succinct(targets)
    probes = _probes(roles).values() if names is None else [f"{NAME_PATH}{n}" for n in names]
    for probe in probes:
        updater.get_targetinfo(probe)  # loads (and verifies) the bin the path falls in
    return True


def _log_key(log: str | None, policy: str | None, previous: FleetState | None) -> str | None:
    """What this host witnesses the log by: the vkey or tlog-policy given, else the one its
    state keeps. A new one must name the same log keys; ``log`` alone keeps a kept policy."""
    if log is not None and policy is not None:
        raise UsageError("--log and --policy exclude each other (a policy names its logs)")
    given = policy if policy is not None else log
    if given is None:
        return previous.log if previous is not None else None
    logs = {v.vkey for v in log_policy(given).logs}  # a malformed one: before any download
    if previous is None or previous.log is None:
        return given
    kept = {v.vkey for v in log_policy(previous.log).logs}
    if logs != kept:
        raise UsageError(
            f"this host witnesses the log {' '.join(sorted(kept))}, not {' '.join(sorted(logs))}"
        )
    return given if policy is not None else previous.log


def _witness(
    workdir: str,
    url: str,
    fetcher: FetcherInterface,
    witnessed: str,
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
        note, before.encode("utf-8") if before else None, log_policy(witnessed), fetch
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
    policy: str | None = None,
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
        policy: instead of ``log``, a C2SP tlog-policy (its text): the
            checkpoint must also be cosigned by its quorum of witnesses. Kept
            in the state like ``log``; a later ``log`` of the same key keeps it.

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
    previous = StateFile(state_path) if os.path.lexists(state_path) else None
    try:
        witnessed = _log_key(log, policy, previous.header if previous else None)
        url, fetcher = _source(source)
        counting = _Counting(fetcher)
        with tempfile.TemporaryDirectory(prefix="vtreg-sync-") as workdir:
            bootstrap = _seed(workdir, previous, root)
            walked = _refresh(workdir, url, counting, bootstrap, wanted, previous, source)
            header = previous.header if previous is not None else None
            synced_at = clock if header is None else header.reference_time(clock)
            checkpoint = (
                _witness(workdir, url, counting, witnessed, header)
                if witnessed is not None
                else None
            )
            if not walked:
                assert previous is not None  # noqa: S101 - only a previous state is unchanged
                header = dataclasses.replace(previous.header, log=witnessed)
                state = _touch(workdir, state_path, header, synced_at, checkpoint)
                return SyncResult(state, False, counting.total)
            synced = collect(workdir, source, synced_at, wanted)
    finally:
        if previous is not None:
            previous.close()
    if witnessed is not None:
        header = dataclasses.replace(synced.header, log=witnessed, checkpoint=checkpoint)
        synced = dataclasses.replace(synced, header=header)
    changed = previous is None or previous.header.trust_digest != synced.header.trust_digest
    write_fleet_state(state_path, synced)
    return SyncResult(synced.header, changed, counting.total)


def _refresh(
    workdir: str,
    url: str,
    fetcher: FetcherInterface,
    bootstrap: bytes,
    names: frozenset[str] | None,
    previous: StateFile | None,
    source: str,
) -> bool:
    """:func:`_update`, its errors named as refusals (an attack) or failures (unreachable)."""
    try:
        return _update(workdir, url, fetcher, bootstrap, names, previous)
    except (exceptions.RepositoryError, exceptions.DownloadError) as e:
        refusal = _refused(e)
        if refusal is not None:
            raise refusal from e
        raise SyncError(f"could not read the repository at {source}: {e}") from e
    except OSError as e:
        raise SyncError(f"could not sync from {source}: {e.strerror or e}") from e


def _touch(
    workdir: str,
    state_path: str,
    previous: FleetState,
    synced_at: datetime,
    checkpoint: str | None,
) -> FleetState:
    """Nothing new: record the new timestamp (and root) and checkpoint, the rows as they are."""
    texts = {role: read_role(workdir, role) for role in ("root", "timestamp")}
    roles = dict(previous.roles)
    roles["root"] = role_info(Metadata[Root].from_bytes(texts["root"].encode()).signed)
    roles["timestamp"] = role_info(
        Metadata[Timestamp].from_bytes(texts["timestamp"].encode()).signed
    )
    header = dataclasses.replace(
        previous, synced_at=synced_at, roles=roles, checkpoint=checkpoint or previous.checkpoint
    )
    update_fleet_state(state_path, header, texts)
    return header
