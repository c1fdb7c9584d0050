"""How many hash bins a repository has: fixed at init, or (the default) fitted to the
registry's size at each full publish, and a host that follows a change of layout."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Targets

from tests.fleet.conftest import utc_now
from tests.helpers import invoke_cli
from vtreg.registry.fleet import FleetTrust
from vtreg.registry.fleet._signer import VtregSigner
from vtreg.registry.fleet.repository import (
    CONFIG_FILE,
    PublishResult,
    Repository,
    fit_bin_bits,
    init_repository,
    publish,
)
from vtreg.registry.fleet.sync import sync
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState

KIB, MB = 1 << 10, 1_000_000


@pytest.mark.parametrize(
    ("entry_bytes", "published", "bits"),
    [
        pytest.param(0, None, 4, id="empty-registry-16-bins"),
        pytest.param(5 * MB, None, 8, id="20000-contents-256-bins"),
        pytest.param(280 * MB, None, 14, id="1000000-contents-16384-bins"),
        pytest.param(10**12, None, 16, id="at-most-65536-bins"),
        pytest.param(280 * MB, 13, 14, id="grown-past-a-layout"),
        pytest.param(200 * MB, 14, 14, id="a-little-smaller-keeps-it"),
        pytest.param(200 * MB, 13, 13, id="a-little-larger-keeps-it"),
        pytest.param(100 * MB, 14, 13, id="shrunk-below-a-layout"),
        pytest.param(0, 4, 4, id="the-smallest-layout-stays"),
        pytest.param(10**12, 16, 16, id="the-largest-layout-stays"),
        pytest.param(5 * MB, 2, 8, id="a-layout-auto-would-not-make-is-refitted"),
    ],
)
def test_bins_are_fitted_to_about_16_kib(
    entry_bytes: int, published: int | None, bits: int
) -> None:
    assert fit_bin_bits(entry_bytes, published) == bits


class _Publisher:
    def __init__(self, tmp_path: Path, bin_bits: int | None = None) -> None:
        self.online = SigningKey.generate("online")
        self.author = SigningKey.generate("author")
        self.root_file = tmp_path / "repo" / "1.root.json"
        init_repository(
            tmp_path / "repo", [SigningKey.generate("root")], 1, self.online,
            str(tmp_path / "online.key"), expires=utc_now() + timedelta(days=365),
            bin_bits=bin_bits,
        )  # fmt: skip
        self.repo = Repository(tmp_path / "repo")

    def state(self, names: int, *, names_only: list[str] | None = None) -> TrustState:
        digests = ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(names)]
        contents = [
            TrustedContent(f"plugin-{i}", "1.0.0", ("linux-x86_64",), digest)
            for i, digest in enumerate(digests)
        ]
        return TrustState.build([TrustedKey(self.author.public_key)], contents, names=names_only)

    def publish(
        self, state: TrustState, touched: frozenset[str] | None = None, *, days: int = 0
    ) -> PublishResult:
        return publish(
            self.repo, state, VtregSigner(self.online), at=utc_now() + timedelta(days=days),
            timestamp_expires=timedelta(days=1), snapshot_expires=timedelta(days=7),
            targets_expires=timedelta(days=90), touched=touched, seq=1,
        )  # fmt: skip

    def bins(self) -> int:
        """How many bins the snapshot names with a length and hash (of the layout in use)."""
        current = self.repo.current()
        assert current is not None
        meta = current.snapshot.signed.meta
        return sum(1 for name, m in meta.items() if name.startswith("bins-") and m.hashes)

    def incremental(self) -> bool:
        since = self.repo.incremental_since(
            VtregSigner(self.online), at=utc_now(), snapshot_expires=timedelta(days=7)
        )
        return since is not None


def test_the_default_layout_grows_with_the_registry_and_a_host_follows(tmp_path: Path) -> None:
    publisher = _Publisher(tmp_path)
    assert json.loads((publisher.repo.path / CONFIG_FILE).read_bytes())["bin_bits"] == "auto"
    publisher.publish(publisher.state(10))
    assert publisher.bins() == 16
    state = tmp_path / "host.state"
    root = publisher.root_file.read_bytes()
    sync(str(publisher.repo.path), str(state), root=root, clock=utc_now())

    # 3,000 names arrive one trust at a time: incremental publishes keep the 16 bins ...
    grown = frozenset(f"plugin-{i}" for i in range(10, 3000))
    publisher.publish(publisher.state(3000, names_only=sorted(grown)), grown)
    assert publisher.bins() == 16
    # ... until they no longer fit them: the next publish is in full, over more bins.
    assert not publisher.incremental()
    full = publisher.publish(publisher.state(3000))
    assert publisher.bins() == 64
    assert len([w for w in full.written if ".bins-" in w]) == 64
    current = publisher.repo.current()
    assert current is not None
    # the 16 bins of before stay named (a TUF client refuses a snapshot that forgets one)
    forgotten = {n: m for n, m in current.snapshot.signed.meta.items() if len(n) == 11}
    assert len(forgotten) == 16
    assert {(m.version, m.length, m.hashes) for m in forgotten.values()} == {(2, None, None)}
    assert publisher.incremental()

    synced = sync(str(publisher.repo.path), str(state), root=None, clock=utc_now())
    assert (synced.changed, synced.state.contents) == (True, 3000)
    assert FleetTrust(state).fleet_state().roles["targets"].version == 2


def test_a_fixed_layout_stays_whatever_the_size(tmp_path: Path) -> None:
    publisher = _Publisher(tmp_path, bin_bits=2)
    publisher.publish(publisher.state(3000))
    assert publisher.bins() == 4
    assert publisher.incremental()
    current = publisher.repo.current()
    assert current is not None
    targets: Targets = current.targets.signed
    assert targets.delegations is not None
    assert targets.delegations.succinct_roles is not None
    assert targets.delegations.succinct_roles.bit_length == 2


@pytest.mark.parametrize("value", ["0", "17", "eight"])
def test_init_refuses_a_bin_count_it_cannot_make(tmp_path: Path, value: str) -> None:
    result = invoke_cli(
        "fleet", "init", tmp_path / "repo", "--root-key", tmp_path / "root.key",
        "--online-key", tmp_path / "online.key", "--bin-bits", value,
    )  # fmt: skip
    assert result.code == 2
    assert "nor auto" in result.stderr


def test_a_full_publish_leaves_a_bin_alone_only_while_it_is_the_same_and_lasts(
    tmp_path: Path,
) -> None:
    publisher = _Publisher(tmp_path)
    state = publisher.state(40)
    publisher.publish(state)
    assert [w for w in publisher.publish(state).written if ".bins-" in w] == []
    # 85 days on, the 90-day bins would expire before the 7-day snapshot: all signed again
    later = publisher.publish(state, days=85)
    assert len([w for w in later.written if ".bins-" in w]) == 16
    sync(str(publisher.repo.path), str(tmp_path / "host.state"),
         root=publisher.root_file.read_bytes(), clock=utc_now() + timedelta(days=85))  # fmt: skip
