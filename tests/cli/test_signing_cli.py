"""The ``vtreg`` keygen/sign/verify commands: outputs, exit codes, refusals.

Most cases run the CLI in this process (:func:`invoke_cli`); the few that use
:func:`run_cli` are about the process itself: start-up, the console entry
point's exit codes and the capture it starts before importing the CLI, and a
run with no terminal and no stdin at all.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers import example_hello, invoke_cli, ok, one_line_error, run_cli
from vtreg.verifier.envelope import format_time
from vtreg.verifier.keys import read_private_key_file
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture

PluginFactory = Callable[..., Path]


def test_help_lists_the_commands() -> None:
    # A process: the start-up path and the console entry point's exit 0.
    result = run_cli("--help")
    assert result.code == 0
    for command in ("keygen", "sign", "verify"):
        assert command in result.stdout


def test_help_and_offline_verify_do_not_import_the_database_stack(
    plugin_factory: PluginFactory, keys: Path
) -> None:
    plugin = plugin_factory()
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    probe = (
        "import sys\n"
        "from vtreg.registry.cli import run\n"
        f"codes = [run(['--help']), run(['verify', {str(plugin)!r}, '--key', {str(keys / 'alice.pub')!r}])]\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic'))\n"
        "print(codes, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("[0, 0] []"), out


def test_keygen_writes_a_private_and_a_public_key(tmp_path: Path) -> None:
    result = invoke_cli(
        "keygen", "carol", "--out", tmp_path, "--json", env={"VTREG_PASSPHRASE": "s3cret"}
    )

    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["ok"] is True
    assert doc["encrypted"] is True
    key, pub = tmp_path / "carol.key", tmp_path / "carol.pub"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert f"# keyid: {doc['keyid']}" in pub.read_text()
    assert read_private_key_file(key, b"s3cret").keyid == doc["keyid"]


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "carol.pub").write_text("precious")
    result = invoke_cli("keygen", "carol", "--out", tmp_path, "--unencrypted")

    one_line_error(result, 3, r"refusing to overwrite .*carol\.pub")
    assert sorted(os.listdir(tmp_path)) == ["carol.pub"]
    assert (tmp_path / "carol.pub").read_text() == "precious"


def test_keygen_unencrypted_warns(tmp_path: Path) -> None:
    result = invoke_cli("keygen", "carol", "--out", tmp_path, "--unencrypted")
    assert result.code == 0
    assert "is not encrypted" in result.stderr
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "carol.key").read_bytes()


def test_keygen_without_a_passphrase_source_fails_cleanly(tmp_path: Path) -> None:
    # A process with no terminal and stdin from /dev/null, as in a script or CI.
    result = run_cli("keygen", "carol", "--out", tmp_path)
    one_line_error(result, 3, "a passphrase is needed: set VTREG_PASSPHRASE")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_keygen_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    result = invoke_cli("keygen", name, "--out", tmp_path, "--unencrypted")
    assert result.code == 2
    assert os.listdir(tmp_path) == []


def test_sign_and_verify(plugin_factory: PluginFactory, keys: Path) -> None:
    plugin = plugin_factory("hello", "1.0.0")

    signed = invoke_cli("sign", plugin, "--key", keys / "alice.key", "--json")
    # A process: main() starts capturing the directory before the CLI is imported.
    verified = run_cli("verify", plugin, "--key", keys / "alice.pub", "--json")

    assert signed.code == 0, signed.stderr
    assert verified.code == 0, verified.stderr
    doc = verified.json()
    assert doc["ok"] is True
    assert doc["verified"] is True
    assert doc["plugin"]["name"] == "hello"
    assert doc["plugin"]["content_digest"] == signed.json()["content_digest"]


def test_example_plugin_signs_and_verifies(tmp_path: Path, keys: Path) -> None:
    plugin = example_hello(tmp_path / "plugins")

    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    result = invoke_cli("verify", plugin, "--key", keys / "alice.pub")

    assert result.code == 0, result.stderr
    assert result.stdout.startswith("verified hello 1.0.0 (linux-x86_64)")


def test_encrypted_key_with_passphrase_file(plugin_factory: PluginFactory, tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("correct horse\n")
    ok(invoke_cli("keygen", "carol", "--out", tmp_path, "--passphrase-file", secret))
    plugin = plugin_factory()

    good = invoke_cli("sign", plugin, "--key", tmp_path / "carol.key", "--passphrase-file", secret)
    bad = invoke_cli(
        "sign", plugin, "--key", tmp_path / "carol.key", env={"VTREG_PASSPHRASE": "wrong"}
    )

    assert good.code == 0, good.stderr
    one_line_error(bad, 3, r"wrong passphrase for .*carol\.key")


def test_cosigning_and_threshold(plugin_factory: PluginFactory, keys: Path) -> None:
    plugin = plugin_factory()
    invoke_cli("sign", plugin, "--key", keys / "alice.key")
    cosign = invoke_cli("sign", plugin, "--key", keys / "bob.key", "--json").json()
    both: list[str | Path] = ["--key", keys / "alice.pub", "--key", keys / "bob.pub"]

    assert (cosign["created"], cosign["changed"], cosign["replaced"]) == (False, True, False)
    assert cosign["signatures"] == 2
    ok(invoke_cli("verify", plugin, *both, "--threshold", "2"))
    assert invoke_cli("verify", plugin, "--key", keys / "alice.pub", "--threshold", "2").code == 2


def test_json_errors_are_one_document(plugin_factory: PluginFactory, keys: Path) -> None:
    plugin = plugin_factory()
    # A process: a refusal from the console entry point, after its early capture.
    result = run_cli("verify", plugin, "--key", keys / "alice.pub", "--json")

    assert result.code == 1
    doc = result.json()
    assert doc["ok"] is False
    assert doc["error"]["category"] == "refused"
    assert doc["error"]["message"] == "unsigned: there is no plugin.sig"
    assert doc["error"]["code"] == "unsigned"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--json", "key"], "vtreg key needs a command: add, list, passphrase, pub, revoke, set", id="group-alone"),
        pytest.param(["--json", "db"], "vtreg db needs a command: info, upgrade", id="other-group"),
        pytest.param(["--json", "frobnicate"], "No such command 'frobnicate'.", id="unknown-command"),
    ],
)  # fmt: skip
def test_json_usage_errors_are_one_document(args: list[str], message: str) -> None:
    # A process: usage errors from the console entry point, before click has parsed --json.
    result = run_cli(*args)

    assert result.code == 2
    error = result.json()["error"]
    assert (error["category"], error["message"]) == ("usage", message)
    assert len(result.stderr.strip().splitlines()) == 1


# --- every offline threat, through the CLI: exit 1, one line, no traceback ---


def _flip_library(p: Path, keys: Path) -> None:
    lib = p / "libbasic.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))


def _edit_manifest(p: Path, keys: Path) -> None:
    manifest = json.loads((p / "plugin.json").read_text())
    manifest["version"] = "1.0.1"
    (p / "plugin.json").write_text(json.dumps(manifest))


def _replace_signature(p: Path, keys: Path) -> None:
    (p / "plugin.sig").unlink()
    invoke_cli("sign", p, "--key", keys / "bob.key")  # bob is not trusted below


def _duplicate_signature(p: Path, keys: Path) -> None:
    envelope = json.loads((p / "plugin.sig").read_text())
    envelope["signatures"].append(envelope["signatures"][0])
    (p / "plugin.sig").write_text(json.dumps(envelope))


def _payload_type(p: Path, keys: Path) -> None:
    envelope = json.loads((p / "plugin.sig").read_text())
    envelope["payloadType"] = "text/plain"
    (p / "plugin.sig").write_text(json.dumps(envelope))


THREATS = [
    pytest.param(_flip_library, r"digest of libbasic\.so is sha256:", id="flipped-byte"),
    pytest.param(
        _edit_manifest, r"plugin\.json is [\d,]+ bytes; [\d,]+ were signed", id="edited-plugin-json"
    ),
    pytest.param(
        lambda p, k: (p / "new.txt").write_text("x"), r"new\.txt not covered", id="file-added"
    ),
    pytest.param(
        lambda p, k: (p / "README.md").unlink(),
        r"README\.md is signed but missing",
        id="file-removed",
    ),
    pytest.param(
        lambda p, k: (p / "README.md").rename(p / "READ.md"),
        r"READ\.md not covered",
        id="file-renamed",
    ),
    pytest.param(
        lambda p, k: (p / "link").symlink_to("/etc/passwd"), r"link is a symlink", id="symlink"
    ),
    pytest.param(_replace_signature, r"signed by 0/1 required trusted keys", id="wrong-key"),
    pytest.param(
        _duplicate_signature, r"signed by 1/2 .*counts once", id="threshold-one-key-twice"
    ),
    pytest.param(_payload_type, r"payloadType is 'text/plain'", id="payload-type"),
    pytest.param(
        lambda p, k: (p / "plugin.sig").write_bytes(b'{"payloadType": "app'),
        r"not valid JSON",
        id="truncated-sig",
    ),
    pytest.param(
        lambda p, k: (p / "plugin.sig").write_bytes(os.urandom(300)),
        r"plugin\.sig is not valid",
        id="garbage-sig",
    ),
    pytest.param(
        lambda p, k: (p / "plugin.sig").write_bytes(b"{" * (2 << 20)),
        r"plugin\.sig is larger than",
        id="oversize-sig",
    ),
    pytest.param(
        lambda p, k: (p / "plugin.json").write_bytes(b" " * (300 << 10)),
        r"plugin\.json is 307,200 bytes; [\d,]+ were signed",  # refused before it is read
        id="oversize-plugin-json",
    ),
    pytest.param(lambda p, k: (p / "plugin.sig").unlink(), r"unsigned", id="unsigned"),
]


@pytest.mark.parametrize(("attack", "message"), THREATS)
def test_offline_threats_are_refused(
    plugin_factory: PluginFactory, keys: Path, attack: Callable[[Path, Path], object], message: str
) -> None:
    plugin = plugin_factory(extra_files={"README.md": b"# basic\n"})
    threshold = ["--threshold", "2"] if attack is _duplicate_signature else []
    extra_key: list[str | Path] = ["--key", keys / "carol.pub"] if threshold else []
    if threshold:
        invoke_cli("keygen", "carol", "--out", keys, "--unencrypted")
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))

    attack(plugin, keys)
    result = invoke_cli("verify", plugin, "--key", keys / "alice.pub", *extra_key, *threshold)

    one_line_error(result, 1, message)


def test_signature_moved_to_another_plugin_or_version(
    plugin_factory: PluginFactory, keys: Path, tmp_path: Path
) -> None:
    v1 = plugin_factory("tool", "1.0.0", parent=tmp_path / "a")
    v2 = plugin_factory("tool", "2.0.0", parent=tmp_path / "b")
    other = plugin_factory("other", "1.0.0", parent=tmp_path / "c")
    invoke_cli("sign", v1, "--key", keys / "alice.key")
    for target in (v2, other):
        shutil.copy(v1 / "plugin.sig", target / "plugin.sig")
        result = invoke_cli("verify", target, "--key", keys / "alice.pub")
        one_line_error(result, 1, r"digest of|is signed but missing|not covered")


def test_expired_signature(plugin_factory: PluginFactory, keys: Path) -> None:
    from datetime import UTC, datetime

    plugin = plugin_factory()
    key = read_private_key_file(keys / "alice.key", None)
    past = datetime.now(UTC) - timedelta(days=10)
    signed = sign(capture(plugin), key, at=past, expires=past + timedelta(days=1))
    (plugin / "plugin.sig").write_bytes(signed.envelope)

    result = invoke_cli("verify", plugin, "--key", keys / "alice.pub")

    one_line_error(result, 1, f"signature expired at {format_time(past + timedelta(days=1))}")


def test_sign_with_expiry(plugin_factory: PluginFactory, keys: Path) -> None:
    plugin = plugin_factory()
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key", "--expires", "30d"))
    statement = json.loads(
        base64.b64decode(json.loads((plugin / "plugin.sig").read_text())["payload"])
    )
    assert statement["predicate"]["expires"].endswith("Z")
    bad = invoke_cli("sign", plugin, "--key", keys / "alice.key", "--expires", "soon")
    assert bad.code == 2
    assert "is neither a date/time" in bad.stderr


# --- could not decide: exit 3, one line ---


def test_missing_directory(keys: Path, tmp_path: Path) -> None:
    one_line_error(
        invoke_cli("verify", tmp_path / "nope", "--key", keys / "alice.pub"), 3, "does not exist"
    )
    one_line_error(
        invoke_cli("sign", tmp_path / "nope", "--key", keys / "alice.key"), 3, "does not exist"
    )


def _junk_key(directory: Path) -> Path:
    path = directory / "junk.key"
    path.write_bytes(b"junk")
    path.chmod(0o600)  # a key file open to others is refused before it is read
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda d: d / "missing.key", "does not exist", id="missing"),
        pytest.param(lambda d: d, "is not a regular file", id="directory"),
        pytest.param(_junk_key, "expected exactly one PEM block", id="garbage"),
    ],
)
def test_unreadable_keys(
    plugin_factory: PluginFactory, tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    plugin = plugin_factory()
    key_path = make(tmp_path)
    one_line_error(invoke_cli("sign", plugin, "--key", key_path), 3, message)
    one_line_error(invoke_cli("verify", plugin, "--key", key_path), 3, message)
    assert not (plugin / "plugin.sig").exists()


def test_bad_input_never_leaves_a_signature(plugin_factory: PluginFactory, keys: Path) -> None:
    plugin = plugin_factory()
    (plugin / "plugin.json").write_text("{not json")
    one_line_error(
        invoke_cli("sign", plugin, "--key", keys / "alice.key"), 1, "plugin.json is not valid JSON"
    )
    assert not (plugin / "plugin.sig").exists()


def test_verbose_shows_the_traceback(keys: Path, tmp_path: Path) -> None:
    result = invoke_cli("verify", tmp_path / "nope", "--key", keys / "alice.pub", "--verbose")
    assert result.code == 3
    assert "Traceback" in result.stderr


def test_a_small_order_key_cannot_be_used_to_forge(
    plugin_factory: PluginFactory, keys: Path, tmp_path: Path
) -> None:
    # The identity point as a "publisher key": R = identity, S = 0 verifies under
    # it for any payload, so anyone could sign anything. vtreg refuses the key.
    from tests.verifier.test_keys import FORGED_SIGNATURE, IDENTITY_KEY, weak_public_key_pem
    from vtreg.verifier.keys import keyid_of

    weak = tmp_path / "weak.pub"
    weak.write_bytes(weak_public_key_pem(IDENTITY_KEY))
    plugin = plugin_factory()
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    envelope = json.loads((plugin / "plugin.sig").read_text())
    forged = base64.b64encode(FORGED_SIGNATURE).decode()
    envelope["signatures"] = [{"keyid": keyid_of(IDENTITY_KEY), "sig": forged}]
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    attempts: list[list[str | Path]] = [
        ["verify", plugin, "--key", weak],
        ["key", "add", weak, "--db", f"sqlite:///{tmp_path / 'r.db'}"],
    ]
    for args in attempts:
        result = invoke_cli(*args)
        assert result.code == 3, result.stdout
        assert "not a usable ed25519 public key: a point of small order" in result.stderr
    assert not (tmp_path / "r.db").exists()  # refused before any registry was opened


def test_a_hostile_keyid_hint_cannot_paint_over_the_refusal(
    plugin_factory: PluginFactory, keys: Path
) -> None:
    plugin = plugin_factory()
    ok(invoke_cli("sign", plugin, "--key", keys / "bob.key"))
    envelope = json.loads((plugin / "plugin.sig").read_bytes())
    envelope["signatures"][0]["keyid"] = "\x1b[2K\r\x1b[32mverified"
    (plugin / "plugin.sig").write_text(json.dumps(envelope))

    text = invoke_cli("verify", plugin, "--key", keys / "alice.pub")
    as_json = invoke_cli("verify", plugin, "--key", keys / "alice.pub", "--json")

    assert text.code == as_json.code == 1
    assert "\x1b" not in text.stderr
    assert "\r" not in text.stderr
    assert "\\x1b[2K \\x1b[32m" in text.stderr  # shown, inert (the CR folded to a space)
    assert text.stderr.count("\n") == 1  # one line
    assert as_json.json()["error"]["code"] == "unknown-key"


# --- bad passphrases and missing files: one line, exit 3, nothing written ---


def test_a_wrong_passphrase_writes_nothing(plugin_factory: PluginFactory, tmp_path: Path) -> None:
    ok(invoke_cli("keygen", "carol", "--out", tmp_path, env={"VTREG_PASSPHRASE": "right"}))
    plugin = plugin_factory()
    ok(
        invoke_cli(
            "sign", plugin, "--key", tmp_path / "carol.key", env={"VTREG_PASSPHRASE": "right"}
        )
    )
    old = (plugin / "plugin.sig").read_bytes()
    before = {d: sorted(os.listdir(d)) for d in (plugin, plugin.parent)}

    for args in ([], ["--fresh"]):
        result = invoke_cli(
            "sign",
            plugin,
            "--key",
            tmp_path / "carol.key",
            *args,
            env={"VTREG_PASSPHRASE": "wrong"},
        )
        one_line_error(result, 3, r"wrong passphrase for .*carol\.key")

    assert (plugin / "plugin.sig").read_bytes() == old
    assert {d: sorted(os.listdir(d)) for d in (plugin, plugin.parent)} == before


@pytest.mark.parametrize("where", ["missing", "immutable"])
def test_keygen_into_a_directory_it_cannot_write(tmp_path: Path, where: str) -> None:
    out = tmp_path / "out"
    if where == "immutable":
        out.mkdir()
        subprocess.run(["chattr", "+i", str(out)], check=True)  # stops root too, unlike chmod
    try:
        result = invoke_cli("keygen", "carol", "--out", out, "--unencrypted")
    finally:
        if where == "immutable":
            subprocess.run(["chattr", "-i", str(out)], check=True)

    message = "does not exist" if where == "missing" else r"cannot create .*carol\.pub"
    one_line_error(result, 3, message)
    assert os.listdir(tmp_path) == ([] if where == "missing" else ["out"])
    assert where == "missing" or os.listdir(out) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: None, "does not exist", id="missing"),
        pytest.param(lambda p: p.write_bytes(b""), "is empty", id="empty"),
        pytest.param(lambda p: p.write_bytes(b"\n"), "is empty", id="empty-line"),
        pytest.param(os.mkfifo, "is not a regular file", id="fifo"),
        pytest.param(os.mkdir, "is not a regular file", id="directory"),
    ],
)
@pytest.mark.parametrize("command", ["keygen", "sign"])
def test_a_passphrase_file_that_cannot_be_read(
    plugin_factory: PluginFactory,
    tmp_path: Path,
    make: Callable[[Path], object],
    message: str,
    command: str,
) -> None:
    secret = tmp_path / "pass"
    make(secret)
    out = tmp_path / "keys"
    out.mkdir()
    ok(invoke_cli("keygen", "carol", "--out", out, env={"VTREG_PASSPHRASE": "right"}))
    plugin = plugin_factory()
    args: list[str | Path] = (
        ["keygen", "dave", "--out", out]
        if command == "keygen"
        else ["sign", plugin, "--key", out / "carol.key"]
    )

    # A process with a timeout: a FIFO read that blocked would fail the test, not hang it.
    result = run_cli(*args, "--passphrase-file", secret, timeout=60)

    one_line_error(result, 3, f"passphrase file .*{message}")
    assert sorted(os.listdir(out)) == ["carol.key", "carol.pub"]
    assert not (plugin / "plugin.sig").exists()


def test_sign_fresh_replaces_a_plugin_sig_too_large_to_read(
    plugin_factory: PluginFactory, keys: Path
) -> None:
    # What older vtreg could write: more than verify will read.
    plugin = plugin_factory()
    (plugin / "plugin.sig").write_bytes(b" " * (1024 * 1024 + 1))

    stuck = invoke_cli("sign", plugin, "--key", keys / "alice.key")
    one_line_error(stuck, 1, r"larger than the 1048576-byte limit; .*vtreg sign --fresh\)")

    fresh = ok(invoke_cli("sign", plugin, "--key", keys / "alice.key", "--fresh"))
    assert "signed a fresh statement: replaced" in fresh.stdout
    assert "(earlier signatures dropped)" in fresh.stdout
    assert (plugin / "plugin.sig").stat().st_size < 1024 * 1024
    ok(invoke_cli("verify", plugin, "--key", keys / "alice.pub"))
