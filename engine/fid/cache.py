"""Content-keyed cache of per-image Inception features (SQLite, one row per image).

The key is ``sha256(file bytes) | extractor id | preprocessing``, where the extractor id contains
the feature layer and the weights file's hash (see :func:`engine.fid.features.extractor_id`). A renamed
or copied file therefore hits the cache, and an edited file, other weights or other preprocessing
miss it. Features are stored as raw float32 bytes, exactly as the network produced them, so a
cached run gives bit-identical statistics.

SQLite gives crash safety for free: rows are committed per batch in WAL mode, so an interrupted
run keeps every finished batch and a concurrent reader never sees a half-written row.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.errors import StoreError
from engine.paths import cache_dir

__all__ = ["FeatureCache", "default_cache_path", "cache_key"]

logger = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, dims INTEGER NOT NULL, data BLOB NOT NULL)"
_CHUNK = 500  # keys per SELECT ... IN (...) (SQLite's variable limit is 32766; stay well below)


def default_cache_path() -> Path:
    """``<data home>/cache/features.sqlite``."""
    return cache_dir() / "features.sqlite"


def cache_key(content_sha256: str, extractor: str, preprocessing: str) -> str:
    """The cache key of one image under one extractor and preprocessing."""
    return f"{content_sha256}|{extractor}|{preprocessing}"


class FeatureCache:
    """Get and put float32 feature vectors by key. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: feature cache cannot be opened ({exc}); delete the file to start a fresh cache"
            ) from None

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (idempotent)."""
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]

    def get_many(self, keys: Sequence[str], dims: int) -> dict[str, npt.NDArray[np.float32]]:
        """Return the cached features for the keys that are present (rows of other dims are ignored)."""
        found: dict[str, npt.NDArray[np.float32]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            part = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT key, dims, data FROM features WHERE key IN ({marks})", part)
            for key, row_dims, data in rows:
                if row_dims == dims and len(data) == 4 * dims:
                    found[key] = np.frombuffer(data, dtype=np.float32)
        return found

    def put_many(self, items: Iterable[tuple[str, npt.NDArray[np.float32]]]) -> None:
        """Store features (one transaction; replaces existing rows with the same key)."""
        rows = [(k, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO features (key, dims, data) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0])
