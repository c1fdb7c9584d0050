"""Loader fixtures: a trusted directory, real C plugins built from tests/plugins/variants.c
and tests/plugins/compat.c."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Compiler, c_string, make_plugin
from vtreg.loader import AuditEvent, KeyPolicy, PluginLoader
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

MODES = {
    "echo": 0, "null": 1, "bad-utf8": 2, "not-json": 3, "bad-shape": 4, "segv": 5,
    "abort": 6, "hang": 7, "hog": 8, "concurrency": 9, "print": 10, "fail": 11,
    "fork-hang": 12, "fork-segv": 13, "env": 14,
}  # fmt: skip


class RecordingAudit:
    """An AuditSink that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


@pytest.fixture
def trusted(tmp_path: Path) -> Path:
    directory = tmp_path / "trusted"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    return directory


Build = Callable[..., Path]


@pytest.fixture
def build(trusted: Path, compiler: Compiler, key: SigningKey, now: datetime) -> Build:
    """Build, lay out and sign a plugin from variants.c in the trusted directory.

    build(name="x", version="1.0.0", mode="echo", signed_by=key, parent=trusted,
          manifest={...}, marker=Path, defines={...})
    """

    def factory(
        name: str = "vx",
        version: str = "1.0.0",
        *,
        mode: str = "echo",
        signed_by: SigningKey | None = key,
        parent: Path | None = None,
        manifest: dict[str, object] | None = None,
        marker: Path | None = None,
        defines: dict[str, str] | None = None,
    ) -> Path:
        all_defines = {"MODE": str(MODES[mode]), **(defines or {})}
        if marker is not None:
            all_defines["MARKER"] = c_string(str(marker))
        plugin = make_plugin(
            parent or trusted,
            compiler,
            name,
            version,
            source="variants.c",
            manifest=manifest,
            defines=all_defines,
        )
        plugin.chmod(0o755)
        if signed_by is not None:
            (plugin / "plugin.sig").write_bytes(sign(capture(plugin), signed_by, at=now).envelope)
        return plugin

    return factory


@pytest.fixture
def audit_log() -> RecordingAudit:
    return RecordingAudit()


@pytest.fixture
def plugin_loader(trusted: Path, key: SigningKey, audit_log: RecordingAudit) -> PluginLoader:
    return PluginLoader(KeyPolicy([key.public_key]), audit_log, [trusted])


Compat = Callable[..., Path]


@pytest.fixture
def compat(trusted: Path, compiler: Compiler, key: SigningKey, now: datetime) -> Compat:
    """Build, lay out and sign a plugin from compat.c.

    compat(name, version, metadata={...}, result="...", barrier_ms=n, unresolved=True,
           manifest={...}, drop=("description",), parent=Path)
    """

    def factory(
        name: str = "cx",
        version: str = "1.0.0",
        *,
        metadata: dict[str, Any] | None = None,
        result: str | None = None,
        barrier_ms: int | None = None,
        unresolved: bool = False,
        manifest: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        parent: Path | None = None,
    ) -> Path:
        defines: dict[str, str] = {}
        if metadata is not None:
            defines["METADATA"] = c_string(json.dumps(metadata))
        if result is not None:
            defines["RESULT"] = c_string(result)
        if barrier_ms is not None:
            defines["BARRIER_WAIT_MS"] = str(barrier_ms)
        if unresolved:
            defines["UNRESOLVED"] = "1"
        plugin = make_plugin(
            parent or trusted,
            compiler,
            name,
            version,
            source="compat.c",
            manifest=manifest,
            defines=defines,
        )
        fields = json.loads((plugin / "plugin.json").read_text())
        for field in drop:
            del fields[field]
        (plugin / "plugin.json").write_text(json.dumps(fields))
        plugin.chmod(0o755)
        (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
        return plugin

    return factory


def key_loader(
    key: SigningKey, trusted: Path, isolation: str, audit: RecordingAudit
) -> PluginLoader:
    """A loader trusting ``key`` for plugins in ``trusted``, isolated if ``isolation`` is
    ``"process"``."""
    return PluginLoader(
        KeyPolicy([key.public_key]),
        audit,
        [trusted],
        isolation="process" if isolation == "process" else "none",
    )
