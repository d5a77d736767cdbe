"""Shared file I/O: atomic writes and canonical-JSON digests (one definition each, used engine-wide).

An atomic write goes to a temporary file in the target's folder and is renamed over the target
(``os.replace``), so a reader, a crash or ``kill -9`` sees the old file or the new one, never half a
file; on error the temporary file is removed. A canonical-JSON digest hashes the JSON text with
sorted keys and no whitespace, so the same content always gives the same key (trial stores, pilot
plans, reference-build plans).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "canonical_json", "json_digest"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (creating the parent folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename, so a power cut cannot leave an empty file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def canonical_json(obj: object) -> str:
    """JSON with sorted keys and no whitespace; values JSON cannot encode (paths...) become ``str``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def json_digest(obj: object, length: int | None = None) -> str:
    """SHA-256 hex digest of :func:`canonical_json` of ``obj`` (its first ``length`` characters if given)."""
    digest = hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()
    return digest if length is None else digest[:length]
