"""The repository keeps its promises: README commands, CI, and what is (not) committed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.helpers import ROOT


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_has_two_commands_and_ci_runs_the_test_one() -> None:
    main_job, tests = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()

    assert "examples/demo.sh" in main_job
    assert "pytest" in tests
    assert tests in ci.splitlines()


def test_no_private_keys_are_committed() -> None:
    real_key = re.compile(
        rb"-----BEGIN (ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]{60,}-----END"
    )
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    files = [ROOT / p for p in tracked if p and not (ROOT / p).is_symlink()]
    leaked = [p for p in files if real_key.search(p.read_bytes())]
    assert leaked == []


def test_the_only_links_are_the_namespace_links() -> None:
    # vtreg/<package> points at the top-level folder, so a checkout imports the
    # same names as an install; nothing else in the repository is a link.
    tracked = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout.splitlines()
    links = {line.split("\t")[1] for line in tracked if line.startswith("120000 ")}
    packages = ("verifier", "loader", "registry", "migrations")
    assert links == {f"vtreg/{p}" for p in packages}
    for package in packages:
        assert (ROOT / "vtreg" / package).readlink() == Path("..") / package


def test_keys_directory_holds_public_keys_only() -> None:
    for path in (ROOT / "keys").iterdir():
        assert path.suffix == ".pub", path
        assert b"PRIVATE" not in path.read_bytes()


def test_every_test_the_threat_table_names_exists() -> None:
    # docs/threats.md is the map from each threat to the test that performs it; a
    # renamed or deleted test must not leave the map pointing at nothing.
    text = (ROOT / "docs" / "threats.md").read_text()
    named: list[tuple[str, str]] = []
    current = ""
    for path, name in re.findall(r"`(tests/[\w/]+\.py|\.\.\.)::(test_\w+)", text):
        current = current if path == "..." else path
        named.append((current, name))
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]

    assert len(named) > 60
    assert missing == []
