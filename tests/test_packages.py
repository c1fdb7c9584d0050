"""One namespace: each package exports the documented objects, whatever the import
order, the start-up path stays light, and a host's own look-alike modules never
stand in for vtreg's."""

from __future__ import annotations

import importlib
import itertools
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGES = ["vtreg.verifier", "vtreg.loader", "vtreg.registry"]


def _exports(package: str) -> dict[str, str]:
    """Each exported name and the module that defines it."""
    module = importlib.import_module(package)
    return {name: f"{package}.{mod}" for mod, names in module._EXPORTS.items() for name in names}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_is_the_object_its_module_defines(package: str) -> None:
    module = importlib.import_module(package)
    exports = _exports(package)
    assert sorted(module.__all__) == sorted(exports)
    for name, defined_in in exports.items():
        assert getattr(module, name) is getattr(importlib.import_module(defined_in), name)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018 - the attribute access is the test


@pytest.mark.parametrize("package", PACKAGES)
def test_no_submodule_is_named_like_an_export(package: str) -> None:
    # Importing a submodule binds its name on the package: a submodule named like
    # an export would replace the export with a module, depending on import order.
    module = importlib.import_module(package)
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    assert submodules.isdisjoint(_exports(package))


def _probe(code: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    ).stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_do_not_depend_on_import_order(package: str) -> None:
    # Every submodule imported first, then every name taken from the package, in a
    # fresh interpreter each time, for each order of the submodules.
    module = importlib.import_module(package)
    submodules = sorted(set(module._EXPORTS))
    for order in itertools.islice(itertools.permutations(submodules), 6):
        out = _probe(
            f"""
            import importlib, json
            for sub in {list(order)!r}:
                importlib.import_module({package!r} + "." + sub)
            pkg = importlib.import_module({package!r})
            wrong = [name for mod, names in pkg._EXPORTS.items() for name in names
                     if getattr(pkg, name) is not getattr(
                         importlib.import_module({package!r} + "." + mod), name)]
            print(json.dumps(wrong))
            """
        )
        assert json.loads(out) == [], order


def test_from_import_gives_functions_not_modules() -> None:
    out = _probe(
        """
        import vtreg.verifier.signatures, vtreg.verifier.tree
        from vtreg.verifier import capture, sign, verify
        print(capture.__module__, verify.__module__, sign.__module__, type(capture).__name__)
        """
    )
    tree, signatures, signing, kind = out.split()
    assert (tree, signatures, kind) == (
        "vtreg.verifier.tree",
        "vtreg.verifier.signatures",
        "function",
    )
    assert signing.startswith("vtreg.verifier.")


def test_a_hosts_own_look_alike_modules_do_not_shadow_vtreg(tmp_path: Path) -> None:
    # A host application whose working directory holds its own registry.py,
    # loader/ and verifier.py (and vtreg's old top-level names) still gets vtreg.
    host = tmp_path / "host"
    (host / "loader").mkdir(parents=True)
    (host / "loader" / "__init__.py").write_text("raise SystemExit('host loader imported')\n")
    (host / "registry.py").write_text("raise SystemExit('host registry imported')\n")
    (host / "verifier.py").write_text("raise SystemExit('host verifier imported')\n")
    (host / "migrations").mkdir()
    (host / "migrations" / "__init__.py").write_text("raise SystemExit('host migrations')\n")
    out = _probe(
        f"""
        import sys
        assert sys.path[0] == "", sys.path[0]  # -c: the working directory is searched first
        from vtreg.registry import Registry
        from vtreg.loader import KeyPolicy, PluginLoader
        from vtreg.verifier import verify
        reg = Registry.open("sqlite:///{tmp_path / "registry.db"}")
        print(len(reg.list_keys()), PluginLoader.__module__, verify.__module__)
        reg.close()
        """,
        cwd=host,
    )
    assert out.split() == ["0", "vtreg.loader.loader", "vtreg.verifier.signatures"]
    cli = subprocess.run(
        [sys.executable, "-m", "vtreg", "--help"], capture_output=True, text=True, cwd=host
    )
    assert cli.returncode == 0, cli.stderr
    assert "Usage: " in cli.stdout


def test_the_verify_start_up_path_imports_nothing_heavy() -> None:
    out = _probe(
        """
        import sys
        import vtreg.registry.cli, vtreg.verifier.tree
        heavy = {'pydantic', 'cryptography', 'sqlalchemy', 'alembic', 'click', 'typing',
                 'dataclasses'}
        print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))
        """
    )
    assert out.strip() == "[]"
