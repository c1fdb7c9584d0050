"""Loaded plugins: VT Code's data model and :class:`NativePlugin`.

The bytes a plugin returns are decoded here: invalid UTF-8, invalid JSON and
wrongly shaped documents are :class:`~loader.abi.PluginCallError` s, never
crashes. Calls into a plugin whose plugin.json does not say
``"thread_safe": true`` are serialised with a per-plugin lock, as VT Code does
for ABI v1.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from vtreg.verifier.errors import UsageError
from vtreg.verifier.signatures import VerifiedPlugin

from .abi import PLUGIN_ABI_VERSION, PluginCallError

__all__ = [
    "Backend",
    "NativePlugin",
    "PluginContext",
    "PluginMetadata",
    "PluginResult",
    "decode_metadata",
    "decode_result",
]


class PluginMetadata(BaseModel):
    """What ``vtcode_plugin_metadata()`` returns (VT Code's PluginMetadata)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: StrictStr
    description: StrictStr
    version: StrictStr
    author: StrictStr | None = None
    abi_version: int = PLUGIN_ABI_VERSION
    when_to_use: StrictStr | None = None
    when_not_to_use: StrictStr | None = None
    allowed_tools: list[StrictStr] | None = None


class PluginContext(BaseModel):
    """The JSON handed to ``vtcode_plugin_execute`` (VT Code's PluginContext)."""

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


def _json_document(data: bytes, label: str, what: str) -> object:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PluginCallError(f"{label}: {what} is not valid UTF-8 (byte {e.start})") from e
    try:
        return json.loads(text)
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
        """Stop an isolated child (an in-process library stays mapped); no call may follow."""


class NativePlugin:
    """A verified, loaded plugin (VT Code's NativePlugin)."""

    def __init__(
        self,
        *,
        backend: Backend,
        metadata: PluginMetadata,
        path: Path,
        verified: VerifiedPlugin,
    ) -> None:
        self._backend = backend
        self._metadata = metadata
        self._path = path
        self.verified = verified
        self.thread_safe = verified.manifest.thread_safe
        self._lock = None if self.thread_safe else threading.Lock()
        self.label = f"{metadata.name} {metadata.version}"

    @property
    def metadata(self) -> PluginMetadata:
        """What the library said about itself, already checked against what was signed."""
        return self._metadata

    @property
    def path(self) -> Path:
        """The plugin directory it was loaded from."""
        return self._path

    @property
    def isolated(self) -> bool:
        """Whether its code runs in a child process rather than this one."""
        return self._backend.isolated

    def execute(
        self, ctx: PluginContext | None = None, *, timeout: float | None = None
    ) -> PluginResult:
        """Call ``vtcode_plugin_execute`` with ``ctx`` and decode its result.

        Args:
            timeout: seconds, for isolated plugins only (a call running in this
                process cannot be interrupted).

        Raises:
            PluginCallError: NULL, invalid UTF-8 or JSON, a wrongly shaped
                result; for isolated plugins also a crash, a timeout or the
                memory limit.
        """
        if timeout is not None and not self.isolated:
            raise UsageError("a timeout needs isolation (load with isolation='process')")
        payload = (ctx or PluginContext()).model_dump_json().encode("utf-8")
        if self._lock is None:
            data = self._backend.call(payload, timeout)
        else:
            with self._lock:
                data = self._backend.call(payload, timeout)
        return decode_result(data, self.label)

    def close(self) -> None:
        """Stop an isolated plugin's child process (an in-process library stays mapped)."""
        self._backend.close()

    def __repr__(self) -> str:
        where = "isolated" if self.isolated else "in-process"
        return f"NativePlugin({self.label!r}, {where}, path={str(self._path)!r})"
