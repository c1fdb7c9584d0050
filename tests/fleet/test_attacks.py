"""Every attack on the fleet's metadata, performed by a mirror a host syncs from over HTTP.

Each case starts from a host that synced an honest repository once; the
publisher then publishes again, an attacker-controlled mirror serves a copy
of that repository with one thing changed, and the host's sync must refuse
it with the attack's code and leave the host's state file exactly as it was.
The cases follow python-tuf's tests/test_updater_top_level_update.py (see
docs/fleet.md for the mapping).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, Root, Snapshot, Timestamp

from tests.fleet.conftest import Fleet, Server, mirror, resign, utc_now
from vtreg.registry.fleet.repository import meta_file
from vtreg.registry.fleet.sync import SyncRefused
from vtreg.verifier.keys import SigningKey

Factory = Callable[..., Path]


@dataclass
class Scene:
    """The attacker's view: the mirror, the publisher's keys (for partial compromises)."""

    fleet: Fleet
    mirror: Path
    attacker: SigningKey
    old_timestamp: bytes

    @property
    def online(self) -> SigningKey:
        return self.fleet.online

    def timestamp(self) -> Timestamp:
        return Metadata[Timestamp].from_bytes((self.mirror / "timestamp.json").read_bytes()).signed

    def snapshot_file(self) -> Path:
        return self.mirror / f"{self.timestamp().snapshot_meta.version}.snapshot.json"

    def snapshot(self) -> Snapshot:
        return Metadata[Snapshot].from_bytes(self.snapshot_file().read_bytes()).signed

    def role_file(self, role: str) -> Path:
        return self.mirror / f"{self.snapshot().meta[f'{role}.json'].version}.{role}.json"

    def restamp(self, edit: Callable[[Any], None] | None = None) -> None:
        """A new timestamp, signed by the online key, naming the snapshot file as it now is."""
        snapshot_file = self.snapshot_file()
        version = self.timestamp().snapshot_meta.version  # the file's name, whatever it says

        def change(signed: Timestamp) -> None:
            signed.version += 1
            signed.snapshot_meta = meta_file(version, snapshot_file.read_bytes())
            if edit is not None:
                edit(signed)

        resign(self.mirror / "timestamp.json", [self.online], change)

    def resnap(self, role: str, version: int | None = None, data: bytes | None = None) -> None:
        """A new snapshot (online key) naming ``role``'s file as it now is, then a timestamp."""
        path = self.role_file(role)
        current = self.snapshot()
        new_version = current.version + 1

        def change(signed: Snapshot) -> None:
            signed.version = new_version
            meta = signed.meta[f"{role}.json"]
            signed.meta[f"{role}.json"] = meta_file(
                version if version is not None else meta.version, data or path.read_bytes()
            )

        resign(
            self.snapshot_file(),
            [self.online],
            change,
            to=self.mirror / f"{new_version}.snapshot.json",
        )
        self._stamp(new_version)

    def _stamp(self, snapshot_version: int) -> None:
        data = (self.mirror / f"{snapshot_version}.snapshot.json").read_bytes()

        def change(signed: Timestamp) -> None:
            signed.version += 1
            signed.snapshot_meta = meta_file(snapshot_version, data)

        resign(self.mirror / "timestamp.json", [self.online], change)

    def new_root(
        self, signers: list[SigningKey], edit: Callable[[Root], None] | None = None
    ) -> None:
        """Write 2.root.json: root v1 changed by ``edit``, signed by ``signers`` only."""

        def change(signed: Root) -> None:
            signed.version = 2
            if edit is not None:
                edit(signed)

        resign(self.mirror / "1.root.json", signers, change, to=self.mirror / "2.root.json")


BIN = "bins-"


def _bin_of(name: str) -> str:
    from tuf.api.metadata import SuccinctRoles

    return SuccinctRoles([], 1, 8, "bins").get_role_for_target(f"names/{name}")


def _hello_bin(scene: Scene) -> str:
    """The bin of a name the host synced (it holds that bin's current version)."""
    return _bin_of("hello")


def _new_bin(scene: Scene) -> str:
    """The bin of the name only the mirror's publish added (the host must download it)."""
    return _bin_of("other")


def _rotate_to(scene: Scene, keys: list[SigningKey]) -> Callable[[Root], None]:
    from vtreg.registry.fleet._signer import tuf_key

    def edit(root: Root) -> None:
        for keyid in list(root.roles["root"].keyids):
            root.revoke_key(keyid, "root")
        for key in keys:
            root.add_key(tuf_key(key.public_key), "root")
        root.roles["root"].threshold = 2

    return edit


