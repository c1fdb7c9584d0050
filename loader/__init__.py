"""vtreg loader: verify-then-load of VT Code ABI v1 native plugins over ctypes."""

from __future__ import annotations

__all__: list[str] = []
