"""Issue 10, item 12: what sign says, and ids and digests taken in the short forms vtreg prints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok, one_line_error


@pytest.mark.parametrize(
    ("name", "flagged"),
    [
        pytest.param("hello.c", True, id="c-source"),
        pytest.param("src/util.h", True, id="header"),
        pytest.param("hello.o", True, id="object"),
        pytest.param("Makefile", True, id="makefile"),
        pytest.param(".hello.c.swp", True, id="vim-swap"),
        pytest.param("plugin.json~", True, id="backup"),
        pytest.param(".DS_Store", True, id="ds-store"),
        pytest.param("README.md", False, id="readme"),
        pytest.param("scripts/run.sh", False, id="script"),
    ],
)
def test_sign_warns_about_sources_and_build_leftovers(
    keys: Path, plugin_factory: Callable[..., Path], name: str, flagged: bool
) -> None:
    plugin = plugin_factory("hello", extra_files={name: b"x"})

    signed = ok(invoke_cli("sign", plugin, "--key", keys / "alice.key", "--json"))

    assert (f"{name} looks like a source or build leftover" in signed.stderr) is flagged
    assert ("warnings" in signed.json()) is flagged
    assert name in signed.json()["files"]  # warned about, and signed all the same


def test_sign_says_whether_the_content_changed(
    keys: Path, plugin_factory: Callable[..., Path]
) -> None:
    plugin = plugin_factory("hello")
    alice = ("--key", keys / "alice.key")
    ok(invoke_cli("sign", plugin, *alice))

    fresh = ok(invoke_cli("sign", plugin, *alice, "--fresh"))
    (plugin / "plugin.json").write_text((plugin / "plugin.json").read_text() + "\n")
    changed = ok(invoke_cli("sign", plugin, *alice))
    (plugin / "plugin.sig").write_text("not an envelope")
    unreadable = ok(invoke_cli("sign", plugin, *alice, "--json"))

    assert "signed a fresh statement" in fresh.stdout
    assert "(earlier signatures dropped; the content is unchanged)" in fresh.stdout
    assert "content changed" not in fresh.stdout + fresh.stderr
    assert changed.stdout.startswith("content changed since the last signature: replaced")
    assert "dropped because the content changed" in changed.stderr
    assert unreadable.json()["content_changed"] is None  # nothing to compare with
    assert "could not be co-signed" in unreadable.stderr
    assert "content changed" not in unreadable.stdout + unreadable.stderr


def test_short_key_ids_and_digests_are_taken_as_vtreg_prints_them(
    database_url: str, keys: Path, plugin_factory: Callable[..., Path]
) -> None:
    db = ("--db", database_url)
    plugin = plugin_factory("hello")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(invoke_cli("key", "add", keys / "alice.pub", *db))
    trusted = ok(invoke_cli("trust", plugin, *db, "--json")).json()["plugin"]
    keyid, digest = trusted["signers"][0], trusted["content_digest"]
    table = ok(invoke_cli("list", *db)).stdout

    assert [keyid[:16], digest[:23]] == table.splitlines()[1].split()[4:6]  # as a table shows
    for key in (keyid[:16], keyid[:16] + "…", keyid[:12] + "...", "alice"):
        listed = ok(invoke_cli("list", "--signed-by", key, *db, "--json")).json()["plugins"]
        assert [p["content_digest"] for p in listed] == [digest], key
    for short in (digest[:23], digest[7:23], digest[:23] + "…", digest[7:15].upper()):
        events = ok(invoke_cli("audit", "--digest", short, *db, "--json")).json()["events"]
        assert [e["action"] for e in events] == ["plugin.trust"], short
    dry = ok(invoke_cli("untrust", "--digest", digest[7:23], "--reason", "x", "--dry-run", *db))
    assert dry.stdout.startswith(f"would untrust hello@1.0.0 ({digest[:23]})")
    one_line_error(
        invoke_cli("audit", "--digest", digest[7:13], *db), 2, "is not a content digest"
    )  # too short a prefix stays a usage error
    one_line_error(invoke_cli("key", "revoke", "0" * 16 + "…", "--reason", "x", *db), 3, "no key")
