"""``keygen`` and ``sign`` killed (SIGKILL) at each of their write steps lose nothing.

Each case runs the real ``vtreg`` in a child process whose ``os`` write calls
(creating, writing, syncing, linking, renaming, removing) are counted; the
child kills itself with SIGKILL just before the chosen one, so the directory is
left exactly as a ``kill -9`` at that moment would leave it. Then the next run
must see both files of a key pair or neither, the old plugin.sig or the new
one, and no temporary of ours anywhere.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import invoke_cli, ok, one_line_error
from vtreg.verifier.keys import read_private_key_file, read_public_key_file

PluginFactory = Callable[..., Path]

_KILLER = textwrap.dedent(
    """
    import os, signal, sys

    which, target = sys.argv[1], int(sys.argv[2])
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    seen = 0

    def counted(name, real):
        def call(*args, **kwargs):
            global seen
            flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
            if name != "open" or flags & writing:
                if which in ("*", name):
                    seen += 1
                    if seen == target:
                        os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return call

    for name in ("mkdir", "open", "write", "fchmod", "fsync", "link", "unlink", "rmdir",
                 "replace", "rename"):
        setattr(os, name, counted(name, getattr(os, name)))

    from vtreg.registry.cli import main

    sys.argv = ["vtreg", *sys.argv[3:]]
    main()
    """
)


def _killed_before(
    which: str, nth: int, *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> int:
    """Run ``vtreg ARGS``, SIGKILLed just before its ``nth`` ``os.WHICH`` write call.

    ``which`` is ``*`` for any of them. Returns the exit status (``-SIGKILL``
    if the call was reached).
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VTREG_")}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, which, str(nth), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    return proc.returncode


