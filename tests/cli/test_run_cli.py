"""`vtreg run`: the verified load and one call through the real CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import EXAMPLE_HELLO, CliResult, Compiler, make_plugin, run_cli


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.stderr
    return result


def one_line(result: CliResult, code: int, text: str) -> None:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert text in lines[0], lines[0]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """A home with a registry trusting alice, alice's key, and a plugins directory."""
    home = {"VTREG_HOME": str(tmp_path / "home")}
    keys = tmp_path / "keys"
    keys.mkdir()
    ok(run_cli("keygen", "alice", "--out", keys, "--unencrypted"))
    ok(run_cli("key", "add", keys / "alice.pub", env=home))
    plugins = tmp_path / "plugins"
    plugins.mkdir(mode=0o755)
    return home, keys, plugins


def _example(plugins: Path) -> Path:
    examples = plugins.parent / "examples"
    shutil.copytree(
        EXAMPLE_HELLO.parent, examples, ignore=shutil.ignore_patterns("*.so", "plugin.sig")
    )
    subprocess.run(["make", "-s", "-C", str(examples / "hello")], check=True, capture_output=True)
    plugin = plugins / "hello"
    plugin.mkdir(mode=0o755)
    for name in ("plugin.json", "libhello.so"):
        shutil.copy(examples / "hello" / name, plugin / name)
    return plugin


@pytest.mark.parametrize("isolate", [[], ["--isolate"]], ids=["in-process", "isolated"])
def test_run_the_example_plugin(
    setup: tuple[dict[str, str], Path, Path], isolate: list[str]
) -> None:
    home, keys, plugins = setup
    plugin = _example(plugins)
    ok(run_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(run_cli("trust", plugin, env=home))

    result = ok(run_cli("run", plugin, "--input", '{"name": "Ada"}', "--json", *isolate, env=home))

    doc = result.json()
    assert doc["result"]["output"] == {"greeting": "Hello, Ada!"}
    assert doc["plugin"]["isolation"] == ("process" if isolate else "none")


def test_tampered_plugin_is_refused_and_both_are_audited(
    setup: tuple[dict[str, str], Path, Path],
) -> None:
    home, keys, plugins = setup
    plugin = _example(plugins)
    ok(run_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(run_cli("trust", plugin, env=home))
    ok(run_cli("run", plugin, env=home))
    library = plugin / "libhello.so"
    data = bytearray(library.read_bytes())
    data[4000] ^= 0xFF
    library.write_bytes(bytes(data))

    one_line(run_cli("run", plugin, env=home), 1, "digest of libhello.so")

    events = ok(run_cli("audit", "--action", "plugin.load", "--json", env=home)).json()["events"]
    assert [(e["outcome"], e["plugin"]) for e in events] == [
        ("refused", "hello"), ("allowed", "hello")
    ]  # fmt: skip


def test_untrusted_plugin_is_refused(
    setup: tuple[dict[str, str], Path, Path], compiler: Compiler
) -> None:
    home, keys, plugins = setup
    plugin = make_plugin(plugins, compiler, "stranger", source="variants.c")
    plugin.chmod(0o755)
    ok(run_cli("sign", plugin, "--key", keys / "alice.key"))
    one_line(run_cli("run", plugin, env=home), 1, "is signed but not trusted")


@pytest.mark.parametrize(
    ("mode", "args", "code", "message"),
    [
        pytest.param(5, ["--isolate"], 3, "killed by SIGSEGV", id="crash-isolated"),
        pytest.param(7, ["--timeout", "1"], 3, "no answer within 1 s", id="hang-with-timeout"),
        pytest.param(3, [], 3, "result is not valid JSON", id="not-json"),
    ],
)
def test_misbehaving_plugins_give_exit_3(
    setup: tuple[dict[str, str], Path, Path],
    compiler: Compiler,
    mode: int,
    args: list[str],
    code: int,
    message: str,
) -> None:
    home, keys, plugins = setup
    plugin = make_plugin(plugins, compiler, "bad", source="variants.c", defines={"MODE": str(mode)})
    plugin.chmod(0o755)
    ok(run_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(run_cli("trust", plugin, env=home))
    one_line(run_cli("run", plugin, *args, env=home), code, message)


def test_the_context_reaches_the_plugin(
    setup: tuple[dict[str, str], Path, Path], compiler: Compiler
) -> None:
    home, keys, plugins = setup
    plugin = make_plugin(plugins, compiler, "echo", source="basic.c")
    plugin.chmod(0o755)
    ok(run_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(run_cli("trust", plugin, env=home))
    result = ok(run_cli("run", plugin, "--input", '{"x": [1, 2]}', "--json", env=home))
    assert result.json()["result"]["output"]["context"]["input"] == {"x": [1, 2]}


def test_plugin_reporting_failure_exits_3(
    setup: tuple[dict[str, str], Path, Path], compiler: Compiler
) -> None:
    home, keys, plugins = setup
    plugin = make_plugin(plugins, compiler, "sad", source="variants.c", defines={"MODE": "11"})
    plugin.chmod(0o755)
    ok(run_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(run_cli("trust", plugin, env=home))

    result = run_cli("run", plugin, "--json", env=home)

    assert result.code == 3
    assert "the plugin reported failure: no greeting today" in result.stderr
    assert result.json()["result"]["success"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--input", "{not json"], "--input is not valid JSON", id="bad-json"),
        pytest.param(["--input", "[1, 2]"], "--input must be a JSON object", id="not-object"),
        pytest.param(["--timeout", "0"], "--timeout", id="zero-timeout"),
    ],
)
def test_bad_run_input(
    setup: tuple[dict[str, str], Path, Path], args: list[str], message: str
) -> None:
    home, _, plugins = setup
    result = run_cli("run", plugins / "whatever", *args, env=home)
    assert result.code == 2
    assert message in result.stderr


def test_unsafe_default_trusted_dir_is_refused(
    setup: tuple[dict[str, str], Path, Path],
) -> None:
    home, keys, plugins = setup
    plugin = _example(plugins)
    ok(run_cli("sign", plugin, "--key", keys / "alice.key"))
    ok(run_cli("trust", plugin, env=home))
    plugins.chmod(0o777)
    one_line(run_cli("run", plugin, env=home), 1, "is writable by group or others")
    plugins.chmod(0o755)
    other = plugins.parent / "elsewhere"
    other.mkdir(mode=0o755)
    one_line(
        run_cli("run", plugin, "--trusted-dir", other, env=home),
        1,
        "not inside a trusted directory",
    )
