"""Known-answer test: a plugin.sig made once by the example publisher must verify forever.

tests/vectors/hello-1.0.0 was signed by the key whose public half is
keys/example-publisher.pub; the private half was destroyed after signing.
Its library is a bare 64-byte ELF header: the vector is never loaded. If a
change to the format or the content digest breaks this test, it breaks every
signature already published.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import ROOT
from vtreg.verifier.errors import ContentError
from vtreg.verifier.keys import read_public_key_file
from vtreg.verifier.signatures import verify_directory

VECTOR = ROOT / "tests" / "vectors" / "hello-1.0.0"
PUBLISHER = ROOT / "keys" / "example-publisher.pub"
CONTENT_DIGEST = "sha256:742c941a60dfbbf38a8ebe6afa0ecb92c0dcb83ed070fdee01f33873d6320795"
AT = datetime(2026, 12, 1, tzinfo=UTC)


def test_vector_verifies_with_the_shipped_publisher_key() -> None:
    key = read_public_key_file(PUBLISHER)

    result = verify_directory(str(VECTOR), [key], at=AT)

    assert key.keyid == "7851195489a8d2bfdf6918b49a4d9153c6ed2fdaa5597c65cdc3a317cf9b403e"
    assert (result.name, result.version, result.platform) == ("hello", "1.0.0", "linux-x86_64")
    assert result.signers == (key.keyid,)
    assert result.content_digest == CONTENT_DIGEST


def test_content_digest_definition_is_pinned() -> None:
    # Recomputed from the documented definition (docs/formats.md), not from our code.
    files = {
        name: hashlib.sha256((VECTOR / name).read_bytes()).hexdigest()
        for name in ("libhello.so", "plugin.json")
    }
    doc = json.dumps(
        {"files": files, "name": "hello", "version": "1.0.0"}, sort_keys=True, separators=(",", ":")
    )
    assert "sha256:" + hashlib.sha256(doc.encode()).hexdigest() == CONTENT_DIGEST


def test_vector_with_any_change_is_refused(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "hello-1.0.0"
    shutil.copytree(VECTOR, copy)
    library = copy / "libhello.so"
    library.write_bytes(library.read_bytes()[:-1] + b"\x01")

    with pytest.raises(ContentError):
        verify_directory(str(copy), [read_public_key_file(PUBLISHER)], at=AT)
