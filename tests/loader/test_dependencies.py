"""A plugin's libraries are part of what was verified (DT_NEEDED, $ORIGIN, sealed copies).

Each plugin here is built from tests/plugins/needs_dependency.c, linked
against a library of its own from tests/plugins/dependency.c. In-process
loads stay in this test process, so every test gives its library a name of
its own (the dynamic loader matches libraries by name for the whole process).
The attacks that rely on the search path run in a child process, because
glibc reads ``LD_LIBRARY_PATH`` when a process starts.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import PLUGIN_SOURCES, ROOT, Compiler, c_string, write_manifest
from tests.loader.conftest import RecordingAudit, key_loader
from vtreg.loader import AbiError, LoadError
from vtreg.loader.dependencies import _ld_so_conf_dirs, system_library_dirs
from vtreg.verifier.errors import ContentError, PolicyError, UnsafeFileError
from vtreg.verifier.keys import SigningKey
from vtreg.verifier.signing import sign
from vtreg.verifier.tree import capture, copy_signed

ISOLATIONS = pytest.mark.parametrize("isolation", ["none", "process"])
_serial = itertools.count()


@dataclass
class Bundle:
    plugin: Path
    soname: str
    dependency: Path  # the built dependency, outside the plugin


MakeBundle = Callable[..., Bundle]


@pytest.fixture
def bundle(
    trusted: Path, compiler: Compiler, key: SigningKey, now: datetime, tmp_path: Path
) -> MakeBundle:
    """bundle(rpath="$ORIGIN", at="", soname=True, value=7, marker=None, sign=True) -> Bundle

    Builds the dependency (named libdepN.so, N unique in this process) and a
    plugin linked against it with the given run path, lays the dependency out
    at ``at`` inside the plugin (None: not bundled), and signs the plugin.
    """

    def factory(
        *,
        rpath: str | None = "$ORIGIN",
        at: str | None = "",
        soname: bool = True,
        value: int = 7,
        marker: Path | None = None,
        name: str | None = None,
        link_by_path: bool = False,
    ) -> Bundle:
        serial = next(_serial)
        libname = f"libdep{os.getpid()}x{serial}.so"
        defines = {"DEP_VALUE": str(value)}
        if marker is not None:
            defines["MARKER"] = c_string(str(marker))
        flags = (f"-Wl,-soname,{libname}",) if soname else ()
        built = compiler.build(PLUGIN_SOURCES / "dependency.c", defines=defines, flags=flags)
        linkdir = tmp_path / f"link{serial}" / "lib"
        linkdir.mkdir(parents=True)
        shutil.copyfile(built, linkdir / libname)
        plugin_name = name or f"needsdep{serial}"
        link = [f"lib/{libname}"] if link_by_path else [f"-L{linkdir}", f"-l:{libname}"]
        main = compiler.build(
            PLUGIN_SOURCES / "needs_dependency.c",
            defines={"PLUGIN_NAME": c_string(plugin_name), "PLUGIN_VERSION": c_string("1.0.0")},
            flags=(*link, *((f"-Wl,-rpath,{rpath}",) if rpath else ())),
            cwd=linkdir.parent,
        )
        plugin = trusted / plugin_name
        plugin.mkdir(mode=0o755)
        shutil.copyfile(main, plugin / f"lib{plugin_name}.so")
        write_manifest(plugin, name=plugin_name, description="test plugin", version="1.0.0")
        if at is not None:
            (plugin / at).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built, plugin / at / libname)
        (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
        return Bundle(plugin, libname, built)

    return factory


# --- plugins with libraries of their own load, from the verified bytes ---


@ISOLATIONS
def test_a_bundled_origin_dependency_loads_from_its_sealed_copy(
    bundle: MakeBundle, key: SigningKey, trusted: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    made = bundle(value=7)
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(made.plugin)
    try:
        assert plugin.execute().output == {"dep": 7}
    finally:
        plugin.close()
    allowed = audit_log.events[-1]
    assert allowed.outcome == "allowed"
    assert allowed.details["dependencies"] == [made.soname]


@ISOLATIONS
def test_a_dependency_in_a_subdirectory_of_the_plugin_loads(
    bundle: MakeBundle, key: SigningKey, trusted: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    made = bundle(rpath="$ORIGIN/lib", at="lib", value=9)
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(made.plugin)
    try:
        assert plugin.execute().output == {"dep": 9}
    finally:
        plugin.close()
    assert audit_log.events[-1].details["dependencies"] == [f"lib/{made.soname}"]


# --- what the dynamic loader would have found elsewhere is refused, before any code ran ---


def _refused(call: Callable[[], object], audit: RecordingAudit, pattern: str) -> PolicyError:
    with pytest.raises(PolicyError, match=pattern) as caught:
        call()
    assert caught.value.code == "dependency-untrusted"
    assert [e.outcome for e in audit.events] == ["refused"]  # never "allowed"
    assert audit.events[0].details["code"] == "dependency-untrusted"
    return caught.value


@ISOLATIONS
def test_a_dependency_found_nowhere_trusted_is_refused(
    bundle: MakeBundle, key: SigningKey, trusted: Path, audit_log: RecordingAudit, isolation: str
) -> None:
    made = bundle(at=None)  # linked against it, but the plugin does not carry it
    loader = key_loader(key, trusted, isolation, audit_log)
    error = _refused(lambda: loader.load_plugin(made.plugin), audit_log, "neither a signed file")
    assert error.subject is not None
    assert error.subject[0] == made.plugin.name


@ISOLATIONS
def test_a_run_path_outside_the_plugin_is_not_searched(
    bundle: MakeBundle, key: SigningKey, trusted: Path, audit_log: RecordingAudit, tmp_path: Path,
    isolation: str,
) -> None:  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    elsewhere.chmod(0o777)  # anyone may put a library here
    marker = tmp_path / "ran"
    made = bundle(rpath=str(elsewhere), at=None, marker=marker)
    shutil.copyfile(made.dependency, elsewhere / made.soname)
    loader = key_loader(key, trusted, isolation, audit_log)
    _refused(lambda: loader.load_plugin(made.plugin), audit_log, "neither a signed file")
    assert not marker.exists()


def test_a_signed_file_that_the_library_cannot_reach_is_named_in_the_refusal(
    bundle: MakeBundle, key: SigningKey, trusted: Path, audit_log: RecordingAudit
) -> None:
    made = bundle(rpath=None)  # carries libdep, but no $ORIGIN run path leads to it
    loader = key_loader(key, trusted, "none", audit_log)
    _refused(lambda: loader.load_plugin(made.plugin), audit_log, r"-rpath,'\$ORIGIN'")


def test_a_bundled_library_without_its_soname_is_refused(
    bundle: MakeBundle, key: SigningKey, trusted: Path, audit_log: RecordingAudit, tmp_path: Path
) -> None:
    # Without DT_SONAME, glibc could not match the plugin's need to the sealed copy
    # and would search the path for it instead.
    marker = tmp_path / "ran"
    made = bundle(soname=False, marker=marker)
    loader = key_loader(key, trusted, "none", audit_log)
    _refused(lambda: loader.load_plugin(made.plugin), audit_log, "-Wl,-soname")
    assert not marker.exists()


def test_a_dependency_named_by_a_relative_path_is_refused(
    bundle: MakeBundle, key: SigningKey, trusted: Path, audit_log: RecordingAudit
) -> None:
    # Linked by path without a DT_SONAME, the need is "lib/libdep.so": glibc would
    # open it relative to the working directory, whatever that holds.
    made = bundle(soname=False, link_by_path=True, at="lib")
    loader = key_loader(key, trusted, "none", audit_log)
    _refused(lambda: loader.load_plugin(made.plugin), audit_log, "open as given")


def test_a_library_whose_headers_cannot_be_read_is_an_abi_refusal(
    trusted: Path, key: SigningKey, now: datetime, audit_log: RecordingAudit, compiler: Compiler
) -> None:
    plugin = trusted / "notelf"
    plugin.mkdir(mode=0o755)
    whole = compiler.build(PLUGIN_SOURCES / "dependency.c").read_bytes()
    (plugin / "libnotelf.so").write_bytes(whole[:64])  # an ELF header, and nothing it points at
    write_manifest(plugin, name="notelf", description="x", version="1.0.0")
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)
    with pytest.raises(AbiError, match="not an ELF shared object the loader can read") as caught:
        key_loader(key, trusted, "none", audit_log).load_plugin(plugin)
    assert caught.value.subject is not None
    assert caught.value.subject[0] == "notelf"
    assert [e.outcome for e in audit_log.events] == ["refused"]


def test_two_plugins_with_different_libraries_of_one_name_share_no_process(
    bundle: MakeBundle, key: SigningKey, trusted: Path, audit_log: RecordingAudit, compiler: Compiler,
    now: datetime,
) -> None:  # fmt: skip
    first = bundle(value=1)
    # A second plugin carrying another library under the same name.
    second = trusted / "second"
    shutil.copytree(first.plugin, second)
    second.chmod(0o755)
    other = compiler.build(
        PLUGIN_SOURCES / "dependency.c",
        defines={"DEP_VALUE": "2"},
        flags=(f"-Wl,-soname,{first.soname}",),
    )
    shutil.copyfile(other, second / first.soname)
    (second / "plugin.sig").unlink()
    # Same name and version as the first: rename it to keep identities apart is not
    # needed, KeyPolicy trusts whatever the key signed.
    (second / "plugin.sig").write_bytes(sign(capture(second), key, at=now).envelope)
    loader = key_loader(key, trusted, "none", audit_log)
    loaded = loader.load_plugin(first.plugin)
    assert loaded.execute().output == {"dep": 1}
    with pytest.raises(LoadError, match="another plugin already loaded a different"):
        loader.load_plugin(second)
    assert audit_log.events[-1].outcome == "error"
    isolated = key_loader(key, trusted, "process", audit_log).load_plugin(second)
    try:
        assert isolated.execute().output == {"dep": 2}
    finally:
        isolated.close()
    again = loader.load_plugin(first.plugin)  # the very same bytes: shared, as glibc does
    assert again.execute().output == {"dep": 1}


# --- the attack from the review: an empty LD_LIBRARY_PATH element and a planted library ---

_CHILD = textwrap.dedent(
    """
    import ctypes, json, os, sys
    from vtreg.loader import KeyPolicy, PluginLoader
    from vtreg.verifier.keys import read_public_key_file
    from vtreg.verifier.errors import VerificationError
    plugin, trusted, key, isolation = sys.argv[1:5]
    if isolation == "bare":  # what opening the sealed copy without vtreg's plan does
        name = os.path.basename(plugin)
        fd = os.memfd_create("copy")
        os.write(fd, open(os.path.join(plugin, f"lib{name}.so"), "rb").read())
        lib = ctypes.CDLL(f"/proc/self/fd/{fd}")
        lib.dep_value.restype = ctypes.c_int
        print(json.dumps({"dep": lib.dep_value()}))
        sys.exit(0)
    policy = KeyPolicy([read_public_key_file(key)])
    loader = PluginLoader(policy, None, [trusted], isolation=isolation)
    try:
        print(json.dumps(loader.load_plugin(plugin).execute().output))
    except VerificationError as e:
        print(json.dumps({"refused": e.code}))
    """
)


def _run_child(
    plugin: Path, trusted: Path, pub: Path, isolation: str, cwd: Path, timeout: float = 120
) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env["LD_LIBRARY_PATH"] = ":/nonexistent"  # the empty element: the working directory
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(plugin), str(trusted), str(pub), isolation],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=True,
    )  # fmt: skip
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_planted_library_in_the_working_directory_never_runs(
    bundle: MakeBundle,
    key: SigningKey,
    trusted: Path,
    tmp_path: Path,
    compiler: Compiler,
    isolation: str,
) -> None:
    made = bundle(value=7)
    planted = tmp_path / "cwd"
    planted.mkdir()
    evil_marker = tmp_path / "evil-ran"
    evil = compiler.build(
        PLUGIN_SOURCES / "dependency.c",
        defines={"DEP_VALUE": "666", "MARKER": c_string(str(evil_marker))},
        flags=(f"-Wl,-soname,{made.soname}",),
    )
    shutil.copyfile(evil, planted / made.soname)
    pub = tmp_path / "key.pub"
    pub.write_bytes(key.public_key.to_file_bytes())

    # The attack is real here: the sealed copy opened bare picks the planted library.
    assert _run_child(made.plugin, trusted, pub, "bare", planted) == {"dep": 666}
    assert evil_marker.exists()
    evil_marker.unlink()

    assert _run_child(made.plugin, trusted, pub, isolation, planted) == {"dep": 7}
    assert not evil_marker.exists()


def test_a_planted_library_for_an_unbundled_need_is_refused_unrun(
    bundle: MakeBundle, key: SigningKey, trusted: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "planted-ran"
    made = bundle(at=None, marker=marker)
    planted = tmp_path / "cwd"
    planted.mkdir()
    shutil.copyfile(made.dependency, planted / made.soname)
    pub = tmp_path / "key.pub"
    pub.write_bytes(key.public_key.to_file_bytes())
    for isolation in ("none", "process"):
        result = _run_child(made.plugin, trusted, pub, isolation, planted)
        assert result == {"refused": "dependency-untrusted"}
        assert not marker.exists()


# --- the copy of a dependency holds exactly the signed bytes ---


def test_copy_signed_refuses_a_file_changed_after_the_capture(tmp_path: Path) -> None:
    plugin = tmp_path / "p"
    (plugin / "lib").mkdir(parents=True)
    (plugin / "lib" / "libx.so").write_bytes(b"signed bytes")
    tree = capture(plugin)
    signed = tree.files["lib/libx.so"]
    (plugin / "lib" / "libx.so").write_bytes(b"signed bytez")  # same length
    fd = os.open(plugin, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copy: list[bytes] = []

        class Sink:
            def write(self, data: memoryview) -> int:
                copy.append(bytes(data))
                return len(data)

        with pytest.raises(ContentError, match="changed after it was verified"):
            copy_signed(fd, "lib/libx.so", length=signed.size, digests=signed.digests, sink=Sink())
        (plugin / "lib" / "libx.so").write_bytes(b"signed bytes")
        copy.clear()
        copy_signed(fd, "lib/libx.so", length=signed.size, digests=signed.digests, sink=Sink())
        assert b"".join(copy) == b"signed bytes"
        # A directory swapped for a symlink on the way is not followed.
        (plugin / "lib").rename(plugin / "real")
        (plugin / "lib").symlink_to("real")
        with pytest.raises(UnsafeFileError):
            copy_signed(fd, "lib/libx.so", length=signed.size, digests=signed.digests, sink=Sink())
    finally:
        os.close(fd)


# --- what glibc would still search for: cycles, filters; and probes that must not search ---


def _world_writable(directory: Path) -> Path:
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)  # anyone may put a library here
    return directory


def _plant(compiler: Compiler, soname: str, marker: Path, *where: Path) -> None:
    """A library called ``soname`` whose constructor creates ``marker``, in each of ``where``."""
    evil = compiler.build(
        PLUGIN_SOURCES / "dependency.c",
        defines={"DEP_VALUE": "666", "MARKER": c_string(str(marker))},
        flags=(f"-Wl,-soname,{soname}",),
    )
    for directory in where:
        shutil.copyfile(evil, directory / soname)


def _sign_plugin(plugin: Path, name: str, key: SigningKey, now: datetime) -> None:
    write_manifest(plugin, name=name, description="test plugin", version="1.0.0")
    (plugin / "plugin.sig").write_bytes(sign(capture(plugin), key, at=now).envelope)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_dependency_cycle_is_refused_before_either_runs(
    trusted: Path, compiler: Compiler, key: SigningKey, now: datetime, tmp_path: Path,
    isolation: str,
) -> None:  # fmt: skip
    # libA needs libB, libB needs libA. Whichever is opened first, glibc searches for the
    # other (LD_LIBRARY_PATH, then libB's run path): a planted libA would run.
    serial = next(_serial)
    liba, libb = f"libcyca{os.getpid()}x{serial}.so", f"libcycb{os.getpid()}x{serial}.so"
    writable = _world_writable(tmp_path / "writable")
    links = tmp_path / f"links{serial}"
    links.mkdir()
    first = compiler.build(
        PLUGIN_SOURCES / "dependency.c", defines={"INNER": "1"}, flags=(f"-Wl,-soname,{liba}",)
    )
    shutil.copyfile(first, links / liba)
    inner = compiler.build(
        PLUGIN_SOURCES / "inner.c",
        flags=(
            f"-Wl,-soname,{libb}",
            "-Wl,--no-as-needed",
            f"-L{links}",
            f"-l:{liba}",
            f"-Wl,-rpath,$ORIGIN:{writable}",
        ),
    )
    shutil.copyfile(inner, links / libb)
    dep = compiler.build(
        PLUGIN_SOURCES / "dependency.c",
        defines={"INNER": "1"},
        flags=(f"-Wl,-soname,{liba}", f"-L{links}", f"-l:{libb}", "-Wl,-rpath,$ORIGIN"),
    )
    shutil.copyfile(dep, links / liba)
    name = f"cycle{serial}"
    main = compiler.build(
        PLUGIN_SOURCES / "needs_dependency.c",
        defines={"PLUGIN_NAME": c_string(name), "PLUGIN_VERSION": c_string("1.0.0")},
        flags=(f"-L{links}", f"-l:{liba}", "-Wl,-rpath,$ORIGIN"),
    )
    plugin = trusted / name
    plugin.mkdir(mode=0o755)
    for built, target in ((main, f"lib{name}.so"), (dep, liba), (inner, libb)):
        shutil.copyfile(built, plugin / target)
    _sign_plugin(plugin, name, key, now)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    marker = tmp_path / "planted-ran"
    _plant(compiler, liba, marker, cwd, writable)
    pub = tmp_path / "key.pub"
    pub.write_bytes(key.public_key.to_file_bytes())
    answer = _run_child(plugin, trusted, pub, isolation, cwd)
    assert not marker.exists()
    assert answer == {"refused": "dependency-untrusted"}


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_library_that_needs_itself_loads(
    bundle: MakeBundle, trusted: Path, compiler: Compiler, key: SigningKey, now: datetime,
    tmp_path: Path, audit_log: RecordingAudit, isolation: str,
) -> None:  # fmt: skip
    # glibc finds an object's need of its own DT_SONAME in the object itself.
    made = bundle(value=5)
    name = made.plugin.name
    library = made.plugin / f"lib{name}.so"
    links = tmp_path / "self"
    links.mkdir()
    shutil.copyfile(made.dependency, links / made.soname)
    main = compiler.build(
        PLUGIN_SOURCES / "needs_dependency.c",
        defines={"PLUGIN_NAME": c_string(name), "PLUGIN_VERSION": c_string("1.0.0")},
        flags=(
            f"-Wl,-soname,lib{name}.so",
            f"-L{links}",
            f"-l:{made.soname}",
            "-Wl,-rpath,$ORIGIN",
        ),
    )
    shutil.copyfile(main, links / f"lib{name}.so")
    itself = compiler.build(
        PLUGIN_SOURCES / "needs_dependency.c",
        defines={"PLUGIN_NAME": c_string(name), "PLUGIN_VERSION": c_string("1.0.0")},
        flags=(
            f"-Wl,-soname,lib{name}.so", "-Wl,--no-as-needed", f"-L{links}", f"-l:{made.soname}",
            f"-l:lib{name}.so",
            "-Wl,-rpath,$ORIGIN",
        ),
    )  # fmt: skip
    shutil.copyfile(itself, library)
    _sign_plugin(made.plugin, name, key, now)
    plugin = key_loader(key, trusted, isolation, audit_log).load_plugin(made.plugin)
    try:
        assert plugin.execute().output == {"dep": 5}
    finally:
        plugin.close()
    assert audit_log.events[-1].details["dependencies"] == [made.soname]


@pytest.mark.parametrize("isolation", ["none", "process"])
@pytest.mark.parametrize("kind", ["auxiliary", "filter"])
def test_a_filter_library_is_refused_unrun(
    trusted: Path, compiler: Compiler, key: SigningKey, now: datetime, tmp_path: Path,
    kind: str, isolation: str,
) -> None:  # fmt: skip
    # DT_AUXILIARY and DT_FILTER name objects that glibc loads, searching for them, as it
    # does for DT_NEEDED: a filter's planted "filtee" would run.
    serial = next(_serial)
    filtee = f"libfiltee{os.getpid()}x{serial}.so"
    writable = _world_writable(tmp_path / "writable")
    name = f"filter{serial}"
    main = compiler.build(
        PLUGIN_SOURCES / "basic.c",
        defines={"PLUGIN_NAME": c_string(name), "PLUGIN_VERSION": c_string("1.0.0")},
        flags=(f"-Wl,{'-f' if kind == 'auxiliary' else '-F'},{filtee}", f"-Wl,-rpath,{writable}"),
    )
    plugin = trusted / name
    plugin.mkdir(mode=0o755)
    shutil.copyfile(main, plugin / f"lib{name}.so")
    _sign_plugin(plugin, name, key, now)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    marker = tmp_path / "planted-ran"
    _plant(compiler, filtee, marker, cwd, writable)
    pub = tmp_path / "key.pub"
    pub.write_bytes(key.public_key.to_file_bytes())
    answer = _run_child(plugin, trusted, pub, isolation, cwd)
    assert not marker.exists()
    assert answer == {"refused": "dependency-untrusted"}


def test_a_need_whose_name_is_too_long_for_a_file_is_refused(
    trusted: Path, compiler: Compiler, key: SigningKey, now: datetime, audit_log: RecordingAudit,
    tmp_path: Path,
) -> None:  # fmt: skip
    # A DT_NEEDED longer than a file name may be: looking for it in the system
    # directories fails with ENAMETOOLONG, which must be a refusal, not an OSError.
    soname = "lib" + "x" * 300 + ".so"
    links = tmp_path / "long"
    links.mkdir()
    shutil.copyfile(
        compiler.build(PLUGIN_SOURCES / "dependency.c", flags=(f"-Wl,-soname,{soname}",)),
        links / "liblong.so",
    )
    main = compiler.build(
        PLUGIN_SOURCES / "needs_dependency.c",
        defines={"PLUGIN_NAME": c_string("long"), "PLUGIN_VERSION": c_string("1.0.0")},
        flags=(f"-L{links}", "-l:liblong.so"),
    )
    plugin = trusted / "long"
    plugin.mkdir(mode=0o755)
    shutil.copyfile(main, plugin / "liblong.so")
    _sign_plugin(plugin, "long", key, now)
    loader = key_loader(key, trusted, "none", audit_log)
    _refused(lambda: loader.load_plugin(plugin), audit_log, "neither a signed file")


# --- asking whether the process holds a name must not search the path for it ---


@pytest.mark.parametrize("bundled", [True, False])
def test_a_fifo_named_like_a_dependency_does_not_hang_the_load(
    bundle: MakeBundle, key: SigningKey, trusted: Path, tmp_path: Path, bundled: bool
) -> None:
    # dlopen(name, RTLD_NOLOAD) searches LD_LIBRARY_PATH for a name it does not hold,
    # and opening a FIFO found there waits for a writer forever.
    made = bundle(value=7, at="" if bundled else None)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.mkfifo(cwd / made.soname)
    pub = tmp_path / "key.pub"
    pub.write_bytes(key.public_key.to_file_bytes())
    answer = _run_child(made.plugin, trusted, pub, "none", cwd, timeout=60)
    assert answer == ({"dep": 7} if bundled else {"refused": "dependency-untrusted"})


def test_a_planted_link_to_a_loaded_library_does_not_stand_in_for_a_dependency(
    bundle: MakeBundle, key: SigningKey, trusted: Path, tmp_path: Path
) -> None:
    # A symlink named like the dependency, found on the search path, to a library the
    # host holds (libc): the RTLD_NOLOAD probe answered "held" and gave libc that name,
    # so the plugin was bound to libc, and its first call ended the host
    # ("symbol lookup error").
    made = bundle(value=7)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    libc = next(
        Path(d) / "libc.so.6" for d in system_library_dirs() if (Path(d) / "libc.so.6").exists()
    )
    (cwd / made.soname).symlink_to(libc.resolve())
    pub = tmp_path / "key.pub"
    pub.write_bytes(key.public_key.to_file_bytes())
    assert _run_child(made.plugin, trusted, pub, "none", cwd) == {"dep": 7}


def test_ld_so_conf_includes_are_read_as_ldconfig_reads_them(tmp_path: Path) -> None:
    # A relative include is relative to the including file's directory (Fedora's
    # ld.so.conf says "include ld.so.conf.d/*.conf"); read from the file's parent it
    # matched ld.so.conf itself and every sibling *.conf, each including the rest again.
    conf = tmp_path / "ld.so.conf"
    conf.write_text("include conf.d/*.conf\n/opt/top\n")
    (tmp_path / "other.conf").write_text("/opt/not-a-library-directory\n")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("/opt/a\ninclude ../ld.so.conf\ninclude\t*.conf\n")
    (tmp_path / "conf.d" / "b.conf").write_text("/opt/b  # a comment\n")
    assert _ld_so_conf_dirs(conf) == [Path("/opt/a"), Path("/opt/b"), Path("/opt/top")]


def test_another_plugins_library_is_not_the_hosts_own(
    trusted: Path, compiler: Compiler, key: SigningKey, now: datetime, tmp_path: Path,
    audit_log: RecordingAudit,
) -> None:  # fmt: skip
    # Plugin A's own library is called libshared...so (DT_SONAME); plugin B needs a
    # libshared...so and carries none. Loaded in one process after A, B's need was taken
    # for the host's own, and B was bound to A's code.
    serial = next(_serial)
    soname = f"libshared{os.getpid()}x{serial}.so"
    holder = trusted / f"holder{serial}"
    holder.mkdir(mode=0o755)
    shutil.copyfile(
        compiler.build(
            PLUGIN_SOURCES / "dependency.c",
            defines={"DEP_VALUE": "3"},
            flags=(f"-Wl,-soname,{soname}",),
        ),
        tmp_path / soname,
    )
    own = compiler.build(
        PLUGIN_SOURCES / "basic.c",
        defines={"PLUGIN_NAME": c_string(holder.name), "PLUGIN_VERSION": c_string("1.0.0")},
        flags=(f"-Wl,-soname,{soname}",),
    )
    shutil.copyfile(own, holder / f"lib{holder.name}.so")
    _sign_plugin(holder, holder.name, key, now)
    needy = trusted / f"needy{serial}"
    needy.mkdir(mode=0o755)
    main = compiler.build(
        PLUGIN_SOURCES / "needs_dependency.c",
        defines={"PLUGIN_NAME": c_string(needy.name), "PLUGIN_VERSION": c_string("1.0.0")},
        flags=(f"-L{tmp_path}", f"-l:{soname}"),
    )
    shutil.copyfile(main, needy / f"lib{needy.name}.so")
    _sign_plugin(needy, needy.name, key, now)
    loader = key_loader(key, trusted, "none", audit_log)
    loader.load_plugin(holder)
    audit_log.events.clear()
    _refused(lambda: loader.load_plugin(needy), audit_log, "neither a signed file")
