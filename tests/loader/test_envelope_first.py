"""plugin.sig is checked alone before anything else of the directory is read.

Each attack gives the loader a directory holding a sparse 64 GiB file, which
costs the attacker no disk; reading it would fill the host's RAM (as the
library's sealed copy) or keep it busy for minutes. The loader must refuse
having read no more than plugin.sig, plugin.json and a few small files: the
process's own read counter (/proc/self/io ``rchar``, which also counts
reaped children) shows it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import bytes_read
from tests.loader.conftest import Build, RecordingAudit
from vtreg.loader import PluginLoader
from vtreg.verifier.envelope import PAYLOAD_TYPE, encode_envelope, pae
from vtreg.verifier.errors import VerificationError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

HUGE = 64 << 30
FEW_READS = 4 << 20  # plugin.sig, plugin.json, the interpreter's own odds and ends

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count bytes read"
)


def _make_huge(path: Path) -> None:
    with path.open("r+b" if path.exists() else "wb") as f:
        f.truncate(HUGE)


def _resigned(plugin: Path, key: SigningKey, edit: Callable[[dict[str, object]], None]) -> bytes:
    """plugin.sig for ``plugin`` with its statement edited, validly signed by ``key``."""
    envelope = json.loads(sign(capture(plugin), key, at=datetime.now().astimezone()).envelope)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    edit(statement)
    payload = json.dumps(statement).encode()
    return encode_envelope(
        PAYLOAD_TYPE, payload, [(key.keyid, key.sign(pae(PAYLOAD_TYPE, payload)))]
    )


def _refused(loader: PluginLoader, plugin: Path, code: str) -> int:
    with bytes_read() as counted, pytest.raises(VerificationError) as refused:
        loader.load_plugin(plugin)
    assert refused.value.code == code, refused.value
    return counted[0]


@pytest.mark.parametrize(
    ("signature", "code"),
    [
        pytest.param(b"\x00garbage" * 1000, "malformed", id="garbage"),
        pytest.param(b"{}", "malformed", id="empty-object"),
        pytest.param(
            b'{"payloadType": 1, "payload": "", "signatures": []}', "malformed", id="wrong-shape"
        ),
    ],
)
def test_a_garbage_plugin_sig_reads_nothing_else(
    build: Build, plugin_loader: PluginLoader, signature: bytes, code: str
) -> None:
    plugin = build("huge", signed_by=None)
    _make_huge(plugin / "libhuge.so")
    (plugin / "plugin.sig").write_bytes(signature)

    assert _refused(plugin_loader, plugin, code) < FEW_READS


def test_a_statement_signed_by_an_unknown_key_reads_nothing_else(
    build: Build, plugin_loader: PluginLoader, other_key: SigningKey
) -> None:
    plugin = build("huge", signed_by=None)
    # A well-formed statement that claims the 64 GiB, signed by a key nobody trusts.
    lengths = {"libhuge.so": HUGE}
    (plugin / "plugin.sig").write_bytes(
        _resigned(plugin, other_key, lambda s: s["predicate"]["lengths"].update(lengths))  # type: ignore[index]
    )
    _make_huge(plugin / "libhuge.so")

    assert _refused(plugin_loader, plugin, "unknown-key") < FEW_READS


def test_a_payload_altered_after_signing_reads_nothing_else(
    build: Build, plugin_loader: PluginLoader
) -> None:
    plugin = build("huge")
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["lengths"]["libhuge.so"] = HUGE  # what the attacker needs it to say
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (plugin / "plugin.sig").write_text(json.dumps(envelope))
    _make_huge(plugin / "libhuge.so")

    assert _refused(plugin_loader, plugin, "bad-signature") < FEW_READS


def test_a_library_swapped_for_a_huge_file_is_refused_unread(
    build: Build, plugin_loader: PluginLoader, audit_log: RecordingAudit
) -> None:
    plugin = build("huge")  # validly signed by the trusted key
    _make_huge(plugin / "libhuge.so")

    assert _refused(plugin_loader, plugin, "digest-mismatch") < FEW_READS
    assert audit_log.events[-1].reason is not None
    assert "libhuge.so is 68,719,476,736 bytes" in audit_log.events[-1].reason


def test_a_huge_file_added_to_a_signed_plugin_is_refused_unread(
    build: Build, plugin_loader: PluginLoader
) -> None:
    plugin = build("huge")
    _make_huge(plugin / "aaa.bin")  # sorted before everything signed

    assert _refused(plugin_loader, plugin, "file-added") < FEW_READS


def test_a_directory_that_is_no_plugin_is_refused_unread(
    trusted: Path, plugin_loader: PluginLoader
) -> None:
    directory = trusted / "not-a-plugin"
    directory.mkdir(mode=0o755)
    _make_huge(directory / "libnot-a-plugin.so")
    (directory / "plugin.json").write_text('{"name": "not-a-plugin"}')

    assert _refused(plugin_loader, directory, "unsigned") < FEW_READS


def test_a_statement_of_the_old_format_is_not_loaded(
    build: Build, plugin_loader: PluginLoader, key: SigningKey
) -> None:
    # A v1 statement records no lengths, so nothing would bound the library's copy.
    plugin = build("old")

    def to_v1(statement: dict[str, object]) -> None:
        statement["predicateType"] = "https://vtreg.dev/native-plugin/v1"
        del statement["predicate"]["lengths"]  # type: ignore[attr-defined]

    (plugin / "plugin.sig").write_bytes(_resigned(plugin, key, to_v1))

    with pytest.raises(VerificationError, match=r"records no file lengths.*--fresh") as refused:
        plugin_loader.load_plugin(plugin)
    assert refused.value.code == "malformed"
