"""The publisher's side: a TUF repository that carries the registry's trust state.

A repository is a plain directory of TUF 1.0 metadata, written with
python-tuf's Metadata API and served as static files:

* ``N.root.json``: root, signed by a threshold of offline root keys, naming
  the online key for the other three roles; consistent snapshots on.
* ``N.targets.json``: one target per trusted key (``keys/KEYID``), and a
  succinct hash-bin delegation (TAP 15) of every plugin name to
  ``N.bins-XX.json`` (2^bits bins: by default as many as keep a bin about
  16 KiB, see :func:`fit_bin_bits`), where each name's target (``names/NAME``) carries all of
  that name's contents and rollback floors in its ``custom`` field.
* ``N.snapshot.json``: version, length and hash of targets and every bin.
* ``timestamp.json``: the one file rewritten in place (atomically), naming
  the snapshot; short expiry, re-signed by :func:`refresh` on a timer. When
  the registry keeps a transparency log, it also carries the log's latest
  signed checkpoint (``x-vtreg-checkpoint``, a field TUF lets clients
  ignore), and ``log/`` holds that tree's tiles, so each syncing host can
  check the checkpoint extends the last one it accepted.

A trust entry's target file is its canonical JSON (length and sha256 in the
target, the entry itself in ``custom``), so the metadata alone carries the
state. ``.vtreg-fleet.json`` beside the metadata names the online key file
and the bin count (``auto``, or fixed) for later publishes; it is not for serving.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tuf.api.exceptions import LengthOrHashMismatchError, RepositoryError
from tuf.api.metadata import (
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from vtreg.verifier.errors import NotFoundError, UsageError, VtregError
from vtreg.verifier.files import atomic_write, read_bounded
from vtreg.verifier.keyrefs import Signer
from vtreg.verifier.keys import PublicKey
from vtreg.verifier.trust import TrustState
from vtreg.verifier.trust_state import canonical, content_to_json, floor_to_json, key_to_json

from ._signer import VtregSigner, tuf_key
from ._write import make_durable, signed_file, write_new

__all__ = [
    "BIN_PREFIX",
    "CHECKPOINT_FIELD",
    "CONFIG_FILE",
    "KEY_PATH",
    "LOG_DIR",
    "NAME_PATH",
    "PUBLISHED_FILE",
    "PublishResult",
    "Repository",
    "entry_target",
    "fit_bin_bits",
    "init_repository",
    "meta_file",
    "publish",
    "refresh",
    "rotate_root",
]

CONFIG_FILE = ".vtreg-fleet.json"
PUBLISHED_FILE = ".vtreg-fleet-published.json"
BIN_PREFIX = "bins"
KEY_PATH = "keys/"
NAME_PATH = "names/"
CHECKPOINT_FIELD = "x-vtreg-checkpoint"
LOG_DIR = "log"
_MAX_METADATA = 64 << 20
AUTO = "auto"
MIN_BIN_BITS, MAX_BIN_BITS = 4, 16
_BIN_BYTES = 16 << 10  # what an automatic layout aims a bin at
_REFIT = 0.75  # a layout is kept while within 2^0.75 (x1.7) of the ideal bin count
_TARGET_BYTES = 120  # a name's target around its entry: path, length, sha256, JSON
_SERIALIZER = JSONSerializer(compact=True)
_ROOT_FILE = re.compile(r"([1-9][0-9]*)\.root\.json")
_ONLINE_ROLES = (Timestamp.type, Snapshot.type, Targets.type)

S = TypeVar("S", Root, Timestamp, Snapshot, Targets)


def entry_target(path: str, custom: Mapping[str, Any]) -> TargetFile:
    """A trust entry as a TUF target: its canonical bytes' length and hash, and the entry."""
    data = canonical(custom)
    hashes = {"sha256": hashlib.sha256(data).hexdigest()}
    return TargetFile(len(data), hashes, path, unrecognized_fields={"custom": dict(custom)})


