"""Columns read through registry.rows: a value vtreg wrote, or one line naming the row."""

from __future__ import annotations

import pytest

from vtreg.registry import rows
from vtreg.verifier.errors import RegistryError
from vtreg.verifier.keys import PublicKey, SigningKey

KEYID = "ab" * 32
DIGEST = "sha256:" + "cd" * 32


@pytest.mark.parametrize(
    ("stored", "scopes"),
    [("[]", ()), ('["hello", "acme-*"]', ("hello", "acme-*")), (b'["x"]', ("x",))],
)
def test_scopes_vtreg_wrote_are_read(stored: str | bytes, scopes: tuple[str, ...]) -> None:
    assert rows.scopes(KEYID, stored) == scopes


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[1]", id="a-number"),
        pytest.param('[""]', id="an-empty-name"),
        pytest.param('{"hello": 1}', id="an-object"),
        pytest.param('"hello"', id="a-string"),
        pytest.param("null", id="null"),
        pytest.param(None, id="sql-null"),
        pytest.param(7, id="not-text"),
    ],
)
def test_scopes_that_are_not_a_list_of_names_are_corrupt(stored: object) -> None:
    with pytest.raises(
        RegistryError, match=rf"^could not decide: the registry's keys row {KEYID} "
    ):
        rows.scopes(KEYID, stored)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(0, id="zero"),
        pytest.param(-5, id="negative"),
        pytest.param("2", id="text"),  # SQLite keeps text an INTEGER column cannot convert
        pytest.param(2.5, id="real"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="sql-null"),
    ],
)
def test_a_threshold_below_one_or_not_whole_is_corrupt(stored: object) -> None:
    assert rows.threshold(DIGEST, 3) == 3
    with pytest.raises(
        RegistryError, match=rf"plugins row {DIGEST} is corrupt: threshold .* at least 1$"
    ):
        rows.threshold(DIGEST, stored)


@pytest.mark.parametrize("stored", ["x.y", "", "v1.0.0", "1.0.0.0", "01.0", None, 100])
def test_a_version_that_is_not_semver_is_corrupt(stored: object) -> None:
    assert rows.version(DIGEST, "1.0") == "1.0"
    assert rows.floor_version("hello", "linux-x86_64", "1.0.0+build.1") == "1.0.0+build.1"
    with pytest.raises(RegistryError, match=rf"plugins row {DIGEST} is corrupt: version "):
        rows.version(DIGEST, stored)
    with pytest.raises(
        RegistryError, match=r"plugins row hello .* \(the floor on linux-x86_64\) is corrupt"
    ):
        rows.floor_version("hello", "linux-x86_64", stored)


def test_a_public_key_that_is_no_key_is_corrupt(key: SigningKey) -> None:
    raw = key.public_key.raw
    assert rows.public_key(key.keyid, raw, "alice") == PublicKey(raw, "alice")
    with pytest.raises(RegistryError, match=rf"keys row {KEYID} is corrupt: public_key is not"):
        rows.public_key(KEYID, raw[:31], "alice")


def test_a_corrupt_value_is_quoted_inert_and_short() -> None:
    hostile = "\x1b[2J\r\u202everified" + "x" * 200
    with pytest.raises(RegistryError) as corrupt:
        rows.scopes(KEYID, hostile)
    message = str(corrupt.value)
    assert message.isprintable(), message  # no escape, carriage return or bidi override
    assert "x" * 40 not in message
