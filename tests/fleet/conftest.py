"""Fleet fixtures: a registry, a TUF repository published from it, served over real HTTP."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer

from vtreg.registry.fleet._signer import VtregSigner
from vtreg.registry.fleet.repository import PublishResult, Repository, init_repository, publish
from vtreg.registry.fleet.sync import SyncResult, sync
from vtreg.registry.service import Registry
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@dataclass
class Server:
    """A real HTTP server on 127.0.0.1 serving one directory, in a thread."""

    directory: Path
    url: str
    httpd: http.server.ThreadingHTTPServer


@pytest.fixture
def serve() -> Iterator[Callable[[Path], Server]]:
    servers: list[Server] = []

    def start(directory: Path) -> Server:
        handler = functools.partial(_Quiet, directory=str(directory))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        server = Server(directory, f"http://127.0.0.1:{httpd.server_address[1]}/", httpd)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Fleet:
    """A publisher (registry + repository) and one host's state file."""

    registry: Registry
    repo: Repository
    root_keys: list[SigningKey]
    online: SigningKey
    state: Path
    signer: VtregSigner = field(init=False)

    def __post_init__(self) -> None:
        self.signer = VtregSigner(self.online)

    def publish(
        self,
        *,
        at: datetime | None = None,
        timestamp: timedelta = timedelta(days=1),
        snapshot: timedelta = timedelta(days=7),
        checkpoint: bytes | None = None,
    ) -> PublishResult:
        return publish(
            self.repo,
            self.registry.full_state(),
            self.signer,
            at=at or utc_now(),
            timestamp_expires=timestamp,
            snapshot_expires=snapshot,
            targets_expires=timedelta(days=90),
            checkpoint=checkpoint,
        )

    def sync(self, source: str | Path | None = None, **kwargs: Any) -> SyncResult:
        root = (self.repo.path / "1.root.json").read_bytes()
        clock = kwargs.pop("clock", utc_now())
        state = str(kwargs.pop("state", self.state))
        return sync(str(source or self.repo.path), state, root=root, clock=clock, **kwargs)

    def trust(self, plugin: Path, key: SigningKey, **kwargs: Any) -> None:
        self.registry.trust(capture(sign_plugin(plugin, key)), **kwargs)


def sign_plugin(plugin: Path, key: SigningKey) -> Path:
    """``plugin`` with a plugin.sig by ``key``."""
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=utc_now()).envelope)
    return plugin


@pytest.fixture
def fleet(tmp_path: Path, key: SigningKey) -> Iterator[Fleet]:
    """A SQLite registry trusting ``key``, a repository with a 2-of-3 root, nothing published."""
    root_keys = [SigningKey.generate(f"root{i}") for i in range(3)]
    online = SigningKey.generate("online")
    repo_dir = tmp_path / "repo"
    online_file = tmp_path / "online.key"
    online_file.write_bytes(online.to_pem(None))
    online_file.chmod(0o600)
    init_repository(
        repo_dir, root_keys, 2, online, str(online_file), expires=utc_now() + timedelta(days=365),
        bin_bits=8,
    )  # fmt: skip
    with Registry.open(f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        registry.add_key(key.public_key)
        yield Fleet(registry, Repository(repo_dir), root_keys, online, tmp_path / "host.state")


def mirror(fleet: Fleet, tmp_path: Path) -> Path:
    """A copy of the repository that an attacker controls."""
    target = tmp_path / "mirror"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(fleet.repo.path, target)
    return target


def resign(
    path: Path,
    signers: list[SigningKey],
    edit: Callable[[Any], None] | None = None,
    *,
    to: Path | None = None,
) -> bytes:
    """Load metadata, change its signed part, sign it with ``signers`` only, write it (to ``to``)."""
    md: Metadata[Any] = Metadata.from_bytes(path.read_bytes())
    if edit is not None:
        edit(md.signed)
    md.signatures.clear()
    for signer in signers:
        md.sign(VtregSigner(signer), append=True)
    data = md.to_bytes(JSONSerializer(compact=True))
    (to or path).write_bytes(data)
    return data