def _entries(state: TrustState) -> tuple[dict[str, TargetFile], dict[str, TargetFile]]:
    """The targets of the top-level role (keys) and of the bins (one per name)."""
    if state.contents is None:
        raise VtregError("a fleet publishes a registry's contents; this state has none")
    keys = {
        f"{KEY_PATH}{k}": entry_target(f"{KEY_PATH}{k}", {"key": key_to_json(state.keys[k])})
        for k in sorted(state.keys)
    }
    contents: dict[str, list[dict[str, Any]]] = defaultdict(list)
    floors: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for digest in sorted(state.contents):
        content = state.contents[digest]
        contents[content.name].append(content_to_json(content))
    for (name, platform), version in sorted(state.floors.items()):
        floors[name].append(floor_to_json(name, platform, version))
    names = {
        f"{NAME_PATH}{name}": entry_target(
            f"{NAME_PATH}{name}", {"contents": contents[name], "floors": floors[name]}
        )
        for name in sorted(contents)
    }
    return keys, names


def _signed_by(md: Metadata[Any], keyid: str) -> bool:
    return keyid in md.signatures


@dataclass(frozen=True)
class PublishResult:
    """What a publish (or refresh) wrote."""

    timestamp: int
    snapshot: int
    targets: int
    written: tuple[str, ...]
    entries: int | None  # None: not counted (a refresh, an incremental publish)
    touched: int | None = None  # names published again incrementally (None: in full)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "timestamp_version": self.timestamp,
            "snapshot_version": self.snapshot,
            "targets_version": self.targets,
            "written": list(self.written),
            "entries": self.entries,
            "touched": self.touched,
        }


def fit_bin_bits(entry_bytes: int, published: int | None = None) -> int:
    """How many bits of bins automatic layout gives names whose bins hold ``entry_bytes``.

    About 16 KiB a bin, between 2^4 and 2^16 bins: a host that loads 100
    plugins reads the snapshot (about 130 bytes a bin) and 100 bins, which
    at 1,000,000 contents (280 MB of entries) is smallest near 2^14 bins of
    17 KiB. The ``published`` layout is kept while the ideal count is within
    a factor 1.7 of it, so that a registry near a boundary does not move
    every name to other bins at each publish.
    """
    ideal = math.log2(max(entry_bytes, 1) / _BIN_BYTES)
    if published is not None and MIN_BIN_BITS <= published <= MAX_BIN_BITS:
        grown = published < MAX_BIN_BITS and ideal - published > _REFIT
        shrunk = published > MIN_BIN_BITS and published - ideal > _REFIT
        if not grown and not shrunk:
            return published
    return min(max(round(ideal), MIN_BIN_BITS), MAX_BIN_BITS)


def _layout_bits(targets: Targets | None) -> int | None:
    """The bin bits of a published targets role's delegation (None: none)."""
    roles = targets.delegations.succinct_roles if targets and targets.delegations else None
    return roles.bit_length if roles is not None and roles.name_prefix == BIN_PREFIX else None


def _entry_bytes(names: Mapping[str, TargetFile]) -> int:
    return sum(t.length + len(path) + _TARGET_BYTES for path, t in names.items())


