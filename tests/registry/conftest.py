"""Registry test fixtures (the database fixtures live in tests/databases.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import Compiler, make_plugin
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

SignedPlugin = Callable[..., Path]


@pytest.fixture
def signed_plugin(tmp_path: Path, compiler: Compiler, now: datetime) -> SignedPlugin:
    """A plugin directory signed by the given keys."""
    counter = iter(range(10_000))

    def factory(
        name: str = "hello", version: str = "1.0.0", *keys: SigningKey, **kwargs: object
    ) -> Path:
        parent = tmp_path / f"p{next(counter)}"
        plugin = make_plugin(parent, compiler, name, version, **kwargs)  # type: ignore[arg-type]
        for key in keys:
            result = sign(capture(plugin), key, at=now)
            (plugin / "plugin.sig").write_bytes(result.envelope)
        return plugin

    return factory
