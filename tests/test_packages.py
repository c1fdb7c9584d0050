"""Each package exports what it says, lazily, and the start-up path stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["verifier", "loader", "registry"])
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    listed = sorted(n for names in module._EXPORTS.values() for n in names)
    assert sorted(module.__all__) == listed
    for name in module.__all__:
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018 - the attribute access is the test


def test_the_verify_start_up_path_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "import registry.cli, verifier.capture\n"
        "heavy = {'pydantic', 'cryptography', 'sqlalchemy', 'alembic', 'click', 'typing',"
        " 'dataclasses'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
