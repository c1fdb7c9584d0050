"""``PluginLoader``: VT Code's loader, with verification before anything is opened.

``load_plugin(path)``:

1. resolves the path and refuses it unless it lies inside a trusted directory
   (canonicalised, compared component by component, so ``..``, symlinks that
   escape and ``/trusted-evil`` vs ``/trusted`` are refused), and unless the
   trusted and plugin directories are writable by their owner only;
2. reads plugin.sig alone and checks it against the trust state the
   :class:`~loader.protocols.TrustPolicy` gives for it: enough trusted keys
   signed, for this platform and not expired. Nothing else of the directory
   is read before this holds;
3. reads exactly the files the authenticated statement names, none past its
   signed length, the signed library written as hashed into a private sealed
   copy (:mod:`loader.capture`), and decides on exactly those bytes with the
   pure core (signature, trust, revocation, rollback);
4. resolves every library the signed library needs to a sealed copy of a
   signed file of the plugin, a library the host holds, or a root-only system
   library (:mod:`loader.dependencies`), and refuses anything else;
5. only then hands the sealed copies, never the original paths, to the dynamic
   loader (here or in an isolated child), dependencies first, checks ABI v1 and
   that the library's own metadata names the signed name and version;
6. reports the load, or the refusal and why, to the
   :class:`~loader.protocols.AuditSink`.

A refused library is never opened by the dynamic loader, so none of its code,
constructors included, runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import stat
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from vtreg.verifier.decision import authenticate, decide
from vtreg.verifier.envelope import PREDICATE_TYPE_V1
from vtreg.verifier.errors import (
    FormatError,
    NotFoundError,
    PolicyError,
    SignatureError,
    UnsafeFileError,
    UsageError,
    VerificationError,
    VtregError,
)
from vtreg.verifier.files import read_regular_at
from vtreg.verifier.keys import PublicKey
from vtreg.verifier.layout import MANIFEST_FILE, MAX_MANIFEST_BYTES, SIGNATURE_FILE
from vtreg.verifier.manifest import claimed_identity
from vtreg.verifier.platforms import host_platform, library_for
from vtreg.verifier.platforms import library_filename as platform_library_filename
from vtreg.verifier.signatures import SignedStatement, VerifiedPlugin
from vtreg.verifier.text import path_text, printable
from vtreg.verifier.tree import capture, copy_signed, read_signature
from vtreg.verifier.trust import TrustedKey, TrustState

from .abi import (
    DLOPEN_MODE,
    PLUGIN_ABI_VERSION,
    AbiError,
    Library,
    LoadError,
    PluginCallError,
    RawLibrary,
    held_by_process,
    unload,
)
from .capture import SealedFile
from .defaults import expand_home, vtcode_trusted_dirs
from .dependencies import Bundled, Plan, plan_dependencies
from .discovery import Discovery, Skipped
from .isolation import DEFAULT_MEMORY_LIMIT, DEFAULT_TIMEOUT, IsolatedLibrary
from .native import Instance, NativePlugin, PluginMetadata, decode_metadata
from .protocols import AuditEvent, AuditSink, TrustPolicy, raised_by_audit

__all__ = ["Isolation", "KeyPolicy", "PluginLoader"]

Isolation = Literal["none", "process"]
# A list or tuple, never a bare str (which is a Sequence[str] of one-letter paths, "/"
# among them). list is invariant, so the usual element types are spelled out.
TrustedDirs = (
    list[str] | list[Path] | list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...]
)
_MIN_MEMORY_LIMIT = 1 << 20  # below a MiB, memory_limit was surely meant as MiB, not bytes

log = logging.getLogger(__name__)


_next_fd = 0
# Libraries loaded into this process, by content digest: a second load of the same
# verified content shares the instance (as dlopen's reference count does for VT Code).
_loaded_here: dict[str, Instance] = {}
_loaded_lock = threading.Lock()


def _check_identity(
    version: int, metadata_bytes: bytes, verified: VerifiedPlugin
) -> PluginMetadata:
    """The library's metadata, once its ABI version and its name and version are as signed."""
    label = f"{verified.name} {verified.version}"
    if version != PLUGIN_ABI_VERSION:
        raise AbiError(f"{label} implements ABI version {version}, expected {PLUGIN_ABI_VERSION}")
    metadata = decode_metadata(metadata_bytes, label)
    if (metadata.name, metadata.version) != (verified.name, verified.version):
        raise AbiError(
            f"{label}: the library calls itself {metadata.name} {metadata.version}, "
            f"but {verified.name} {verified.version} was signed "
            "(VT Code does not compare them; vtreg refuses)"
        )
    return metadata


