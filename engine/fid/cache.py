"""Content-keyed cache of per-image Inception features (SQLite, one row per image).

The key is ``sha256(file bytes) | extractor id | preprocessing``, where the extractor id contains
the feature layer and the weights file's hash (see :func:`engine.fid.features.extractor_id`). A renamed
or copied file therefore hits the cache, and an edited file, other weights or other preprocessing
miss it. Features are stored as raw float32 bytes, exactly as the network produced them, so a
cached run gives bit-identical statistics.

SQLite gives crash safety for free: rows are committed per batch in WAL mode, so an interrupted
run keeps every finished batch and a concurrent reader never sees a half-written row. The cache is
only an optimisation, so it never costs a result: see :class:`FeatureCache` for how it heals.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.paths import cache_dir
from engine.sqlite_files import move_aside, sqlite_fault

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
    """Get and put float32 feature vectors by key. Use as a context manager or call :meth:`close`.

    The cache heals itself: a damaged file (junk pages, not a database), found when opening it or
    mid-run, is moved aside to ``features.sqlite.damaged-<time>`` and a fresh cache is started; a
    full disk or a file locked by another process switches the cache off for the rest of the run.
    Each case logs one warning saying where the file went; lookups that fail miss, so the run
    recomputes and gives the same result. ``problem`` holds that warning (``None`` while all is well).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.problem: str | None = None
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
        except (sqlite3.DatabaseError, OSError) as exc:
            if sqlite_fault(exc, self.path) == "damaged" and self._move_aside(exc):
                try:
                    self._db = self._connect()
                except (sqlite3.DatabaseError, OSError) as again:
                    self._disable(again)
            elif self.problem is None:
                self._disable(exc)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, exc: BaseException) -> bool:
        """Move a damaged file aside; True when a fresh cache can be started in its place."""
        self.close()
        try:
            moved = move_aside(self.path)
        except OSError as err:
            self._disable(exc, extra=f"; it could not be moved aside ({err.strerror or err})")
            return False
        message = (f"feature cache {self.path} is damaged ({exc}); moved it to {moved} and started a fresh "
                   "cache (delete the old file when you no longer need it)")
        logger.warning("%s", message)
        self.problem = message
        return True

    def _disable(self, exc: BaseException, extra: str = "") -> None:
        """Run on without the cache (features are recomputed; results are unchanged)."""
        self.close()
        fault = sqlite_fault(exc, self.path)
        why = {"full": "the disk is full", "busy": "it is locked by another process",
               "damaged": "it is damaged"}.get(fault, "it cannot be used")
        message = f"feature cache {self.path} is off for this run because {why} ({exc}){extra}; features are recomputed"
        logger.warning("%s", message)
        self.problem = message

    def _failed(self, exc: BaseException) -> None:
        """An error during a lookup or a write: move a damaged file aside, then run on without a cache."""
        if sqlite_fault(exc, self.path) != "damaged":
            self._disable(exc)
        elif self._move_aside(exc):
            try:
                self._db = self._connect()
            except (sqlite3.DatabaseError, OSError) as again:
                self._disable(again)

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (idempotent)."""
        db = self._db
        if db is not None:
            self._db = None
            try:
                db.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken handle
                pass

    def get_many(self, keys: Sequence[str], dims: int) -> dict[str, npt.NDArray[np.float32]]:
        """Return the cached features for the keys that are present (rows of other dims are ignored).

        Rows that are not finite are treated as misses (the value is recomputed and replaced).
        """
        found: dict[str, npt.NDArray[np.float32]] = {}
        unique = list(dict.fromkeys(keys))
        try:
            for start in range(0, len(unique), _CHUNK):
                if self._db is None:
                    return {}
                part = unique[start : start + _CHUNK]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(f"SELECT key, dims, data FROM features WHERE key IN ({marks})", part)
                for key, row_dims, data in rows:
                    if row_dims == dims and isinstance(data, bytes) and len(data) == 4 * dims:
                        vec = np.frombuffer(data, dtype=np.float32)
                        if np.isfinite(vec).all():
                            found[key] = vec
        except (sqlite3.DatabaseError, OSError) as exc:
            self._failed(exc)
            return {}
        return found

    def put_many(self, items: Iterable[tuple[str, npt.NDArray[np.float32]]]) -> None:
        """Store features (one transaction; replaces existing rows with the same key). No-op when off."""
        rows = [(k, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items]
        if self._db is None:
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO features (key, dims, data) VALUES (?, ?, ?)", rows)
        except (sqlite3.DatabaseError, OSError) as exc:
            self._failed(exc)

    def __len__(self) -> int:
        if self._db is None:
            return 0
        try:
            return int(self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._failed(exc)
            return 0
