"""plugin.json model and semantic versions."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vtreg.verifier.errors import FormatError
from vtreg.verifier.manifest import PluginManifest, SemVer, check_plugin_name, parse_manifest

GOOD = {"name": "hello", "description": "says hello", "version": "1.0.0"}


def manifest_bytes(**fields: object) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


def test_minimal_manifest_gets_vt_code_defaults() -> None:
    manifest = parse_manifest(manifest_bytes())

    assert manifest == PluginManifest(name="hello", description="says hello", version="1.0.0")
    assert manifest.abi_version == 1
    # plugin.json says nothing about threads: the library's metadata decides, as in VT Code.
    assert manifest.thread_safe is None


def test_unknown_fields_are_tolerated_like_vt_code() -> None:
    manifest = parse_manifest(manifest_bytes(homepage="https://example.org", tags=["x"]))
    assert manifest.name == "hello"


def test_all_vt_code_fields_are_read() -> None:
    manifest = parse_manifest(
        manifest_bytes(
            author="Ada",
            abi_version=1,
            when_to_use="always",
            when_not_to_use="never",
            allowed_tools=["read_file"],
            thread_safe=True,
        )
    )
    assert manifest.allowed_tools == ("read_file",)
    assert manifest.thread_safe is True


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("../evil", id="path-traversal"),
        pytest.param("a/b", id="path-separator"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("-rf", id="leading-dash"),
        pytest.param("has space", id="space"),
        pytest.param("a" * 65, id="too-long"),
        pytest.param("naïve", id="non-ascii"),
        pytest.param("nul\0byte", id="nul"),
    ],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(FormatError, match=r"plugin\.json: name: .* is not a valid plugin name"):
        parse_manifest(manifest_bytes(name=name))


@pytest.mark.parametrize("name", ["a", "hello", "my-plugin", "my_plugin.v2", "X" * 64, "_x"])
def test_safe_names_are_accepted(name: str) -> None:
    assert check_plugin_name(name) == name


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"version": "01.0.0"}, "leading zero", id="leading-zero"),
        pytest.param({"version": "v1.0.0"}, "drop the leading 'v'", id="v-prefix"),
        pytest.param({"version": "1.0.0.0"}, "more than three numbers", id="four-numbers"),
        pytest.param({"version": "1.0.x"}, r"expected MAJOR\[\.MINOR", id="wildcard"),
        pytest.param({"version": "latest"}, "not a semantic version", id="word"),
        pytest.param(
            {"version": 1}, "version: Input should be a valid string", id="number-version"
        ),
        pytest.param(
            {"abi_version": "1"}, "abi_version: Input should be a valid integer", id="abi-string"
        ),
        pytest.param(
            {"abi_version": 1.5}, "abi_version: Input should be a valid integer", id="abi-fraction"
        ),
        pytest.param(
            {"abi_version": True}, "abi_version: Input should be a valid integer", id="abi-true"
        ),
        pytest.param(
            {"thread_safe": "yes"}, "thread_safe: Input should be a valid boolean", id="bool-string"
        ),
        pytest.param(
            {"description": 1}, "description: Input should be a valid string", id="number-desc"
        ),
    ],
)
def test_invalid_fields_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_manifest(manifest_bytes(**fields))


def test_an_abi_version_written_as_a_double_is_that_integer() -> None:
    # The predicate reads abi_version so (protobuf's Struct writes 1.0), and the two must agree.
    for written in (b"1.0", b"1e0", b"1"):
        data = b'{"name": "hello", "version": "1.0.0", "abi_version": %b}' % written
        assert parse_manifest(data).abi_version == 1
        assert type(parse_manifest(data).abi_version) is int


def test_description_is_optional_as_in_vt_code() -> None:
    # VT Code's loader reads only "name" from plugin.json; vtreg signs and loads the same.
    assert parse_manifest(b'{"name": "hello", "version": "1.0.0"}').description is None
    assert parse_manifest(manifest_bytes(description=None)).description is None


@pytest.mark.parametrize("missing", ["name", "version"])
def test_required_fields(missing: str) -> None:
    fields = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(FormatError, match=f"plugin.json: {missing}: Field required"):
        parse_manifest(json.dumps(fields).encode())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b'{"name": "hello", "descr', "not valid JSON", id="truncated"),
        pytest.param(b"\xff\xfe{}", "not valid UTF-8", id="invalid-utf8"),
        pytest.param(b"\xef\xbb\xbf" + manifest_bytes(), "byte-order mark", id="bom"),
        pytest.param(b'{"name": "a", "name": "b"}', "duplicate key 'name'", id="duplicate-key"),
        pytest.param(b'{"name": NaN}', "NaN is not valid JSON", id="nan"),
        pytest.param(b'["hello"]', "must be a JSON object, found list", id="array"),
        pytest.param(
            b"[" * 100_000 + b"]" * 100_000, "nested too deeply|not valid JSON", id="deep"
        ),
        pytest.param(b" " * (256 * 1024 + 1), "limit is 262144", id="oversize"),
    ],
)
def test_malformed_manifest_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_manifest(data)


# --- semantic versions ---

# semver.org, section 11: each is lower than the next.
ORDERED = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "10.0.0",
]


def test_semver_precedence_follows_the_spec() -> None:
    versions = [SemVer.parse(v) for v in ORDERED]
    assert sorted(reversed(versions)) == versions  # noqa: C414 - sorting must undo the reversal
    assert all(a < b for a, b in itertools.pairwise(versions))


@pytest.mark.parametrize(
    ("short", "full"),
    [("1.0", "1.0.0"), ("1", "1.0.0"), ("2.5", "2.5.0"), ("1.0-rc.1", "1.0.0-rc.1")],
)
def test_a_missing_minor_or_patch_is_zero(short: str, full: str) -> None:
    assert SemVer.parse(short) == SemVer.parse(full)
    assert str(SemVer.parse(short)) == full
    assert parse_manifest(manifest_bytes(version=short)).version == short  # kept as written


def test_short_versions_order_among_full_ones() -> None:
    assert SemVer.parse("1.0.9") < SemVer.parse("1.1") < SemVer.parse("1.1.1")
    assert SemVer.parse("1.0-rc.1") < SemVer.parse("1.0")


def test_build_metadata_does_not_change_precedence() -> None:
    assert SemVer.parse("1.0.0+build.1") == SemVer.parse("1.0.0+build.2")
    assert str(SemVer.parse("1.0.0-rc.1+build.5")) == "1.0.0-rc.1+build.5"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1\u0660.0.0", id="arabic-indic-zero"),
        pytest.param("\uff11.0.0", id="fullwidth-one"),
        pytest.param("1.0.0-rc.\u0661", id="unicode-digit-in-prerelease"),
        pytest.param("1.0.0+b\u0662", id="unicode-digit-in-build"),
    ],
)
def test_versions_are_ascii(text: str) -> None:
    # A Unicode digit would sort by its value ("1\u0660.0.0" as 10.0.0) under a name that
    # `vtreg revoke hello@10.0.0` never matches.
    with pytest.raises(ValueError, match="not a semantic version"):
        SemVer.parse(text)
    manifest = json.dumps({"name": "hello", "description": "d", "version": text})
    with pytest.raises(FormatError, match="version"):
        parse_manifest(manifest.encode())


_identifier = st.from_regex(r"(0|[1-9][0-9]{0,3}|[a-z][a-z0-9-]{0,5})", fullmatch=True)


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.lists(_identifier, max_size=3),
)
def test_semver_round_trips(major: int, minor: int, patch: int, pre: list[str]) -> None:
    text = f"{major}.{minor}.{patch}" + ("-" + ".".join(pre) if pre else "")
    assert str(SemVer.parse(text)) == text


# Few distinct small values, so equal numbers and shared prefixes come up often, and
# numbers far beyond 64 bits, which a fixed-width integer key would get wrong.
_number = st.one_of(st.integers(0, 3), st.integers(0, 10**30))
_alphanumeric = st.from_regex(r"[0-9]*[A-Za-z-][0-9A-Za-z-]{0,4}", fullmatch=True)
_prerelease = st.one_of(_number.map(str), _alphanumeric, st.sampled_from(["a", "a-", "-", "0a"]))
_build = st.from_regex(r"(\+[0-9A-Za-z-]{1,4}(\.[0-9A-Za-z-]{1,4})?)?", fullmatch=True)


@st.composite
def _versions(draw: st.DrawFn) -> SemVer:
    text = ".".join(str(draw(_number)) for _ in range(3))
    identifiers = draw(st.lists(_prerelease, max_size=4))
    if identifiers:
        text += "-" + ".".join(identifiers)
    text += draw(_build)
    assume(len(text) <= 128)
    return SemVer.parse(text)


@given(_versions(), _versions())
def test_sort_key_order_is_semver_precedence(a: SemVer, b: SemVer) -> None:
    assert (a.sort_key() < b.sort_key()) == (a < b)
    assert (a.sort_key() == b.sort_key()) == (a == b)


def test_sort_key_orders_the_spec_examples() -> None:
    assert sorted(ORDERED, key=lambda v: SemVer.parse(v).sort_key()) == ORDERED
    assert SemVer.parse("1.0.0+a").sort_key() == SemVer.parse("1.0.0+b").sort_key()


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        pytest.param(SemVer(2**64, 0, 0), SemVer(2**64 + 1, 0, 0), id="past-64-bits"),
        pytest.param(SemVer(256**254, 0, 0), SemVer(256**255, 0, 0), id="length-byte-full"),
        pytest.param(SemVer(10**700, 0, 0), SemVer(10**701, 0, 0), id="longer-length"),
        pytest.param(
            SemVer(1, 0, 0, (10**700,)), SemVer(1, 0, 0, ("a",)), id="numeric-before-alpha"
        ),
    ],
)
def test_sort_key_is_defined_beyond_what_parse_accepts(lower: SemVer, higher: SemVer) -> None:
    assert lower < higher
    assert lower.sort_key() < higher.sort_key()