@dataclass(frozen=True)
class _Config:
    online_key: str
    bin_bits: int | None  # None: automatic (fit_bin_bits at each full publish)

    def to_bytes(self) -> bytes:
        bits = AUTO if self.bin_bits is None else self.bin_bits
        doc = {"format": "vtreg-fleet-publisher-v1", "online_key": self.online_key}
        return json.dumps({**doc, "bin_bits": bits}, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> _Config:
        bits = doc["bin_bits"]
        return cls(str(doc["online_key"]), None if bits == AUTO else int(bits))


@dataclass(frozen=True)
class _Published:
    """What the last publish covered: the audit seq read up to, its signer, when its
    earliest bin expires (an incremental publish leaves the other bins as they are)."""

    seq: int
    signer: str
    bins_expire: datetime

    def to_bytes(self) -> bytes:
        doc = {"format": "vtreg-fleet-published-v1", "seq": self.seq, "signer": self.signer}
        doc["bins_expire"] = self.bins_expire.isoformat()
        return json.dumps(doc, indent=2).encode() + b"\n"


def _lasting_ref(ref: str) -> str:
    """A key reference that still names the same key from another directory."""
    from vtreg.verifier.keyrefs import AGENT_PREFIX, PKCS11_PREFIX

    if ref.startswith(PKCS11_PREFIX):
        return ref
    if ref.startswith(AGENT_PREFIX):
        selector = ref.removeprefix(AGENT_PREFIX)
        if selector.startswith("SHA256:"):
            return ref
        return AGENT_PREFIX + str(Path(selector).absolute())
    return str(Path(ref).absolute())


def _check_new(repo: Path) -> None:
    if repo.exists() and (not repo.is_dir() or any(repo.iterdir())):
        raise UsageError(f"{repo} exists and is not an empty directory")


def init_repository(
    repo: Path,
    root_keys: Sequence[Signer],
    threshold: int,
    online: Signer,
    online_key_file: str,
    *,
    expires: datetime,
    bin_bits: int | None = None,
) -> Root:
    """Create a repository: root version 1 and the publisher's settings.

    Args:
        repo: an empty or new directory.
        root_keys: the offline root keys (each signs root version 1).
        threshold: how many of them must sign a root.
        online: the key of the timestamp, snapshot, targets and bin roles.
        online_key_file: the key reference ``online`` is opened from at each
            publish (a file, ``ssh-agent:...``, ``pkcs11:...``).
        expires: root's expiry.
        bin_bits: the names are spread over 2**bin_bits bins (None: as many
            as :func:`fit_bin_bits` gives the registry's size at each full
            publish).

    Raises:
        UsageError: ``repo`` is not empty, the threshold cannot be met, or
            the online key is a root key.
    """
    _check_new(repo)
    distinct = {k.keyid for k in root_keys}
    if not 1 <= threshold <= len(distinct):
        raise UsageError(f"root threshold {threshold} cannot be met by {len(distinct)} root key(s)")
    if online.keyid in distinct:
        raise UsageError("the online key must not be a root key: root keys stay offline")
    if bin_bits is not None and not 1 <= bin_bits <= 16:
        raise UsageError(f"bin bits must be 1 to 16, not {bin_bits}")
    root = Root(expires=expires, consistent_snapshot=True)
    for key in root_keys:
        root.add_key(tuf_key(key.public_key), Root.type)
    root.roles[Root.type].threshold = threshold
    for role in _ONLINE_ROLES:
        root.add_key(tuf_key(online.public_key), role)
    md = Metadata(root)
    for key in {k.keyid: k for k in root_keys}.values():
        md.sign(VtregSigner(key), append=True)
    repo.mkdir(parents=True, exist_ok=True)
    config = _Config(_lasting_ref(online_key_file), bin_bits)
    atomic_write(repo / CONFIG_FILE, config.to_bytes(), 0o644)
    atomic_write(repo / "1.root.json", md.to_bytes(_SERIALIZER))
    return root


class Repository:
    """A repository directory as the publisher reads and writes it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        config = self._json(CONFIG_FILE)
        try:
            self.config = _Config.from_json(config)
        except (KeyError, TypeError, ValueError) as e:
            raise VtregError(f"{self.path / CONFIG_FILE} is not a fleet publisher's file") from e

    def read(self, name: str) -> bytes:
        """The bytes of file ``name`` (bounded)."""
        path = self.path / name
        return read_bounded(path, _MAX_METADATA, str(path))

    def _json(self, name: str) -> dict[str, Any]:
        try:
            doc = json.loads(self.read(name))
        except NotFoundError as e:
            raise NotFoundError(f"{self.path} is not a fleet repository: {e}") from e
        except ValueError as e:
            raise VtregError(f"{self.path / name} is not JSON") from e
        if not isinstance(doc, dict):
            raise VtregError(f"{self.path / name} is not a JSON object")
        return doc

    def load(self, name: str, kind: type[S]) -> Metadata[S]:
        """The metadata in file ``name``, of role type ``kind``."""
        return self.parse(name, self.read(name), kind)

    def parse(self, name: str, data: bytes, kind: type[S]) -> Metadata[S]:
        """The metadata ``data`` (read from file ``name``), of role type ``kind``."""
        try:
            md = Metadata[S].from_bytes(data)
        except (DeserializationError, RepositoryError, ValueError) as e:
            raise VtregError(f"{self.path / name} is not valid TUF metadata: {e}") from e
        if not isinstance(md.signed, kind):
            raise VtregError(f"{self.path / name} holds {md.signed.type}, not {kind.type}")
        return md

    def root_version(self) -> int:
        """The newest root version in the directory."""
        versions = [int(m[1]) for p in self.path.iterdir() if (m := _ROOT_FILE.fullmatch(p.name))]
        if not versions:
            raise NotFoundError(f"{self.path} holds no root metadata (run `vtreg fleet init`)")
        return max(versions)

    def root(self) -> Metadata[Root]:
        """The newest root."""
        return self.load(f"{self.root_version()}.root.json", Root)

    def write(self, name: str, md: Metadata[Any]) -> str:
        """Write ``md`` (atomically) as ``name``; return the name."""
        atomic_write(self.path / name, md.to_bytes(_SERIALIZER))
        return name

    def online_signer(self, open_key: Callable[[str], Signer]) -> VtregSigner:
        """The online key's signer (``open_key`` opens its key reference), checked
        against the newest root."""
        key = open_key(self.config.online_key)
        self.check_online(key.public_key)
        return VtregSigner(key)

    def published(self) -> _Published | None:
        """What the last publish recorded (None: none, or unreadable: publish in full)."""
        try:
            doc = self._json(PUBLISHED_FILE)
            return _Published(
                int(doc["seq"]), str(doc["signer"]), datetime.fromisoformat(doc["bins_expire"])
            )
        except (VtregError, KeyError, TypeError, ValueError):
            return None

    def incremental_since(
        self, signer: VtregSigner, *, at: datetime, snapshot_expires: timedelta
    ) -> int | None:
        """The audit seq an incremental publish may start after, or None (publish in full).

        In full when nothing was published yet, the signer changed (an online-key
        rotation: every role is signed again), a bin left alone would expire
        before the new snapshot does, or the names no longer fit the published
        bins (:meth:`bin_bits`: the registry grew or shrank, or the setting changed).
        """
        marker, current = self.published(), self.current()
        if marker is None or current is None or marker.signer != signer.public_key.keyid:
            return None
        if marker.bins_expire <= at + snapshot_expires:
            return None
        published = _layout_bits(current.targets.signed)
        bins = f"{BIN_PREFIX}-"
        entry_bytes = sum(
            m.length or 0 for n, m in current.snapshot.signed.meta.items() if n.startswith(bins)
        )
        if published is None or self.bin_bits(entry_bytes, published) != published:
            return None
        return marker.seq if _signed_by(current.targets, marker.signer) else None

    def bin_bits(self, entry_bytes: int, published: int | None) -> int:
        """The bin bits of a full publish whose names' entries take ``entry_bytes``
        (``published``: those of the published layout, if any)."""
        fixed = self.config.bin_bits
        return fixed if fixed is not None else fit_bin_bits(entry_bytes, published)

    def check_online(self, public: PublicKey) -> None:
        """Refuse a key that root does not name for the online roles."""
        root = self.root().signed
        for role in _ONLINE_ROLES:
            if public.keyid not in root.roles[role].keyids:
                raise UsageError(
                    f"key {public.short_id} is not the {role} key of root v{root.version}"
                )

    def current(self) -> _Current | None:
        """The published timestamp, snapshot and targets, or None before the first publish."""
        if not (self.path / "timestamp.json").exists():
            return None
        timestamp = self.load("timestamp.json", Timestamp)
        snap_v = timestamp.signed.snapshot_meta.version
        snapshot = self.load(f"{snap_v}.snapshot.json", Snapshot)
        targets_v = snapshot.signed.meta["targets.json"].version
        return _Current(timestamp, snapshot, self.load(f"{targets_v}.targets.json", Targets))


@dataclass(frozen=True)
class _Current:
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]


def meta_file(version: int, data: bytes) -> MetaFile:
    """What snapshot and timestamp say of a metadata file: version, length, sha256."""
    return MetaFile(version, len(data), {"sha256": hashlib.sha256(data).hexdigest()})


def _bins_of(
    names: Mapping[str, TargetFile], roles: SuccinctRoles
) -> dict[str, dict[str, TargetFile]]:
    bins: dict[str, dict[str, TargetFile]] = {b: {} for b in roles.get_roles()}
    for path, target in names.items():
        bins[roles.get_role_for_target(path)][path] = target
    return bins


@dataclass
class _Publish:
    """One publish: which role files to write, and the snapshot's new meta."""

    repo: Repository
    signer: VtregSigner
    previous: _Current | None

    def __post_init__(self) -> None:
        self.meta: dict[str, MetaFile] = (
            dict(self.previous.snapshot.signed.meta) if self.previous else {}
        )
        self.written: list[str] = []

    def _keep(
        self, md: Metadata[Targets], targets: Mapping[str, TargetFile], horizon: datetime
    ) -> bool:
        return (
            md.signed.targets == targets
            and _signed_by(md, self.signer.public_key.keyid)
            and md.signed.expires > horizon
        )

    def role(
        self,
        role: str,
        old: Metadata[Targets] | None,
        targets: Mapping[str, TargetFile],
        expires: datetime,
        horizon: datetime,
        delegations: Delegations | None = None,
    ) -> Metadata[Targets]:
        """Write ``role`` anew unless its published version already says the same."""
        if old is not None and self._keep(old, targets, horizon):
            return old
        version = self.meta[f"{role}.json"].version + 1 if f"{role}.json" in self.meta else 1
        md = Metadata(
            Targets(
                version=version, expires=expires, targets=dict(targets), delegations=delegations
            )
        )
        data = signed_file(md, self.signer)
        # A new name each version, synced with the others before the snapshot names it.
        write_new(self.repo.path / f"{version}.{role}.json", data)
        self.meta[f"{role}.json"] = meta_file(version, data)
        self.written.append(f"{version}.{role}.json")
        return md


def _forget_other_bins(meta: dict[str, MetaFile], bins: Mapping[str, object]) -> None:
    """Keep only the version of the bins of another layout (a change of bin count).

    A TUF client refuses a snapshot that no longer names a file the last one
    named, or names it at a lower version, so the snapshot names those bins
    for ever; their version alone (about 27 bytes, not 130) is enough.
    """
    for file, info in meta.items():
        if file.startswith(f"{BIN_PREFIX}-") and file.removesuffix(".json") not in bins:
            meta[file] = MetaFile(info.version)


def _previous_bin(
    repo: Repository, meta: Mapping[str, MetaFile], name: str
) -> Metadata[Targets] | None:
    """The bin as the published snapshot names it (None: none yet).

    Raises:
        VtregError: its file is not the one the snapshot names (its length or hash).
    """
    info = meta.get(f"{name}.json")
    if info is None:
        return None
    file = f"{info.version}.{name}.json"
    data = repo.read(file)
    try:
        info.verify_length_and_hashes(data)
    except LengthOrHashMismatchError as e:
        raise VtregError(f"{repo.path / file} is not the file the snapshot names: {e}") from e
    return repo.parse(file, data, Targets)


def _kept_until(
    repo: Repository,
    meta: Mapping[str, MetaFile],
    name: str,
    targets: Mapping[str, TargetFile],
    keyid: str,
    horizon: datetime,
) -> datetime | None:
    """When the published bin ``name`` expires, if a full publish may leave it as it is:
    the file the snapshot names (length, sha256), signed by ``keyid``, holding exactly
    ``targets`` and lasting past ``horizon``. None: write it anew.

    Compared as JSON, without python-tuf's objects for its targets: building those
    was most of a full publish that changed nothing (at 1,000,000 contents).
    """
    info = meta.get(f"{name}.json")
    if info is None:
        return None
    wanted = {path: target.to_dict() for path, target in targets.items()}
    try:
        data = repo.read(f"{info.version}.{name}.json")
        info.verify_length_and_hashes(data)
        doc = json.loads(data)
        signed = doc["signed"]
        until = datetime.fromisoformat(signed["expires"])
        same = (signed["_type"], signed["version"], signed["targets"]) == (
            Targets.type, info.version, wanted
        )  # fmt: skip
        signers = {signature["keyid"] for signature in doc["signatures"]}
        kept = same and keyid in signers and until > horizon  # a naive time: TypeError
    except (VtregError, LengthOrHashMismatchError, ValueError, KeyError, TypeError):
        return None  # not what the snapshot names, or not a bin as we write them
    return until if kept else None


def _touched_bins(
    repo: Repository,
    meta: Mapping[str, MetaFile],
    names: Mapping[str, TargetFile],
    touched: frozenset[str],
    roles: SuccinctRoles,
) -> dict[str, tuple[Metadata[Targets] | None, dict[str, TargetFile]]]:
    """The bins ``touched`` names fall in: each as published, and its targets with those
    names' entries replaced (or removed: a name with no content left)."""
    bins: dict[str, tuple[Metadata[Targets] | None, dict[str, TargetFile]]] = {}
    for name in sorted(touched):
        path = f"{NAME_PATH}{name}"
        role = roles.get_role_for_target(path)
        if role not in bins:
            old = _previous_bin(repo, meta, role)
            bins[role] = (old, dict(old.signed.targets) if old is not None else {})
        targets = bins[role][1]
        if path in names:
            targets[path] = names[path]
        else:
            targets.pop(path, None)
    return bins


def _layout(
    repo: Repository,
    previous: _Current | None,
    names: Mapping[str, TargetFile],
    touched: frozenset[str] | None,
) -> int:
    """The bin bits of this publish: an incremental one keeps the layout hosts hold."""
    published = _layout_bits(previous.targets.signed) if previous is not None else None
    if touched is None:
        return repo.bin_bits(_entry_bytes(names), published)
    if published is None:
        raise UsageError("the published targets delegate to no hash bins: publish in full")
    return published


def publish(
    repo: Repository,
    state: TrustState,
    signer: VtregSigner,
    *,
    at: datetime,
    timestamp_expires: timedelta,
    snapshot_expires: timedelta,
    targets_expires: timedelta,
    checkpoint: bytes | None = None,
    touched: frozenset[str] | None = None,
    seq: int | None = None,
) -> PublishResult:
    """Publish ``state``: rewrite the bins and targets that changed, then snapshot and timestamp.

    A role is also written anew when it is signed by another key than the
    online key (after an online-key rotation) or would expire before the new
    snapshot does. Files are written before the timestamp that names them.
    ``checkpoint`` (the audit log's latest signed checkpoint) goes into the
    timestamp; without one, the previous timestamp's is kept.

    With ``touched`` (see :meth:`Repository.incremental_since`), ``state``
    holds the keys and the records of those names only, and only their bins
    are read and written: the cost follows the change, not the state. ``seq``
    (the audit head ``state`` was read at) is recorded for the next one.

    Returns:
        The versions now published and the files written.
    """
    keys, names = _entries(state)
    previous = repo.current()
    marker = repo.published()
    if touched is not None and (previous is None or marker is None):
        raise UsageError("an incremental publish needs a previous one: publish in full")
    run = _Publish(repo, signer, previous)
    horizon, expires = at + snapshot_expires, at + targets_expires
    keyid = signer.public_key.keyid
    roles = SuccinctRoles([keyid], 1, _layout(repo, previous, names, touched), BIN_PREFIX)
    earliest = [marker.bins_expire] if touched is not None and marker is not None else []
    if touched is None:
        layout = _bins_of(names, roles)
        _forget_other_bins(run.meta, layout)
        for name, targets in layout.items():
            kept = _kept_until(repo, run.meta, name, targets, keyid, horizon)
            earliest.append(kept or run.role(name, None, targets, expires, horizon).signed.expires)
    else:
        for name, (old, targets) in _touched_bins(repo, run.meta, names, touched, roles).items():
            earliest.append(run.role(name, old, targets, expires, horizon).signed.expires)
    delegations = Delegations({keyid: signer.public_key}, succinct_roles=roles)
    old_targets = previous.targets if previous else None
    if old_targets is not None and old_targets.signed.delegations != delegations:
        old_targets = None
    targets_md = run.role(Targets.type, old_targets, keys, expires, horizon, delegations)
    if run.written:
        make_durable(repo.path, run.written)  # before the snapshot that names them
    snapshot = _snapshot(run, previous, at, snapshot_expires)
    timestamp = _timestamp(repo, signer, snapshot, previous, at, timestamp_expires, checkpoint)
    run.written.append("timestamp.json")
    if seq is not None:
        atomic_write(
            repo.path / PUBLISHED_FILE,
            _Published(seq, keyid, min(earliest, default=expires)).to_bytes(),
        )
    return PublishResult(
        timestamp=timestamp.signed.version,
        snapshot=snapshot.signed.version,
        targets=targets_md.signed.version,
        written=tuple(run.written),
        entries=len(keys) + len(state.contents or {}) if touched is None else None,
        touched=len(touched) if touched is not None else None,
    )


def _snapshot(
    run: _Publish, previous: _Current | None, at: datetime, expires_in: timedelta
) -> Metadata[Snapshot]:
    old = previous.snapshot if previous else None
    unchanged = old is not None and not run.written and _signed_by(old, run.signer.public_key.keyid)
    if old is not None and unchanged and old.signed.expires > at + expires_in / 2:
        return old
    version = old.signed.version + 1 if old is not None else 1
    md = Metadata(Snapshot(version=version, expires=at + expires_in, meta=dict(run.meta)))
    name = f"{version}.snapshot.json"
    atomic_write(run.repo.path / name, signed_file(md, run.signer))
    run.written.append(name)
    return md


def _timestamp(
    repo: Repository,
    signer: VtregSigner,
    snapshot: Metadata[Snapshot],
    previous: _Current | None,
    at: datetime,
    expires_in: timedelta,
    checkpoint: bytes | None,
) -> Metadata[Timestamp]:
    data = (repo.path / f"{snapshot.signed.version}.snapshot.json").read_bytes()
    version = previous.timestamp.signed.version + 1 if previous else 1
    fields: dict[str, Any] = {}
    if checkpoint is not None:
        fields[CHECKPOINT_FIELD] = checkpoint.decode("utf-8")
    elif previous is not None and CHECKPOINT_FIELD in previous.timestamp.signed.unrecognized_fields:
        # No newer checkpoint given: keep the last one, so that hosts that demand it still sync.
        fields[CHECKPOINT_FIELD] = previous.timestamp.signed.unrecognized_fields[CHECKPOINT_FIELD]
    md = Metadata(
        Timestamp(
            version=version,
            expires=at + expires_in,
            snapshot_meta=meta_file(snapshot.signed.version, data),
            unrecognized_fields=fields,
        )
    )
    atomic_write(repo.path / "timestamp.json", signed_file(md, signer))
    return md


def refresh(
    repo: Repository,
    signer: VtregSigner,
    *,
    at: datetime,
    timestamp_expires: timedelta,
    checkpoint: bytes | None = None,
) -> PublishResult:
    """Re-sign the timestamp alone (a new version, a new expiry, the latest
    ``checkpoint`` if given), for a timer.

    Raises:
        NotFoundError: nothing was published yet.
    """
    previous = repo.current()
    if previous is None:
        raise NotFoundError(f"{repo.path} has nothing published yet: run `vtreg fleet publish`")
    timestamp = _timestamp(
        repo, signer, previous.snapshot, previous, at, timestamp_expires, checkpoint
    )
    return PublishResult(
        timestamp=timestamp.signed.version,
        snapshot=previous.snapshot.signed.version,
        targets=previous.targets.signed.version,
        written=("timestamp.json",),
        entries=None,
    )


def rotate_root(
    repo: Repository,
    old_keys: Sequence[Signer],
    new_keys: Sequence[Signer],
    threshold: int,
    *,
    expires: datetime,
    online: Signer | None = None,
    online_key_file: str | None = None,
) -> Root:
    """Write root version N+1: new root keys (and optionally a new online key).

    It is signed by every given old and new root key, so that hosts accept it
    only if it carries a threshold of the old root's keys (the chain) and of
    its own (TUF spec 5.3.4). A new online key takes effect at the next
    publish, which re-signs every role with it.

    Raises:
        UsageError: too few old root keys to meet the current threshold, a
            threshold the new keys cannot meet, or an online key that is a root key.
    """
    current = repo.root().signed
    old_root = current.roles[Root.type]
    signing_old = {k.keyid for k in old_keys} & set(old_root.keyids)
    if len(signing_old) < old_root.threshold:
        raise UsageError(
            f"root v{current.version} needs {old_root.threshold} of its keys to sign the next "
            f"root; {len(signing_old)} given"
        )
    new = {k.keyid: k for k in new_keys}
    if not 1 <= threshold <= len(new):
        raise UsageError(f"root threshold {threshold} cannot be met by {len(new)} root key(s)")
    if online is not None and online.keyid in new:
        raise UsageError("the online key must not be a root key: root keys stay offline")
    root = Root(version=current.version + 1, expires=expires, consistent_snapshot=True)
    for key in new.values():
        root.add_key(tuf_key(key.public_key), Root.type)
    root.roles[Root.type].threshold = threshold
    for role in _ONLINE_ROLES:
        if online is not None:
            root.add_key(tuf_key(online.public_key), role)
        else:
            for keyid in current.roles[role].keyids:
                root.add_key(current.keys[keyid], role)
    md = Metadata(root)
    for key in {**{k.keyid: k for k in old_keys}, **new}.values():
        md.sign(VtregSigner(key), append=True)
    repo.write(f"{root.version}.root.json", md)
    if online is not None and online_key_file is not None:
        config = _Config(_lasting_ref(online_key_file), repo.config.bin_bits)
        atomic_write(repo.path / CONFIG_FILE, config.to_bytes(), 0o644)
        repo.config = config
    return root
