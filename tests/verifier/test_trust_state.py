"""TrustState <-> canonical JSON: round trips, and strict reading of every entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtreg.verifier.errors import FormatError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.trust import TrustedContent, TrustedKey, TrustState
from vtreg.verifier.trust_state import (
    canonical,
    content_from_json,
    key_from_json,
    state_from_json,
    state_to_json,
)

KEYS = [SigningKey.generate(f"k{i}").public_key for i in range(3)]
NAMES = st.sampled_from(["hello", "tool", "zeta-2"])
TIMES = st.one_of(
    st.none(),
    st.integers(0, 10**9).map(lambda s: datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=s)),
)
TEXT = st.one_of(st.none(), st.text(max_size=20))

trusted_keys = st.builds(
    TrustedKey,
    st.sampled_from(KEYS),
    scopes=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    expires=TIMES,
    revoked=TEXT,
)
contents = st.builds(
    TrustedContent,
    name=NAMES,
    version=st.sampled_from(["1.0.0", "1.2.3", "2.0.0-rc.1"]),
    platforms=st.sampled_from(
        [("linux-x86_64",), ("darwin-aarch64",), ("linux-x86_64", "macos-arm64")]
    ),
    content_digest=st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    threshold=st.integers(1, 5),
    pinned=st.booleans(),
    revoked=TEXT,
    revoked_at=TIMES,
)


@given(
    st.lists(trusted_keys, max_size=3),
    st.lists(contents, max_size=6),
    st.one_of(st.none(), st.lists(NAMES, max_size=2)),
)
def test_a_state_round_trips_through_its_canonical_json(
    keys: list[TrustedKey], entries: list[TrustedContent], names: list[str] | None
) -> None:
    state = TrustState.build(keys, entries, names=names)
    document = state_to_json(state)
    again = state_from_json(canonical(document))
    assert again == state
    assert canonical(state_to_json(again)) == canonical(document)


def _key() -> dict[str, Any]:
    return {
        "keyid": KEYS[0].keyid,
        "public_key": KEYS[0].raw.hex(),
        "name": "k0",
        "scopes": [],
        "expires": None,
        "revoked": None,
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(lambda k: k.update(extra=1), "unknown fields", id="unknown-field"),
        pytest.param(lambda k: k.pop("scopes"), "missing fields", id="missing-field"),
        pytest.param(lambda k: k.update(keyid="00" * 32), "not its public key", id="wrong-keyid"),
        pytest.param(lambda k: k.update(public_key="zz"), "not hex", id="not-hex"),
        pytest.param(lambda k: k.update(public_key="00" * 32), "usable", id="weak-point"),
        pytest.param(lambda k: k.update(scopes="*"), "wrong type", id="scopes-not-a-list"),
        pytest.param(lambda k: k.update(expires="2026-01-01"), "RFC 3339", id="naive-time"),
    ],
)
def test_a_bad_key_entry_is_refused(edit: Any, message: str) -> None:
    entry = _key()
    edit(entry)
    with pytest.raises(FormatError, match=message):
        key_from_json(entry)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("threshold", 0, id="threshold-zero"),
        pytest.param("threshold", True, id="threshold-bool"),
        pytest.param("pinned", 1, id="pinned-int"),
        pytest.param("name", None, id="name-null"),
        pytest.param("platforms", [], id="no-platforms"),
        pytest.param("platforms", "linux-x86_64", id="platforms-a-string"),
        pytest.param("platforms", ["macos-arm64", "linux-x86_64"], id="platforms-unsorted"),
        pytest.param("platforms", ["linux-x86_64", "linux-x86_64"], id="platform-twice"),
    ],
)
def test_a_bad_content_entry_is_refused(field: str, value: object) -> None:
    entry = json.loads(
        canonical(
            {
                "name": "hello",
                "version": "1.0.0",
                "platforms": ["linux-x86_64"],
                "content_digest": "sha256:" + "0" * 64,
                "threshold": 1,
                "pinned": False,
                "revoked": None,
                "revoked_at": None,
            }
        )
    )
    content_from_json(entry)
    entry[field] = value
    with pytest.raises(FormatError):
        content_from_json(entry)


def test_a_content_entry_of_one_platform_written_before_platforms_is_read() -> None:
    # A host's stored state from before contents had several platforms survives the upgrade.
    entry = {
        "name": "hello",
        "version": "1.0.0",
        "platform": "linux-x86_64",
        "content_digest": "sha256:" + "0" * 64,
        "threshold": 1,
        "pinned": False,
        "revoked": None,
        "revoked_at": None,
    }
    assert content_from_json(entry).platforms == ("linux-x86_64",)
    with pytest.raises(FormatError, match="unknown fields"):
        content_from_json({**entry, "platforms": ["linux-x86_64"]})


def test_only_a_state_over_contents_is_written() -> None:
    with pytest.raises(ValueError, match="over contents"):
        state_to_json(TrustState.of_keys(KEYS))


def test_a_state_of_some_names_keeps_them() -> None:
    state = TrustState.build(KEYS, [], names=["hello"])
    again = state_from_json(canonical(state_to_json(state)))
    assert again.names == frozenset({"hello"})
    assert not again.covers("other")