def _visible(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


def _temporaries(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if n.startswith(".plugin.sig.")]


def _assert_a_consistent_pair(out: Path, passphrase: bytes | None = None) -> str:
    assert sorted(os.listdir(out)) == ["carol.key", "carol.pub"]  # no staging left behind
    private = read_private_key_file(out / "carol.key", passphrase)
    assert read_public_key_file(out / "carol.pub").keyid == private.keyid
    return private.keyid


# --- keygen ---


def test_keygen_killed_between_its_two_links_leaves_no_half_pair(tmp_path: Path) -> None:
    code = _killed_before(
        "link", 2, "keygen", "carol", "--out", tmp_path, env={"VTREG_PASSPHRASE": "first"}
    )

    assert code == -signal.SIGKILL
    assert _visible(tmp_path) == ["carol.pub"]  # the public half: never a lone secret
    again = ok(
        invoke_cli(
            "keygen", "carol", "--out", tmp_path, "--json", env={"VTREG_PASSPHRASE": "second"}
        )
    )
    assert _assert_a_consistent_pair(tmp_path, b"second") == again.json()["keyid"]


def test_keygen_killed_at_each_write_step_leaves_both_or_neither(tmp_path: Path) -> None:
    states = set()
    for step in itertools.count(1):
        out = tmp_path / f"kill-{step}"
        out.mkdir()
        if _killed_before("*", step, "keygen", "carol", "--out", out, "--unencrypted") == 0:
            break  # ran to the end: every step has been tried
        left = _visible(out)
        states.add(tuple(left))
        assert left in ([], ["carol.pub"], ["carol.key", "carol.pub"]), (step, left)
        before = {n: (out / n).read_bytes() for n in left}

        again = invoke_cli("keygen", "carol", "--out", out, "--unencrypted")

        if len(left) == 2:  # the pair was complete: it is kept, never overwritten
            one_line_error(again, 3, "refusing to overwrite")
            assert {n: (out / n).read_bytes() for n in left} == before
        else:  # seen as neither: a fresh pair is made
            ok(again)
        _assert_a_consistent_pair(out)
    assert states == {(), ("carol.pub",), ("carol.key", "carol.pub")}, states


def test_keygen_never_removes_a_file_it_did_not_make(tmp_path: Path) -> None:
    assert _killed_before("link", 2, "keygen", "carol", "--out", tmp_path, "--unencrypted")
    (tmp_path / "carol.pub").unlink()
    (tmp_path / "carol.pub").write_text("the user's own")  # another inode than the one staged

    again = invoke_cli("keygen", "carol", "--out", tmp_path, "--unencrypted")

    one_line_error(again, 3, r"refusing to overwrite .*carol\.pub")
    assert os.listdir(tmp_path) == ["carol.pub"]  # the staging directory went; the file stayed
    assert (tmp_path / "carol.pub").read_text() == "the user's own"


# --- sign ---


def test_sign_killed_just_before_its_rename_leaves_nothing_behind(
    plugin_factory: PluginFactory, keys: Path
) -> None:
    plugin = plugin_factory()
    ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    old, files = (plugin / "plugin.sig").read_bytes(), sorted(os.listdir(plugin))

    code = _killed_before("replace", 1, "sign", plugin, "--key", keys / "bob.key")

    assert code == -signal.SIGKILL
    assert (plugin / "plugin.sig").read_bytes() == old  # the old signature, intact
    assert sorted(os.listdir(plugin)) == files
    assert len(_temporaries(plugin.parent)) == 1  # what a kill -9 cannot help leaving
    ok(invoke_cli("sign", plugin, "--key", keys / "bob.key"))
    assert _temporaries(plugin.parent) == []
    assert sorted(os.listdir(plugin)) == files
    both: list[str | Path] = ["--key", keys / "alice.pub", "--key", keys / "bob.pub"]
    ok(invoke_cli("verify", plugin, *both, "--threshold", "2"))


def test_sign_killed_at_each_write_step_keeps_the_old_or_the_new_signature(
    plugin_factory: PluginFactory, keys: Path
) -> None:
    both: list[str | Path] = ["--key", keys / "alice.pub", "--key", keys / "bob.pub"]
    outcomes = set()
    for step in itertools.count(1):
        plugin = plugin_factory(dirname=f"kill-{step}", parent=keys.parent / f"p{step}")
        ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
        files = sorted(os.listdir(plugin))
        if _killed_before("*", step, "sign", plugin, "--key", keys / "bob.key") == 0:
            break
        assert sorted(os.listdir(plugin)) == files, step  # no stray file in signed content
        cosigned = invoke_cli("verify", plugin, *both, "--threshold", "2").code == 0
        outcomes.add(cosigned)
        if not cosigned:  # then it is the old signature, whole
            ok(invoke_cli("verify", plugin, "--key", keys / "alice.pub"))

        ok(invoke_cli("sign", plugin, "--key", keys / "bob.key"))

        assert _temporaries(plugin) == _temporaries(plugin.parent) == [], step
        ok(invoke_cli("verify", plugin, *both, "--threshold", "2"))
    assert outcomes == {False, True}


def test_a_killed_sign_inside_an_unwritable_parent_leaves_nothing_signed(
    plugin_factory: PluginFactory, keys: Path
) -> None:
    # The parent cannot take the temporary (chattr +i stops root too), so it
    # waits inside the plugin directory; the next sign must not sign it as content.
    plugin = plugin_factory()
    files = sorted(os.listdir(plugin))
    subprocess.run(["chattr", "+i", str(plugin.parent)], check=True)
    try:
        code = _killed_before("replace", 1, "sign", plugin, "--key", keys / "alice.key")
        assert code == -signal.SIGKILL
        assert len(_temporaries(plugin)) == 1

        ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
    finally:
        subprocess.run(["chattr", "-i", str(plugin.parent)], check=True)

    assert sorted(os.listdir(plugin)) == sorted([*files, "plugin.sig"])
    result = ok(invoke_cli("verify", plugin, "--key", keys / "alice.pub", "--json"))
    assert sorted(result.json()["plugin"]["files"]) == files  # the leftover was not signed


def test_a_live_writers_temporary_is_never_taken(plugin_factory: PluginFactory, keys: Path) -> None:
    # A sign paused just before its rename (stopped, not dead) keeps its lock:
    # another sign meanwhile must leave its temporary alone.
    plugin = plugin_factory()
    stall = _KILLER.replace(
        "os.kill(os.getpid(), signal.SIGKILL)", "os.kill(os.getpid(), signal.SIGSTOP)"
    )
    args = [sys.executable, "-c", stall, "replace", "1", "sign", str(plugin), "--key"]
    with subprocess.Popen([*args, str(keys / "alice.key")]) as paused:
        try:
            os.waitpid(paused.pid, os.WUNTRACED)  # stopped at the rename
            assert len(_temporaries(plugin.parent)) == 1

            ok(invoke_cli("sign", plugin, "--key", keys / "bob.key"))

            assert len(_temporaries(plugin.parent)) == 1
            paused.send_signal(signal.SIGCONT)
            assert paused.wait(timeout=60) == 0
        finally:
            paused.kill()
    assert _temporaries(plugin.parent) == []
    ok(invoke_cli("verify", plugin, "--key", keys / "alice.pub"))


@pytest.mark.parametrize("what", ["keygen", "sign"])
def test_a_run_that_is_not_killed_leaves_no_temporary(
    plugin_factory: PluginFactory, keys: Path, tmp_path: Path, what: str
) -> None:
    if what == "keygen":
        ok(invoke_cli("keygen", "carol", "--out", tmp_path / "keys", "--unencrypted"))
        assert not [n for n in os.listdir(tmp_path / "keys") if n.startswith(".")]
    else:
        plugin = plugin_factory()
        ok(invoke_cli("sign", plugin, "--key", keys / "alice.key"))
        assert _temporaries(plugin) == _temporaries(plugin.parent) == []
