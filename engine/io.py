"""Shared file I/O: atomic writes and canonical-JSON digests (one definition each, used engine-wide).

An atomic write goes to a temporary file in the target's folder and is renamed over the target
(``os.replace``), so a reader, a crash or ``kill -9`` sees the old file or the new one, never half a
file; on error the temporary file is removed. A canonical-JSON digest hashes the JSON text with
sorted keys and no whitespace, so the same content always gives the same key (trial stores, pilot
plans, reference-build plans).

:func:`read_npz` is the one reader of ``.npz`` files: however a file is damaged (cut short, junk
bytes, a bad checksum inside the zip, a missing key, a pickled object), it raises :class:`DamagedFileError`
naming the file, never a zip or zlib exception that would surface as an internal error.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "canonical_json", "json_digest", "read_npz",
           "DamagedFileError", "NPZ_DAMAGE"]

NPZ_DAMAGE: tuple[type[BaseException], ...] = (
    OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
)
"""What ``np.load`` of a damaged ``.npz`` raises: a cut-short or junk zip (BadZipFile, EOFError), a member
whose compressed bytes are wrong (zlib.error) or whose CRC fails (BadZipFile), a bad array header
(ValueError), a missing member (KeyError), a pickled object refused by ``allow_pickle=False`` (ValueError),
an unsupported zip feature (NotImplementedError)."""


class DamagedFileError(ValueError):
    """A file exists but cannot be read as what it should be (``path`` names it, ``detail`` says how).

    Callers turn it into their own one-line error (:class:`engine.errors.StatsFileError`...) or discard
    and rebuild the file when it is a cache or checkpoint of ours.
    """

    def __init__(self, path: Path, detail: str) -> None:
        self.path = Path(path)
        self.detail = detail
        super().__init__(f"{path}: {detail}")


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


def read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``keys`` from the ``.npz`` at ``path`` (``allow_pickle=False``), fully into memory.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        DamagedFileError: the file cannot be read as an ``.npz`` holding ``keys`` (the detail names the
            missing keys or the damage).
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array: a different format
            raise DamagedFileError(path, "a single .npy array, not an .npz archive of named arrays")
        with loaded as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DamagedFileError(path, f"no key {', '.join(repr(k) for k in missing)} (found {sorted(f.files)})")
            return {k: np.asarray(f[k]) for k in keys}
    except (FileNotFoundError, DamagedFileError):
        raise
    except NPZ_DAMAGE as exc:
        what = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DamagedFileError(path, f"not a readable .npz file ({type(exc).__name__}: {what})") from exc
