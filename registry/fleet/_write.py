"""How a publish turns roles into files: each role serialised once, many files synced at once.

python-tuf's ``Metadata.sign`` serialises the signed part as OLPC canonical
JSON with securesystemslib's pure-Python encoder, and ``Metadata.to_bytes``
serialises the whole again: most of a full publish's time went there (about
36 ms for a 1 MiB bin). Canonical JSON of TUF metadata is exactly what
``json.dumps`` writes with sorted keys, no spaces and raw UTF-8, except in
strings with a control character (canonical JSON writes it raw, ``json``
escapes it) and floats (``json`` writes them, canonical JSON refuses them;
no TUF role nor trust entry holds one). So the C encoder writes the signed
bytes, securesystemslib's encoder does whenever that output holds an escape,
and the file is the signature and those very bytes.

The versioned files of a publish (bins, targets) are new names no published
metadata names yet, so each is written without an fsync of its own and all
are made durable by one ``syncfs`` before the snapshot naming them is written
(with its own fsync, then the timestamp): a crash never leaves a timestamp
naming a file that is not on disk, and what a crashed publish left behind is
never named, so the next publish writes it again.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Signed
from tuf.api.serialization.json import CanonicalJSONSerializer, JSONSerializer

from vtreg.verifier.errors import WriteError

__all__ = ["canonical_signed", "make_durable", "signed_file", "write_new"]

_COMPACT = JSONSerializer(compact=True)
_CANONICAL = CanonicalJSONSerializer()


def canonical_signed(signed: Signed) -> bytes:
    """The OLPC canonical JSON of ``signed``, the bytes its signature covers."""
    return _canonical(signed)[0]


def _canonical(signed: Signed) -> tuple[bytes, bool]:
    """The canonical bytes, and whether they are also the JSON of a file (no raw
    control character in them)."""
    text = json.dumps(
        signed.to_dict(),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        check_circular=False,
    )
    if "\\" in text:  # an escape: a string with a control character (or a quote, a backslash)
        return _CANONICAL.serialize(signed), False
    return text.encode("utf-8"), True


def signed_file(md: Metadata[Any], signer: Signer) -> bytes:
    """Sign ``md`` with ``signer`` alone (as ``md.sign(signer)``) and return its file's bytes.

    The file is ``{"signatures":[...],"signed":...}`` with the signed part
    as the canonical bytes signed, the same JSON (sorted keys, compact) that
    python-tuf's ``JSONSerializer`` writes.
    """
    payload, plain = _canonical(md.signed)
    signature = signer.sign(payload)
    md.signatures.clear()
    md.signatures[signature.keyid] = signature
    if not plain or md.unrecognized_fields:
        return md.to_bytes(_COMPACT)  # raw control characters are not JSON
    signatures = json.dumps([signature.to_dict()], sort_keys=True, separators=(",", ":"))
    return b'{"signatures":' + signatures.encode("ascii") + b',"signed":' + payload + b"}"


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path`` (mode 0644), without syncing it: see :func:`make_durable`.

    ``path`` is a versioned name no published metadata names; one that exists
    is what a crashed publish left there, and is replaced.

    Raises:
        WriteError: the file could not be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o644)  # the umask must not loosen or tighten it
        finally:
            os.close(fd)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror}") from e


def _syncfs() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return None


def make_durable(directory: Path, names: Iterable[str]) -> None:
    """Make the files ``names`` in ``directory``, and their names, durable.

    One ``syncfs(2)`` of the directory's filesystem where there is one
    (an fsync per file costs a journal commit each: about 3.6 ms, 60 s for
    16,384 bins), else an fsync of each file and of the directory.

    Raises:
        WriteError: the filesystem reported a write error.
    """
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise WriteError(f"cannot open {directory}: {e.strerror}") from e
    try:
        syncfs = _syncfs()
        if syncfs is not None:
            if syncfs(dir_fd) != 0:
                error = ctypes.get_errno()
                raise WriteError(f"cannot sync {directory}: {os.strerror(error)}")
            return
        for name in names:  # pragma: no cover - not Linux
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.fsync(dir_fd)  # pragma: no cover
    except OSError as e:  # pragma: no cover - an fsync's error
        raise WriteError(f"cannot sync {directory}: {e.strerror}") from e
    finally:
        os.close(dir_fd)
