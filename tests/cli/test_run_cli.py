"""`vtreg run`: the verified load and one call through the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    CliResult,
    Compiler,
    example_hello,
    invoke_cli,
    make_plugin,
    ok,
    one_line_error,
    run_cli,
)

Setup = tuple[dict[str, str], Path, Path]


@pytest.fixture
def setup(tmp_path: Path, home: dict[str, str], keys: Path) -> Setup:
    """A home with a registry trusting alice, alice's key, and a plugins directory."""
    ok(invoke_cli("key", "add", keys / "alice.pub", env=home))
    plugins = tmp_path / "plugins"
    plugins.mkdir(mode=0o755)
    return home, keys, plugins


def signed(setup: Setup, plugin: Path, *, trust: bool = True) -> Path:
    """``plugin`` signed by alice and, unless ``trust`` is false, trusted in the registry."""
    home, keys, _ = setup
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    if trust:
        ok(invoke_cli("trust", plugin, env=home))
    return plugin


def variant(setup: Setup, compiler: Compiler, name: str, mode: int | None = None) -> Path:
    """A plugin built from tests/plugins/variants.c (MODE ``mode``) in the plugins directory."""
    defines = {} if mode is None else {"MODE": str(mode)}
    plugin = make_plugin(setup[2], compiler, name, source="variants.c", defines=defines)
    plugin.chmod(0o755)
    return plugin


@pytest.mark.parametrize("isolate", [[], ["--isolate"]], ids=["in-process", "isolated"])
def test_run_the_example_plugin(setup: Setup, isolate: list[str]) -> None:
    home, _, plugins = setup
    plugin = signed(setup, example_hello(plugins))

    result = ok(
        invoke_cli("run", plugin, "--input", '{"name": "Ada"}', "--json", *isolate, env=home)
    )

    doc = result.json()
    assert doc["result"]["output"] == {"greeting": "Hello, Ada!"}
    assert doc["plugin"]["isolation"] == ("process" if isolate else "none")


def test_tampered_plugin_is_refused_and_both_are_audited(setup: Setup) -> None:
    home, _, plugins = setup
    plugin = signed(setup, example_hello(plugins))
    ok(invoke_cli("run", plugin, env=home))
    library = plugin / "libhello.so"
    data = bytearray(library.read_bytes())
    data[4000] ^= 0xFF
    library.write_bytes(bytes(data))

    one_line_error(invoke_cli("run", plugin, env=home), 1, r"digest of libhello\.so")

    events = ok(invoke_cli("audit", "--action", "plugin.load", "--json", env=home)).json()["events"]
    assert [(e["outcome"], e["plugin"]) for e in events] == [
        ("refused", "hello"), ("allowed", "hello")
    ]  # fmt: skip


def test_untrusted_plugin_is_refused(setup: Setup, compiler: Compiler) -> None:
    home, _, _ = setup
    plugin = signed(setup, variant(setup, compiler, "stranger"), trust=False)
    one_line_error(invoke_cli("run", plugin, env=home), 1, "is signed but not trusted")


@pytest.mark.parametrize(
    ("mode", "args", "code", "message"),
    [
        pytest.param(5, ["--isolate"], 3, "killed by SIGSEGV", id="crash-isolated"),
        pytest.param(7, ["--timeout", "1"], 3, "no answer within 1 s", id="hang-with-timeout"),
        pytest.param(3, [], 3, "result is not valid JSON", id="not-json"),
    ],
)
def test_misbehaving_plugins_give_exit_3(
    setup: Setup, compiler: Compiler, mode: int, args: list[str], code: int, message: str
) -> None:
    home, _, _ = setup
    plugin = signed(setup, variant(setup, compiler, "bad", mode))
    one_line_error(invoke_cli("run", plugin, *args, env=home), code, message)


@pytest.mark.parametrize(
    ("define", "args", "message"),
    [
        pytest.param(
            "CONSTRUCTOR_CRASHES", ["--isolate"], "killed by SIGSEGV while loading", id="crash"
        ),
        pytest.param(
            "CONSTRUCTOR_HANGS",
            ["--timeout", "1"],
            r"no answer within 1 s while loading",
            id="hang-with-timeout",
        ),
        pytest.param(
            "CONSTRUCTOR_HOGS",
            ["--isolate", "--memory-limit", "32MiB"],
            r"out of memory while loading \(memory limit 32 MiB\)",
            id="out-of-memory",
        ),
    ],
)
def test_a_plugin_that_fails_while_loading_cannot_decide(
    setup: Setup, compiler: Compiler, define: str, args: list[str], message: str
) -> None:
    """Exit 3 and audited as an error, never a refusal: the plugin is what was signed, its
    constructor crashed, hung (--timeout bounds loading as well as the call) or ran out
    of the memory it was given."""
    home, _, plugins = setup
    plugin = make_plugin(plugins, compiler, "bad", source="variants.c", defines={define: "1"})
    plugin.chmod(0o755)
    signed(setup, plugin)

    one_line_error(invoke_cli("run", plugin, *args, env=home), 3, message)

    events = ok(invoke_cli("audit", "--action", "plugin.load", "--json", env=home)).json()["events"]
    assert [(e["outcome"], e["plugin"]) for e in events] == [("error", "bad"), ("allowed", "bad")]
    assert re.search(message, events[0]["reason"])


