"""Names and size limits of the files in a plugin directory (import-light on purpose)."""

from __future__ import annotations

__all__ = [
    "MANIFEST_FILE",
    "MAX_MANIFEST_BYTES",
    "MAX_SIGNATURE_BYTES",
    "SIGNATURE_FILE",
    "TRUSTED_ALGORITHMS",
]

MANIFEST_FILE = "plugin.json"
SIGNATURE_FILE = "plugin.sig"
# plugin.json is a few hundred bytes in practice; plugin.sig grows with the
# number of files and signatures. Both are read whole, so both are capped.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_SIGNATURE_BYTES = 1024 * 1024

# in-toto digest-set names we compute and trust -> hex length. A subject must
# carry at least one of these; md5 and sha1 never count on their own. (Here, not
# in envelope.py, because the capture picks its algorithms before pydantic loads.)
TRUSTED_ALGORITHMS = {
    "sha256": 64,
    "sha384": 96,
    "sha512": 128,
    "sha3_256": 64,
    "sha3_384": 96,
    "sha3_512": 128,
    "blake2b": 128,
    "blake2s": 64,
}