def _unique_path(image: SealedFile, label: str) -> str:
    """A /proc/self/fd path for ``image`` that no loaded object is known by.

    Descriptor numbers are taken upwards from the last one used, so a path
    is rarely offered twice; the probe catches the cases where it is. Once
    every number in the range names a library already loaded (a long-lived
    host), or no descriptor is left, the load cannot go on: a LoadError.
    """
    global _next_fd

    ceiling = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 16
    tries = max(ceiling - 64, 1)  # each number in the range once
    fresh = True  # the number memfd_create gave is usually one a closed image had
    while fresh or held_by_process(image.path):
        if tries == 0:
            raise LoadError(
                f"{label}: every descriptor number from 64 to {ceiling - 1} names a library "
                "already loaded in this process; raise RLIMIT_NOFILE or use isolation"
            )
        if _next_fd < 64 or _next_fd >= ceiling:
            _next_fd = 64  # wrap around: the probe skips numbers that still name a library
        try:
            image.move_fd(_next_fd)
        except OSError as e:
            raise LoadError(f"{label}: no file descriptor for its sealed copy: {e.strerror}") from e
        _next_fd = image.fd + 1
        fresh = False
        tries -= 1
    return image.path


class KeyPolicy:
    """A :class:`TrustPolicy` for hosts without a registry: signatures by given keys suffice."""

    def __init__(self, keys: Iterable[TrustedKey | PublicKey], *, threshold: int = 1) -> None:
        if isinstance(keys, str | bytes | os.PathLike):
            raise UsageError(
                "KeyPolicy takes public keys, not a path: KeyPolicy([read_public_key_file(path)])"
            )
        keys = list(keys)
        wrong = [k for k in keys if not isinstance(k, TrustedKey | PublicKey)]
        if wrong:
            raise UsageError(
                f"KeyPolicy takes PublicKey or TrustedKey values, not {type(wrong[0]).__name__}"
            )
        if not 1 <= threshold <= max(len(keys), 1):
            raise UsageError(f"threshold {threshold} cannot be met by {len(keys)} key(s)")
        self.state = TrustState.of_keys(keys, threshold=threshold)

    def state_for(self, envelope: bytes | None) -> TrustState:
        """The same state for every plugin: signed by ``threshold`` of the keys, nothing more."""
        del envelope
        return self.state


class _Unrecorded(Exception):
    """The audit sink's own error on recording a decision (load_plugin raises ``error``
    itself: this never leaves it)."""

    def __init__(self, error: VtregError) -> None:
        super().__init__(str(error))
        self.error = error


class _NullAudit:
    def record(self, event: AuditEvent) -> None:
        del event


class _InProcess:
    """A library loaded into this process, and the dependencies it made us open."""

    isolated = False

    def __init__(self) -> None:
        self.raw: RawLibrary | None = None
        self._handles: list[Library] = []  # in the order opened

    def open(self, path: str, label: str, what: str) -> Library:
        try:
            handle = Library(path, DLOPEN_MODE)
        except OSError as e:
            raise AbiError(f"{label}: the dynamic loader refused {what}: {e}") from e
        self._handles.append(handle)
        return handle

    def call(self, context_json: bytes, timeout: float | None) -> bytes:
        del timeout  # NativePlugin refuses timeouts for in-process plugins
        if self.raw is None:  # pragma: no cover - loaded before any NativePlugin exists
            raise PluginCallError("the plugin is not loaded")
        return self.raw.execute_bytes(context_json)

    def close(self) -> None:
        """Unload: ``dlclose`` each handle, last opened first. glibc unmaps a library once
        nothing (no other plugin, no library that needs it) holds it any more."""
        self.raw = None
        while self._handles:
            unload(self._handles.pop())