def test_the_context_reaches_the_plugin(setup: Setup, compiler: Compiler) -> None:
    home, _, plugins = setup
    plugin = make_plugin(plugins, compiler, "echo", source="basic.c")
    plugin.chmod(0o755)
    signed(setup, plugin)
    result = ok(invoke_cli("run", plugin, "--input", '{"x": [1, 2]}', "--json", env=home))
    assert result.json()["result"]["output"]["context"]["input"] == {"x": [1, 2]}


def test_plugin_reporting_failure_exits_3(setup: Setup, compiler: Compiler) -> None:
    home, _, _ = setup
    plugin = signed(setup, variant(setup, compiler, "sad", 11))

    result = invoke_cli("run", plugin, "--json", env=home)

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
def test_bad_run_input(setup: Setup, args: list[str], message: str) -> None:
    home, _, plugins = setup
    result = invoke_cli("run", plugins / "whatever", *args, env=home)
    assert result.code == 2
    assert message in result.stderr


def test_unsafe_default_trusted_dir_is_refused(setup: Setup) -> None:
    home, _, plugins = setup
    plugin = signed(setup, example_hello(plugins))
    plugins.chmod(0o777)
    one_line_error(invoke_cli("run", plugin, env=home), 1, "is writable by group or others")
    plugins.chmod(0o755)
    other = plugins.parent / "elsewhere"
    other.mkdir(mode=0o755)
    one_line_error(
        invoke_cli("run", plugin, "--trusted-dir", other, env=home),
        1,
        "not inside a trusted directory",
    )


def test_a_crash_is_exit_3_only_with_isolate_as_the_help_says(
    setup: Setup, compiler: Compiler
) -> None:
    home, _, _ = setup
    plugin = signed(setup, variant(setup, compiler, "crash", 5))

    one_line_error(run_cli("run", plugin, "--isolate", env=home), 3, "killed by SIGSEGV")
    # In this process, the crash is the process's: no exit code of ours, as documented.
    assert run_cli("run", plugin, env=home).code == -signal.SIGSEGV
    help_text = " ".join(run_cli("run", "--help").stdout.split())
    assert "Only with it does a crash give exit 3" in help_text
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert "a plugin that crashes takes `vtreg` down with it" in readme


# Starts the real CLI with its address space capped (hard limit too): argv[1] bytes.
_CAPPED = (
    "import os, resource, sys; cap = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_AS, (cap, cap)); "
    "os.execv(sys.executable, [sys.executable, '-m', 'vtreg', *sys.argv[2:]])"
)


def test_a_worker_that_cannot_set_its_memory_limit_cannot_decide(
    setup: Setup, compiler: Compiler
) -> None:
    home, _, _ = setup
    plugin = signed(setup, variant(setup, compiler, "capped"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")} | home
    # The host may use 8 GiB of address space; the worker is asked to allow 1 TiB more.
    proc = subprocess.run(
        [sys.executable, "-c", _CAPPED, str(8 << 30), "run", str(plugin), "--isolate",
         "--memory-limit", f"{1 << 20}MiB"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip

    result = CliResult(proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    one_line_error(result, 3, r"cannot limit the plugin's address space to \d+ MiB")


@pytest.mark.parametrize(
    ("size", "message"),
    [
        pytest.param("512", r"'512' is not a size with a unit .*write 512MiB for MiB", id="bare"),
        pytest.param("0MiB", "not a size with a unit", id="zero"),
        pytest.param("1.5GiB", "not a size with a unit", id="fraction"),
        pytest.param("512KiB", r"memory_limit is in bytes", id="below-a-mib"),
    ],
)
def test_memory_limit_needs_a_unit(setup: Setup, size: str, message: str) -> None:
    # The Python API takes bytes; a bare number once meant MiB here.
    home, _, plugins = setup
    plugin = signed(setup, example_hello(plugins))
    one_line_error(
        invoke_cli("run", plugin, "--isolate", "--memory-limit", size, env=home), 2, message
    )


def test_memory_limit_with_a_unit(setup: Setup) -> None:
    home, _, plugins = setup
    plugin = signed(setup, example_hello(plugins))
    ok(invoke_cli("run", plugin, "--isolate", "--memory-limit", "256MiB", env=home))


def test_a_version_without_patch_and_no_description_sign_verify_trust_and_run(
    setup: Setup, compiler: Compiler
) -> None:
    # Both are plugin.json files VT Code loads; `1.0` sorts as 1.0.0 and stays "1.0".
    home, keys, plugins = setup
    plugin = make_plugin(plugins, compiler, "short", "1.0")
    (plugin / "plugin.json").write_text('{"name": "short", "version": "1.0"}')
    plugin.chmod(0o755)
    signed(setup, plugin)

    ok(invoke_cli("verify", plugin, "--key", keys / "alice.pub"))
    doc = ok(invoke_cli("run", plugin, "--json", env=home)).json()

    assert doc["plugin"]["version"] == "1.0"
