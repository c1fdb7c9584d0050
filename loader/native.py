"""Loaded plugins: VT Code's data model and :class:`NativePlugin`.

The bytes a plugin returns are decoded here as VT Code's serde_json decodes
them: invalid UTF-8, invalid JSON (``NaN``, ``Infinity``, a number out of
range), a duplicate key and a wrongly shaped document are
:class:`~loader.abi.PluginCallError` s, never crashes. Calls into a plugin are
serialised with a per-plugin lock unless the library's own metadata says
``"thread_safe": true`` (where VT Code reads it); a signed plugin.json saying
``"thread_safe": false`` serialises them too.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from vtreg.verifier._json import no_constants, no_duplicates
from vtreg.verifier.errors import UsageError
from vtreg.verifier.signatures import VerifiedPlugin

from .abi import PluginCallError

__all__ = [
    "Backend",
    "Instance",
    "NativePlugin",
    "PluginContext",
    "PluginMetadata",
    "PluginResult",
    "decode_metadata",
    "decode_result",
]


_U32_MAX = 2**32 - 1


class PluginMetadata(BaseModel):
    """What ``vtcode_plugin_metadata()`` returns (VT Code's PluginMetadata).

    Typed as VT Code's serde struct is: ``abi_version`` is required and an
    unsigned 32-bit integer (``"1"`` and ``1.0`` are refused), ``thread_safe``
    a boolean that defaults to false.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: StrictStr
    description: StrictStr
    version: StrictStr
    author: StrictStr | None = None
    abi_version: Annotated[StrictInt, Field(ge=0, le=_U32_MAX)]
    when_to_use: StrictStr | None = None
    when_not_to_use: StrictStr | None = None
    allowed_tools: list[StrictStr] | None = None
    thread_safe: StrictBool = False


class PluginContext(BaseModel):
    """The JSON handed to ``vtcode_plugin_execute`` (VT Code's PluginContext).

    The loader adds ``plugin_dir``: the verified plugin directory (see
    :meth:`NativePlugin.execute`). ``NaN`` and infinities in ``input`` or
    ``config`` are sent as ``null``, as serde_json's ``Value::from`` does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: dict[str, Any] = Field(default_factory=dict)
    workspace_root: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class PluginResult(BaseModel):
    """What ``vtcode_plugin_execute`` returns (VT Code's PluginResult)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    success: StrictBool
    output: dict[str, Any]
    error: StrictStr | None = None
    files: list[StrictStr]


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: serde_json says "number out of range"
        raise ValueError(f"number {text} is out of range")
    return value


# Built once: json.loads builds a decoder for every call given hooks (one a call here).
_DECODER = json.JSONDecoder(
    object_pairs_hook=no_duplicates, parse_constant=no_constants, parse_float=_finite
)


def _json_document(data: bytes, label: str, what: str) -> object:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PluginCallError(f"{label}: {what} is not valid UTF-8 (byte {e.start})") from e
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as e:
        raise PluginCallError(f"{label}: {what} is not valid JSON ({e})") from e


def _first_problem(error: pydantic.ValidationError) -> str:
    detail = error.errors(include_url=False)[0]
    where = ".".join(str(p) for p in detail["loc"]) or "document"
    return f"{where}: {detail['msg']}"


_Model = TypeVar("_Model", bound=BaseModel)


def _decode(model: type[_Model], data: bytes, label: str, what: str, shape: str) -> _Model:
    document = _json_document(data, label, what)
    try:
        return model.model_validate(document)
    except pydantic.ValidationError as e:
        raise PluginCallError(f"{label}: {what} is not {shape} ({_first_problem(e)})") from e


def decode_metadata(data: bytes, label: str) -> PluginMetadata:
    """Parse ``vtcode_plugin_metadata()`` output or raise :class:`PluginCallError`."""
    return _decode(PluginMetadata, data, label, "metadata", "plugin metadata")


def decode_result(data: bytes, label: str) -> PluginResult:
    """Parse ``vtcode_plugin_execute()`` output or raise :class:`PluginCallError`."""
    return _decode(PluginResult, data, label, "result", "a plugin result")


class Backend(Protocol):
    """Where a plugin's code runs: in this process, or in an isolated child."""

    isolated: bool

    def call(self, context_json: bytes, timeout: float | None) -> bytes:
        """Pass ``context_json`` to ``vtcode_plugin_execute``; return the bytes it answers."""

    def close(self) -> None:
        """Unload the library (or stop the isolated child); no call may follow."""


class Instance:
    """One loaded library, shared by every :class:`NativePlugin` of the same verified content.

    Loading content that is already loaded hands out another NativePlugin over
    the same instance (VT Code gets the same from dlopen's reference count).
    Calls through any of them share one lock unless the plugin is thread-safe.
    When the last one is closed, no new call can start; once the calls in
    flight have returned, ``on_unload`` runs and the backend is closed (the
    library unloaded, its worker stopped).
    """

    def __init__(
        self,
        backend: Backend,
        metadata: PluginMetadata,
        *,
        thread_safe: bool,
        on_unload: Callable[[Instance], None] | None = None,
    ) -> None:
        self.backend = backend
        self.metadata = metadata
        self.thread_safe = thread_safe
        self._serial = None if thread_safe else threading.Lock()
        self._state = threading.Condition()
        self._handles = 0
        self._calls = 0
        self._unloaded = False
        self._on_unload = on_unload

    def attach(self) -> bool:
        """Count one more NativePlugin; False if the instance is already being unloaded."""
        with self._state:
            if self._unloaded:
                return False
            self._handles += 1
            return True

    def call(self, payload: bytes, timeout: float | None) -> bytes:
        """Run one call on the backend (under the instance's lock unless thread-safe)."""
        with self._state:
            if self._unloaded:  # pragma: no cover - a closed handle refuses calls first
                raise UsageError("the plugin was unloaded")
            self._calls += 1
        try:
            if self._serial is None:
                return self.backend.call(payload, timeout)
            with self._serial:
                return self.backend.call(payload, timeout)
        finally:
            with self._state:
                self._calls -= 1
                self._state.notify_all()

    def detach(self) -> None:
        """Count one NativePlugin less; unload after the last, once no call is in flight."""
        with self._state:
            self._handles -= 1
            if self._handles > 0:
                return
            self._unloaded = True
            while self._calls:
                self._state.wait()
        if self._on_unload is not None:
            self._on_unload(self)
        self.backend.close()


class NativePlugin:
    """A verified, loaded plugin (VT Code's NativePlugin); a context manager that closes it."""

    def __init__(
        self,
        *,
        instance: Instance,
        path: Path,
        verified: VerifiedPlugin,
        on_close: Callable[[NativePlugin], None] | None = None,
    ) -> None:
        if not instance.attach():
            raise ValueError("the instance is being unloaded")  # the loader makes a new one
        self._instance = instance
        self._metadata = metadata = instance.metadata
        self._path = path
        self.verified = verified
        self.thread_safe = instance.thread_safe
        self._closed = False
        self._close_lock = threading.Lock()
        self._on_close = on_close
        self.label = f"{metadata.name} {metadata.version}"

    @property
    def _backend(self) -> Backend:
        return self._instance.backend

    @property
    def metadata(self) -> PluginMetadata:
        """What the library said about itself, already checked against what was signed."""
        return self._metadata

    @property
    def path(self) -> Path:
        """The verified plugin directory, canonical (what ``plugin_dir`` in each context says)."""
        return self._path

    @property
    def isolated(self) -> bool:
        """Whether its code runs in a child process rather than this one."""
        return self._backend.isolated

    def execute(
        self, ctx: PluginContext | None = None, *, timeout: float | None = None
    ) -> PluginResult:
        """Call ``vtcode_plugin_execute`` with ``ctx`` and decode its result.

        The plugin receives ``ctx`` as VT Code sends it, plus ``plugin_dir``:
        the canonical directory that was verified (null if it is not UTF-8),
        where the plugin finds its own ``templates/`` or ``scripts/``.

        Args:
            ctx: a :class:`PluginContext` (empty if None).
            timeout: seconds, for isolated plugins only (a call running in this
                process cannot be interrupted).

        Raises:
            UsageError: ``ctx`` is not a PluginContext, a timeout without
                isolation, or the plugin was closed.
            PluginCallError: NULL, invalid UTF-8 or JSON, a wrongly shaped
                result; for isolated plugins also a crash, a timeout or the
                memory limit.
        """
        if self._closed:
            raise UsageError(f"{self.label} was closed; load it again to call it")
        if ctx is not None and not isinstance(ctx, PluginContext):
            raise UsageError(
                f"execute() takes a PluginContext, not {type(ctx).__name__}: "
                "execute(PluginContext(input={...}))"
            )
        if timeout is not None and not self.isolated:
            raise UsageError("a timeout needs isolation (load with isolation='process')")
        payload = self._payload(ctx or PluginContext())
        return decode_result(self._instance.call(payload, timeout), self.label)

    def _payload(self, ctx: PluginContext) -> bytes:
        document = ctx.model_dump(mode="json")
        try:
            document["plugin_dir"] = os.fsencode(self._path).decode("utf-8")
        except UnicodeDecodeError:
            document["plugin_dir"] = None  # a JSON string cannot carry it losslessly
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")  # raw UTF-8, as serde_json writes it
        except UnicodeEncodeError as e:
            raise UsageError(f"the context holds text that is not UTF-8 ({e.reason})") from e

    def close(self) -> None:
        """Let go of the plugin: no call may follow; closing twice is harmless.

        When no other NativePlugin holds the same loaded content, the library is
        unloaded (in this process: ``dlclose``, once calls in flight have
        returned; isolated: its worker is stopped).
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._on_close is not None:
            self._on_close(self)
        self._instance.detach()

    def __enter__(self) -> NativePlugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "isolated" if self.isolated else "in-process"
        return f"NativePlugin({self.label!r}, {where}, path={str(self._path)!r})"