def _check_loadable(signed: SignedStatement) -> tuple[str, str]:
    """Refuse, before reading the directory, what could not be loaded here anyway.

    Returns the platform and library this host loads, of those signed.
    """
    predicate = signed.predicate
    label = f"{predicate.name} {predicate.version}"
    subject = (predicate.name, predicate.version, None)
    here = host_platform()
    chosen = library_for(predicate.platform_libraries, here)
    if chosen is None:
        raise PolicyError(
            f"{label} has no library for this host ({here}); its signed libraries are for "
            f"{', '.join(predicate.platforms)}",
            code="wrong-platform",
            keyids=signed.signature_keyids,
            subject=subject,
        )
    if signed.statement.lengths is None:
        # Without signed lengths nothing bounds what the library's copy may cost.
        raise FormatError(
            f"{label} was signed in the {PREDICATE_TYPE_V1} format, which records no file "
            "lengths; the loader needs them: re-sign it with `vtreg sign --fresh`",
            keyids=signed.signature_keyids,
            subject=subject,
        )
    return chosen


# DT_SONAME -> signed sha256 of each plugin library (bundled, or a plugin's own) this
# process has loaded from a sealed copy: the dynamic loader matches later plugins'
# needs against them, and none of them is the host's own.
_bundled_here: dict[str, str] = {}


def _nothing_loaded(name: str) -> bool:
    del name
    return False


def _bundled_by_a_plugin(name: str) -> str | None:
    """The digest of the plugin-bundled library this process holds as ``name``, if any
    (an entry whose library has since been unloaded is forgotten)."""
    digest = _bundled_here.get(name)
    if digest is not None and not held_by_process(name):
        _bundled_here.pop(name, None)
        return None
    return digest


def _held_by_host(name: str) -> bool:
    """Whether the host holds ``name`` itself (another plugin's bundled copy does not count)."""
    return _bundled_by_a_plugin(name) is None and held_by_process(name)


def _check_no_clash(plan: Plan, verified: VerifiedPlugin) -> None:
    """Refuse to load in this process what the dynamic loader would match to another
    plugin's bundled library instead of this plugin's own choice."""
    for step in plan.steps:
        theirs = _bundled_by_a_plugin(step.soname)
        if theirs is None:
            continue
        if isinstance(step, Bundled) and verified.files[step.rel].get("sha256") == theirs:
            continue  # the very same bytes: sharing them is what glibc does anyway
        raise LoadError(
            f"{verified.name} {verified.version} needs {step.soname}, and another plugin "
            f"already loaded a different {step.soname} into this process, which the dynamic "
            "loader would use instead; load it with isolation"
        )


def _open_dependencies(
    backend: _InProcess,
    plan: Plan,
    images: Mapping[str, SealedFile],
    verified: VerifiedPlugin,
    label: str,
) -> None:
    """Open each planned dependency, the plugin's own from their sealed copies, unless the
    process already holds it under that name."""
    for step in plan.steps:
        if held_by_process(step.soname):
            continue
        if isinstance(step, Bundled):
            backend.open(_unique_path(images[step.rel], label), label, step.soname)
            _bundled_here[step.soname] = verified.files[step.rel]["sha256"]
        else:
            backend.open(step.path, label, step.soname)


def _peek(dir_fd: int, name: str, limit: int) -> bytes | None:
    """A small top-level file's first ``limit`` bytes (unverified), or None if it is missing
    or not regular; the capture that follows refuses such files properly."""
    return read_regular_at(dir_fd, name, lambda fd: os.read(fd, limit) if limit else b"")


