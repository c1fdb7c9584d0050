"""Names and size limits of the files in a plugin directory (import-light on purpose)."""

from __future__ import annotations

__all__ = ["MANIFEST_FILE", "MAX_MANIFEST_BYTES", "MAX_SIGNATURE_BYTES", "SIGNATURE_FILE"]

MANIFEST_FILE = "plugin.json"
SIGNATURE_FILE = "plugin.sig"
# plugin.json is a few hundred bytes in practice; plugin.sig grows with the
# number of files and signatures. Both are read whole, so both are capped.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_SIGNATURE_BYTES = 1024 * 1024
