"""A publish's own serialisation is python-tuf's canonical JSON, byte for byte, and its
files are metadata python-tuf reads back and verifies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tuf.api.metadata import Metadata, Targets
from tuf.api.serialization.json import CanonicalJSONSerializer

from vtreg.registry.fleet._signer import VtregSigner
from vtreg.registry.fleet._write import canonical_signed, signed_file, write_new
from vtreg.registry.fleet.repository import entry_target
from vtreg.verifier.errors import WriteError
from vtreg.verifier.keys import SigningKey

_SIGNER = VtregSigner(SigningKey.generate("online"))
_EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)

# Every JSON value canonical JSON has (no floats), with any text: control characters,
# quotes, backslashes, non-ASCII, in keys and in values.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _bin(custom: dict[str, Any], path: str = "names/x") -> Metadata[Targets]:
    targets = {path: entry_target(path, custom)}
    return Metadata(Targets(version=3, expires=_EXPIRES, targets=targets))


@given(custom=st.dictionaries(st.text(), _json, max_size=4), path=st.text(min_size=1))
def test_canonical_bytes_are_python_tufs(custom: dict[str, Any], path: str) -> None:
    md = _bin(custom, path)
    assert canonical_signed(md.signed) == CanonicalJSONSerializer().serialize(md.signed)


@pytest.mark.parametrize(
    "custom",
    [
        pytest.param({"name": "hello", "versions": [1, 2]}, id="plain"),
        pytest.param({"name": "h\u00e9llo \u2603"}, id="non-ascii"),
        pytest.param({"name": 'a"b\\c'}, id="quote-and-backslash"),
        pytest.param({"name": "line\nbreak\x00\x1f"}, id="control-characters"),
    ],
)
def test_a_signed_file_reads_back_as_the_metadata_and_verifies(custom: dict[str, Any]) -> None:
    md = _bin(custom)
    data = signed_file(md, _SIGNER)
    back = Metadata[Targets].from_bytes(data)
    assert back == md
    assert list(back.signatures) == [_SIGNER.public_key.keyid]
    signed = CanonicalJSONSerializer().serialize(back.signed)
    _SIGNER.public_key.verify_signature(back.signatures[_SIGNER.public_key.keyid], signed)


def test_a_new_file_replaces_what_a_crashed_publish_left(tmp_path: Path) -> None:
    path = tmp_path / "2.bins-00.json"
    path.write_bytes(b'{"signatures":[],"sig')  # cut short
    write_new(path, b"{}")
    assert (path.read_bytes(), path.stat().st_mode & 0o777) == (b"{}", 0o644)


def test_a_new_file_in_a_missing_directory_is_a_write_error(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match=r"cannot write .*missing/1\.bins-00\.json"):
        write_new(tmp_path / "missing" / "1.bins-00.json", b"{}")