def _canonical(given: Path) -> tuple[Path, os.stat_result | None]:
    """``given`` with every symlink resolved, and its stat (None if it does not exist).

    On Linux the kernel resolves it (:func:`_kernel_resolved`); elsewhere, or when
    that does not answer, realpath and a stat.
    """
    resolved = _kernel_resolved(given)
    if resolved is not None:
        return resolved
    canonical = Path(os.path.realpath(given))
    try:
        return canonical, canonical.stat()
    except OSError:
        return canonical, None


def _kernel_resolved(given: Path) -> tuple[Path, os.stat_result] | None:
    """One ``O_PATH`` open and a readlink of its /proc/self/fd entry, in place of
    realpath's lstat of every component; None where there is no O_PATH or /proc."""
    o_path = getattr(os, "O_PATH", None)
    if o_path is None:
        return None
    try:
        fd = os.open(given, o_path | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        target, info = os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd)  # noqa: PTH115 - a str, as the kernel gives it
    except OSError:
        return None
    finally:
        os.close(fd)
    if not target.startswith("/") or target.endswith(" (deleted)"):
        return None
    return Path(target), info


def _inside(path: Path, directory: Path) -> bool:
    """Component-wise containment: /trusted/x is inside /trusted; /trusted-evil is not.

    The trusted directory itself counts, as in VT Code (``Path::starts_with``):
    a plugin.json may sit at the trusted root.
    """
    return path.parts[: len(directory.parts)] == directory.parts