def _pad(path: Path, size: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-1] + b" " * size + data[-1:])


def _flip_same_length(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.rindex(b'"sig":"') + 7
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    path.write_bytes(bytes(data))


def _older_bin(scene: Scene) -> None:
    role = _hello_bin(scene)
    scene.resnap(
        role,
        version=scene.snapshot().meta[f"{role}.json"].version - 1,
        data=(scene.mirror / f"1.{role}.json").read_bytes(),
    )


def _entry_edited(scene: Scene) -> None:
    role = _hello_bin(scene)

    def edit(signed: Any) -> None:
        target = signed.targets["names/hello"]
        target.unrecognized_fields["custom"]["contents"][0]["threshold"] = 1
        target.unrecognized_fields["custom"]["contents"][0]["pinned"] = True

    resign(scene.role_file(role), [scene.online], edit)
    scene.resnap(role)


def _endless_root(scene: Scene) -> None:
    scene.new_root(scene.fleet.root_keys)
    _pad(scene.mirror / "2.root.json", 600_000)  # ngclient reads at most 512,000 bytes of a root


def _expire(signed: Any) -> None:
    signed.expires = utc_now() - timedelta(hours=1)


def _bump_and_expire(signed: Any) -> None:
    signed.version += 1
    _expire(signed)


ATTACKS: list[Any] = [
    # arbitrary software: unsigned or wrongly signed metadata
    pytest.param(
        lambda s: resign(
            s.mirror / "timestamp.json",
            [s.attacker],
            lambda t: setattr(t, "version", t.version + 1),
        ),
        "metadata-unsigned",
        id="timestamp-signed-by-another-key",
    ),
    pytest.param(
        lambda s: resign(
            s.mirror / "timestamp.json", [], lambda t: setattr(t, "version", t.version + 1)
        ),
        "metadata-unsigned",
        id="timestamp-unsigned",
    ),
    pytest.param(
        lambda s: (resign(s.snapshot_file(), [s.attacker]), s.restamp()),
        "metadata-unsigned",
        id="snapshot-signed-by-another-key",
    ),
    pytest.param(
        lambda s: (resign(s.role_file("targets"), [s.attacker]), s.resnap("targets")),
        "metadata-unsigned",
        id="targets-signed-by-another-key",
    ),
    pytest.param(
        lambda s: (resign(s.role_file(_hello_bin(s)), [s.attacker]), s.resnap(_hello_bin(s))),
        "metadata-unsigned",
        id="bin-signed-by-another-key",
    ),
    # root: threshold, chain, version jumps, expiry
    pytest.param(
        lambda s: s.new_root([s.fleet.root_keys[0]]),
        "metadata-unsigned",
        id="root-below-threshold",
    ),
    pytest.param(
        lambda s: s.new_root([s.attacker, s.online], _rotate_to(s, [s.attacker, s.online])),
        "metadata-unsigned",
        id="root-rotation-signed-by-the-new-keys-only",
    ),
    pytest.param(
        lambda s: s.new_root(s.fleet.root_keys[:2], _rotate_to(s, [s.attacker, s.online])),
        "metadata-unsigned",
        id="root-rotation-signed-by-the-old-keys-only",
    ),
    pytest.param(
        lambda s: s.new_root(s.fleet.root_keys, lambda r: setattr(r, "version", 3)),
        "metadata-rollback",
        id="root-version-jump",
    ),
    pytest.param(
        lambda s: s.new_root(s.fleet.root_keys, lambda r: setattr(r, "version", 1)),
        "metadata-rollback",
        id="root-same-version",
    ),
    pytest.param(
        lambda s: s.new_root(s.fleet.root_keys, _expire),
        "metadata-expired",
        id="root-expired",
    ),
    # rollback of every role, and a mirror replaying an old (unexpired) timestamp
    pytest.param(
        lambda s: (s.mirror / "timestamp.json").write_bytes(s.old_timestamp),
        "metadata-rollback",
        id="replayed-old-unexpired-timestamp",
    ),
    pytest.param(
        lambda s: resign(
            s.mirror / "timestamp.json", [s.online], lambda t: setattr(t, "version", t.version - 2)
        ),
        "metadata-rollback",
        id="timestamp-version-rollback",
    ),
    pytest.param(
        lambda s: s.restamp(
            lambda t: setattr(
                t, "snapshot_meta", meta_file(1, (s.mirror / "1.snapshot.json").read_bytes())
            )
        ),
        "metadata-rollback",
        id="timestamp-names-an-older-snapshot",
    ),
    pytest.param(
        lambda s: s.resnap("targets", version=1, data=(s.mirror / "1.targets.json").read_bytes()),
        "metadata-rollback",
        id="snapshot-names-an-older-targets",
    ),
    pytest.param(_older_bin, "metadata-rollback", id="snapshot-names-an-older-bin"),
    pytest.param(
        lambda s: (
            resign(s.snapshot_file(), [s.online], lambda n: setattr(n, "version", n.version + 5)),
            s.restamp(),
        ),
        "metadata-rollback",
        id="snapshot-version-is-not-the-one-timestamp-names",
    ),
    pytest.param(
        lambda s: (
            resign(
                s.role_file("targets"), [s.online], lambda t: setattr(t, "version", t.version + 5)
            ),
            s.resnap("targets"),
        ),
        "metadata-rollback",
        id="targets-version-is-not-the-one-snapshot-names",
    ),
    # freeze
    pytest.param(
        lambda s: resign(s.mirror / "timestamp.json", [s.online], _bump_and_expire),
        "metadata-expired",
        id="timestamp-expired",
    ),
    pytest.param(
        lambda s: (resign(s.snapshot_file(), [s.online], _expire), s.restamp()),
        "metadata-expired",
        id="snapshot-expired",
    ),
    pytest.param(
        lambda s: (resign(s.role_file("targets"), [s.online], _expire), s.resnap("targets")),
        "metadata-expired",
        id="targets-expired",
    ),
    pytest.param(
        lambda s: (
            resign(s.role_file(_hello_bin(s)), [s.online], _expire),
            s.resnap(_hello_bin(s)),
        ),
        "metadata-expired",
        id="bin-expired",
    ),
    # mix-and-match: a file that is not the one its parent names
    pytest.param(
        lambda s: _flip_same_length(s.snapshot_file()),
        "metadata-mismatch",
        id="snapshot-hash-mismatch",
    ),
    pytest.param(
        lambda s: _flip_same_length(s.role_file("targets")),
        "metadata-mismatch",
        id="targets-hash-mismatch",
    ),
    pytest.param(
        lambda s: s.role_file(_new_bin(s)).write_bytes(
            (s.mirror / f"1.{_new_bin(s)}.json").read_bytes()
        ),
        "metadata-mismatch",
        id="bin-from-another-snapshot",
    ),
    pytest.param(_entry_edited, "metadata-mismatch", id="trust-entry-not-the-one-its-hash-names"),
    # endless data
    pytest.param(
        lambda s: _pad(s.mirror / "timestamp.json", 20_000),
        "metadata-oversize",
        id="endless-timestamp",
    ),
    pytest.param(
        lambda s: _pad(s.role_file(_new_bin(s)), 1000),
        "metadata-oversize",
        id="bin-longer-than-snapshot-says",
    ),
    pytest.param(_endless_root, "metadata-oversize", id="endless-root"),
]


@pytest.fixture
def scene(
    fleet: Fleet, plugin_factory: Factory, key: SigningKey, other_key: SigningKey, tmp_path: Path
) -> Scene:
    fleet.publish()
    fleet.sync()  # the host trusts version 1 of everything
    old_timestamp = (fleet.repo.path / "timestamp.json").read_bytes()
    fleet.trust(plugin_factory("hello"), key)
    fleet.registry.add_key(other_key.public_key)
    fleet.publish()
    fleet.sync()  # and now version 2 of timestamp, snapshot, targets and hello's bin
    fleet.trust(plugin_factory("other"), key)
    fleet.registry.add_key(SigningKey.generate("carol").public_key)
    fleet.publish()  # what the mirror serves, changed: targets v3, other's bin v2
    return Scene(fleet, mirror(fleet, tmp_path), SigningKey.generate("mallory"), old_timestamp)


@pytest.mark.parametrize(("attack", "code"), ATTACKS)
def test_the_host_refuses_and_keeps_its_state(
    scene: Scene, serve: Callable[[Path], Server], attack: Callable[[Scene], object], code: str
) -> None:
    server = serve(scene.mirror)
    honest = serve(scene.fleet.repo.path)
    before = scene.fleet.state.read_bytes()
    attack(scene)
    with pytest.raises(SyncRefused) as refused:
        scene.fleet.sync(server.url)
    assert refused.value.code == code, refused.value
    assert scene.fleet.state.read_bytes() == before
    assert scene.fleet.sync(honest.url).changed  # and the honest repository still syncs
