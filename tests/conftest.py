from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.databases import database_url, postgres_server, registry
from tests.helpers import Compiler, make_plugin
from vtreg.verifier.keys import SigningKey

__all__ = ["database_url", "postgres_server", "registry"]  # fixtures, shared by every package


@pytest.fixture(scope="session")
def compiler(tmp_path_factory: pytest.TempPathFactory) -> Compiler:
    return Compiler(tmp_path_factory.mktemp("cc-cache"))


@pytest.fixture
def plugin_factory(tmp_path: Path, compiler: Compiler) -> Callable[..., Path]:
    def factory(name: str = "basic", version: str = "1.0.0", **kwargs: Any) -> Path:
        parent = kwargs.pop("parent", tmp_path / "plugins")
        return make_plugin(parent, compiler, name, version, **kwargs)

    return factory


@pytest.fixture(scope="session")
def key() -> SigningKey:
    return SigningKey.generate("alice")


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    return SigningKey.generate("bob")


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