def _check_arguments(
    trust: object,
    audit: object,
    trusted_dirs: object,
    isolation: object,
    timeout: object,
    memory_limit: object,
) -> None:
    """Refuse, at construction, what would otherwise fail (or silently mislead) at load."""
    if not isinstance(trust, TrustPolicy):
        raise UsageError(f"trust must be a TrustPolicy (a Registry or KeyPolicy), not {trust!r}")
    if audit is not None and not isinstance(audit, AuditSink):
        raise UsageError(f"audit must be an AuditSink (a Registry) or None, not {audit!r}")
    if isinstance(trusted_dirs, str | bytes | os.PathLike) or not isinstance(
        trusted_dirs, list | tuple
    ):
        raise UsageError(
            f"trusted_dirs must be a list of directories, not {trusted_dirs!r}: "
            f"write [{trusted_dirs!r}] for one directory"
        )
    if isolation not in ("none", "process"):
        raise UsageError(f"isolation must be 'none' or 'process', not {isolation!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, int):
        raise UsageError(f"memory_limit must be a number of bytes, not {memory_limit!r}")
    if memory_limit < 0 or 0 < memory_limit < _MIN_MEMORY_LIMIT:
        raise UsageError(
            f"memory_limit is in bytes (512 << 20 is 512 MiB; 0: no limit), and "
            f"{memory_limit} bytes cannot hold a plugin"
        )


class PluginLoader:
    """Discovers and loads verified native plugins from trusted directories.

    Args:
        trust: decides whether a plugin may be loaded (``registry.Registry``,
            or :class:`KeyPolicy`).
        audit: receives every load and refusal (``registry.Registry``). Always
            given: ``None`` says, in so many words, that nothing is recorded.
        trusted_dirs: a list (or tuple) of directories plugins may be loaded
            from; a bare ``str`` or path is refused, not read as characters.
        isolation: ``"none"`` (load into this process, like VT Code) or
            ``"process"`` (a child process per plugin, with a per-call
            ``timeout`` in seconds and a ``memory_limit`` in **bytes** on what
            the plugin may allocate, e.g. ``512 << 20``; 0: no limit).
        workspace: also trust VT Code's five default directories for this
            workspace (:func:`loader.defaults.vtcode_trusted_dirs`), after
            ``trusted_dirs``.

    Raises:
        UsageError: any of these is not what it should be.
    """

    def __init__(
        self,
        trust: TrustPolicy,
        audit: AuditSink | None,
        trusted_dirs: TrustedDirs = (),
        *,
        isolation: Isolation = "none",
        timeout: float = DEFAULT_TIMEOUT,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        workspace: str | os.PathLike[str] | None = None,
    ) -> None:
        _check_arguments(trust, audit, trusted_dirs, isolation, timeout, memory_limit)
        if workspace is not None and not isinstance(workspace, str | os.PathLike):
            raise UsageError(f"workspace must be a directory path, not {workspace!r}")
        self.trust = trust
        self.audit: AuditSink = audit if audit is not None else _NullAudit()
        self.isolation: Isolation = isolation
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._trusted: list[Path] = []
        for directory in trusted_dirs:
            self.add_trusted_dir(directory)
        if workspace is not None:
            for directory in vtcode_trusted_dirs(workspace):
                self.add_trusted_dir(directory)
        self._isolated: dict[str, Instance] = {}  # this loader's workers, by content digest
        self._handed_out: set[NativePlugin] = set()
        self._open_lock = threading.Lock()
        self._closed = False

    # --- lifetime ---

    def close(self) -> None:
        """Close every plugin this loader handed out and not closed yet (stopping isolated
        workers, unloading libraries nothing else holds); no load may follow."""
        self._closed = True
        with self._open_lock:
            still_open = list(self._handed_out)
        for plugin in still_open:
            plugin.close()

    def __enter__(self) -> PluginLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _instances(self, isolated: bool) -> dict[str, Instance]:
        return self._isolated if isolated else _loaded_here

    def _forget(self, instance: Instance) -> None:
        """Called as ``instance`` is unloaded: a later load of its content loads afresh."""
        with _loaded_lock:
            table = self._instances(instance.backend.isolated)
            for digest, known in list(table.items()):
                if known is instance:
                    del table[digest]

    def _handle(
        self, instance: Instance, directory: Path, verified: VerifiedPlugin
    ) -> NativePlugin:
        plugin = NativePlugin(
            instance=instance, path=directory, verified=verified, on_close=self._discard
        )
        with self._open_lock:
            self._handed_out.add(plugin)
        return plugin

    def _discard(self, plugin: NativePlugin) -> None:
        with self._open_lock:
            self._handed_out.discard(plugin)

    def _share(self, directory: Path, verified: VerifiedPlugin) -> NativePlugin | None:
        """Another NativePlugin over an instance of the same content, if one is loaded."""
        with _loaded_lock:
            instance = self._instances(self.isolation == "process").get(verified.content_digest)
            if instance is None:
                return None
            try:
                return self._handle(instance, directory, verified)
            except ValueError:  # being unloaded right now: load afresh
                return None

    # --- trusted directories ---

    def add_trusted_dir(self, path: str | os.PathLike[str]) -> PluginLoader:
        """Trust a directory (canonicalised now: later symlink changes do not move it)."""
        canonical = Path(os.path.realpath(expand_home(path)))
        if canonical not in self._trusted:
            self._trusted.append(canonical)
        return self

    @property
    def trusted_dirs(self) -> tuple[Path, ...]:
        """The directories plugins may be loaded from, resolved, in the order given."""
        return tuple(self._trusted)

    @staticmethod
    def library_filename(name: str) -> str:
        """The library file VT Code loads for plugin ``name`` on this platform."""
        return platform_library_filename(name)

    @staticmethod
    def _check_writers(path: Path, what: str, info: os.stat_result | None = None) -> os.stat_result:
        if info is None:
            info = path.stat()
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafeFileError(
                f"{what} {path} is writable by group or others (mode "
                f"{stat.filemode(info.st_mode)}); only its owner may write it "
                "(VT Code only warns; vtreg refuses)"
            )
        if info.st_uid not in (os.geteuid(), 0):
            raise UnsafeFileError(
                f"{what} {path} belongs to uid {info.st_uid}, not to us or root "
                "(vtreg refuses what another user could replace)"
            )
        return info

    def _resolve(self, path: str | os.PathLike[str]) -> tuple[Path, os.stat_result]:
        """The canonical plugin directory (and its stat), or a refusal saying why not.

        The directory may be a trusted directory itself (plugin.json at the root).
        """
        given = expand_home(path)
        canonical, info = _canonical(given)
        home = next((t for t in self._trusted if _inside(canonical, t)), None)
        if home is None:
            trusted = ", ".join(map(str, self._trusted)) or "none configured"
            raise UnsafeFileError(
                f"plugin path {given} resolves to {canonical}, which is not inside a trusted "
                f"directory ({trusted})"
            )
        if info is None or not stat.S_ISDIR(info.st_mode):
            raise UnsafeFileError(f"{canonical} is not a plugin directory")
        self._check_writers(home, "trusted directory")
        # Every directory on the way down, too: whoever may write one could swap the rest.
        for depth in range(len(home.parts) + 1, len(canonical.parts)):
            self._check_writers(Path(*canonical.parts[:depth]), "directory")
        return canonical, self._check_writers(canonical, "plugin directory", info)

    # --- loading ---

    def load_plugin(self, path: str | os.PathLike[str]) -> NativePlugin:
        """Verify and load the plugin in ``path``; see the module docstring.

        Raises:
            VerificationError: refused (path, permissions, signature, trust,
                platform, ABI or metadata); audited, and nothing was loaded.
            VtregError: could not decide (unreadable directory, registry down, an
                isolated plugin that crashed or hung while loading); audited as an
                error where the audit sink can still be reached.
        """
        if self._closed:
            raise UsageError("this PluginLoader was closed; make a new one to load plugins")
        at = datetime.now(UTC)
        label = path_text(path)
        manifest: list[bytes | None] = [None]  # plugin.json as found, to label a refusal
        try:
            directory, info = self._resolve(path)
            label = path_text(directory)
            return self._load(directory, info, at, manifest)
        except VerificationError as e:
            event = AuditEvent.refusal(
                "plugin.load", e, manifest=manifest[0], details={"path": label}
            )
            self.audit.record(event)
            raise
        except _Unrecorded as e:
            # The audit sink itself refused the decision: writing to it again would
            # only wait (a held lock) and fail (a read-only registry) a second time.
            raise e.error from e.error.__cause__
        except VtregError as e:
            if not raised_by_audit(e, self.audit):  # else: one wait, one line, as above
                self._record_error(label, e, manifest[0])
            raise

    def _record_error(self, label: str, error: VtregError, manifest: bytes | None) -> None:
        """Record a load that could not be decided, if the audit sink itself is reachable."""
        name, version = claimed_identity(manifest)
        event = AuditEvent(
            "plugin.load",
            "error",
            plugin=name,
            version=version,
            reason=printable(str(error)),
            details={"path": label, "error": type(error).__name__, "unverified_name": True},
        )
        try:
            self.audit.record(event)
        except VtregError as audit_error:
            log.warning(
                "could not audit a failed load of %s: %s",
                printable(label),
                printable(str(audit_error)),
            )

    def _load(
        self, directory: Path, info: os.stat_result, at: datetime, manifest: list[bytes | None]
    ) -> NativePlugin:
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise NotFoundError(f"cannot open plugin directory {directory}: {e.strerror}") from e
        images: dict[str, SealedFile] = {}
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                raise UnsafeFileError(f"{directory} was replaced while it was being opened")
            verified, lengths = self._authenticate_and_capture(directory, fd, images, at)
            shared = self._share(directory, verified)
            if shared is not None:
                return self._record_shared(shared, directory)
            plan = self._plan_dependencies(fd, images, verified, lengths)
            # The decision is on record before any of the plugin's code runs (its ELF
            # constructors run inside dlopen): a decision that cannot be recorded
            # raises here, and nothing is loaded. An ABI refusal after dlopen is
            # recorded as a second event, by load_plugin.
            extra = {"dependencies": [step.rel for step in plan.bundled]} if plan.bundled else {}
            self._record_allowed(verified, directory, **extra)
            return self._open(images, directory, verified, plan)
        except VtregError as e:
            # A refusal before the signatures checked out is labelled with plugin.json as
            # found (read only then); a later one names the authenticated plugin.
            if getattr(e, "subject", None) is None:
                with contextlib.suppress(OSError):
                    manifest[0] = _peek(fd, MANIFEST_FILE, MAX_MANIFEST_BYTES)
            raise
        finally:
            os.close(fd)
            for image in images.values():
                image.close()  # a loaded library keeps its mapping, not the file

    def _record_allowed(self, verified: VerifiedPlugin, directory: Path, **extra: object) -> None:
        """Put the allowed decision on record (raises :class:`_Unrecorded` if it cannot be)."""
        event = AuditEvent(
            "plugin.load",
            "allowed",
            plugin=verified.name,
            version=verified.version,
            digest=verified.content_digest,
            keyids=verified.signature_keyids,
            details={"path": path_text(directory), "isolation": self.isolation, **extra},
        )
        try:
            self.audit.record(event)
        except VtregError as e:
            raise _Unrecorded(e) from e

    def _record_shared(self, plugin: NativePlugin, directory: Path) -> NativePlugin:
        """Record an allowed load of content already loaded; no code runs for it."""
        try:
            self._record_allowed(plugin.verified, directory, shared=True)
        except BaseException:
            plugin.close()
            raise
        return plugin

    def _authenticate_and_capture(
        self, directory: Path, fd: int, images: dict[str, SealedFile], at: datetime
    ) -> tuple[VerifiedPlugin, Mapping[str, int | None]]:
        """plugin.sig checked alone first; then only what it signed is read, and decided on.

        Returns the verified plugin and each signed file's signed length.
        """
        signature = read_signature(directory, dir_fd=fd)
        if signature is None:
            raise SignatureError(
                f"unsigned: there is no {SIGNATURE_FILE} "
                "(VT Code loads unsigned plugins; vtreg refuses)",
                code="unsigned",
            )
        state = self.trust.state_for(signature)
        signed = authenticate(signature, state, at=at)
        platform, library = _check_loadable(signed)
        # Only this host's signed library is copied aside while hashing, bounded by
        # its signed length: one sealed copy, never one per file an attacker adds.
        # Other platforms' libraries are signed files like any other: hashed, never kept.

        def sink_for(rel: str) -> SealedFile | None:
            if rel != library:
                return None
            images[rel] = SealedFile(rel)
            return images[rel]

        tree = capture(
            directory,
            dir_fd=fd,
            expect=signed.expected,
            algorithms=signed.algorithms,
            sink_for=sink_for,
            signature=signature,  # the bytes just authenticated, not a second reading
            exclude=signed.exclude,
        )
        verified = decide(tree, state, at=at, signed=signed, platform=platform)
        # From here on the plugin's platform and library are the ones this host loads.
        return replace(verified, platform=platform, library=library), signed.expected

    def _plan_dependencies(
        self,
        fd: int,
        images: dict[str, SealedFile],
        verified: VerifiedPlugin,
        lengths: Mapping[str, int | None],
    ) -> Plan:
        """Where each library the plugin needs comes from (:mod:`loader.dependencies`).

        A signed file the library needs is copied into its own sealed image once
        the library names it, hashed again as it is copied, so the image holds
        exactly the signed bytes. In this process, an object another plugin
        brought under the same name would be used instead of the plugin's own:
        that is refused as a load that cannot be done here (isolation can).
        """
        if not host_platform().startswith("linux"):
            return Plan(())  # pragma: no cover - ELF dependencies are a Linux matter

        def open_signed(rel: str) -> int:
            if rel not in images:
                images[rel] = SealedFile(rel)
                length = lengths.get(rel)
                if length is None:  # pragma: no cover - the loader needs signed lengths
                    raise FormatError(f"{rel} has no signed length")
                copy_signed(fd, rel, length=length, digests=verified.files[rel], sink=images[rel])
            return images[rel].fd

        # A worker starts afresh: every name is resolved for it.
        loaded = _nothing_loaded if self.isolation == "process" else _held_by_host
        try:
            plan = plan_dependencies(
                verified.library, open_signed, frozenset(verified.files), loaded=loaded
            )
        except VerificationError as e:
            raise type(e)(
                f"{verified.name} {verified.version}: {e}",
                code=e.code,
                keyids=verified.signature_keyids,
                subject=verified.subject,
            ) from e
        if self.isolation != "process":
            _check_no_clash(plan, verified)
        return plan

    def _open(
        self,
        images: dict[str, SealedFile],
        directory: Path,
        verified: VerifiedPlugin,
        plan: Plan,
    ) -> NativePlugin:
        label = f"{verified.name} {verified.version}"
        subject = (verified.name, verified.version, verified.content_digest)
        keyids = verified.signature_keyids
        image = images.get(verified.library)
        if image is None:  # pragma: no cover - plugin.json is signed and names this library
            raise PolicyError(
                f"{verified.library} was not captured", keyids=keyids, subject=subject
            )
        image.seal()
        for step in plan.bundled:
            images[step.rel].seal()
        backend: _InProcess | IsolatedLibrary | None = None
        try:
            if self.isolation == "process":
                dependencies: list[tuple[str, SealedFile | str]] = [
                    (step.soname, images.pop(step.rel) if isinstance(step, Bundled) else step.path)
                    for step in plan.steps
                ]  # owned by the worker's parent from now on, as is the library
                backend = IsolatedLibrary(
                    images.pop(verified.library),
                    label,
                    timeout=self.timeout,
                    memory_limit=self.memory_limit,
                    dependencies=dependencies,
                )
                try:
                    version, metadata_bytes = backend.start()
                except PluginCallError as e:
                    # Crashed or hung while loading (its constructors, metadata()): nothing
                    # says the plugin is not what was signed, so this cannot decide, and is
                    # never a refusal.
                    raise LoadError(str(e)) from e
            else:
                backend = _InProcess()
                _open_dependencies(backend, plan, images, verified, label)
                handle = backend.open(_unique_path(image, label), label, "it")
                if plan.soname is not None:
                    _bundled_here.setdefault(
                        plan.soname, verified.files[verified.library]["sha256"]
                    )
                backend.raw = RawLibrary(handle, label)
                version, metadata_bytes = backend.raw.version(), backend.raw.metadata_bytes()
            metadata = _check_identity(version, metadata_bytes, verified)
        except LoadError:
            if backend is not None:
                backend.close()
            raise  # could not decide: nothing about the plugin is known to be wrong
        except VtregError as e:
            if backend is not None:
                backend.close()
            # Loaded but unusable: a refusal, recorded against the verified plugin.
            raise AbiError(str(e), keyids=keyids, subject=subject) from e
        # The library's word, as in VT Code; a signed "false" in plugin.json overrides it.
        thread_safe = metadata.thread_safe and verified.manifest.thread_safe is not False
        instance = Instance(backend, metadata, thread_safe=thread_safe, on_unload=self._forget)
        with _loaded_lock:
            self._instances(backend.isolated)[verified.content_digest] = instance
            return self._handle(instance, directory, verified)

    def discover_plugins(self) -> Discovery:
        """Load every plugin directory (a child holding plugin.json) of the trusted directories.

        As in VT Code, a plugin that is refused or fails does not stop the rest;
        its refusal is audited, and returned with its code and message in
        :attr:`Discovery.skipped` so that a host can show why it is missing. A
        plugin.json at a trusted directory's root is not discovered (VT Code
        looks only at children); ``load_plugin(root)`` loads it.
        """
        plugins: list[NativePlugin] = []
        skipped: list[Skipped] = []
        for trusted in self._trusted:
            if not trusted.is_dir():
                continue
            for entry in sorted(trusted.iterdir()):
                if not (entry.is_dir() and (entry / MANIFEST_FILE).is_file()):
                    continue
                try:
                    plugins.append(self.load_plugin(entry))
                except VtregError as e:
                    skipped.append(Skipped.of(entry, e))
                    shown = printable(path_text(entry))
                    log.warning("skipped plugin %s: %s", shown, printable(str(e)))
        return Discovery(plugins=tuple(plugins), skipped=tuple(skipped))
