"""The sweep's results store: SQLite in WAL mode, one row per trial, keyed by the config hash.

A trial is a pure function of its config, so the SHA-256 of the canonical config JSON identifies it.
Each row holds the config JSON, its seed, status (``running`` / ``finished`` / ``failed``), metrics,
timings, library versions and device. Every write is one short transaction (``BEGIN IMMEDIATE`` ...
``COMMIT``), so a ``kill -9`` at any moment leaves each row either in its old or its new state:
finished rows are never lost, and because the hash is the primary key a rerun can never duplicate a
trial. Rows left ``running`` by a killed sweep are simply run again.

Only the orchestrating process writes (workers return results to it), which keeps one writer even
when trials run on a Dask cluster; WAL still lets ``reproduce-vtab`` and readers open the file at
the same time.

The store heals: a damaged file (junk pages, not a database) is moved aside to
``<name>.damaged-<time>`` with a warning and a fresh store is started (the lost trials run again);
a full disk mid-run switches to an in-memory copy with a warning, so the run still finishes and
reports every result it computed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field

from engine.config import FrozenModel
from engine.data.imageio import display_path
from engine.errors import StoreError
from engine.sqlite_files import move_aside, sqlite_fault

if TYPE_CHECKING:
    from benchmarks.vtab.trials import TrialConfig

__all__ = ["SCHEMA_VERSION", "TrialRecord", "TrialStore"]

SCHEMA_VERSION = 1

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    hash TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    method TEXT NOT NULL,
    phase TEXT NOT NULL,
    n_train INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    lr REAL NOT NULL,
    weight_decay REAL NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    metrics TEXT,
    timings TEXT,
    versions TEXT,
    device TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    host TEXT,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS trials_group ON trials (task, method, phase, n_train, status);
"""


class TrialRecord(FrozenModel):
    """One row of the store, decoded."""

    hash: str = Field(description="Config hash (primary key).")
    task: str = Field(description="Task key.")
    method: str = Field(description="ft or vpt.")
    phase: str = Field(description="search or final.")
    n_train: int = Field(description="Training-set size point.")
    seed: int = Field(description="Run seed.")
    lr: float = Field(description="Base learning rate.")
    weight_decay: float = Field(description="Weight decay.")
    config: dict[str, Any] = Field(description="The full trial config.")
    status: str = Field(description="running, finished or failed.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Accuracies, losses, sizes.")
    timings: dict[str, float] = Field(default_factory=dict, description="Wall times and throughput.")
    versions: dict[str, str] = Field(default_factory=dict, description="torch/timm/python versions.")
    device: str | None = Field(None, description="Device the trial ran on.")
    error: str | None = Field(None, description="Error message of a failed trial.")
    attempts: int = Field(0, description="How often the trial was started.")


class TrialStore:
    """A SQLite results store; use as a context manager or call :meth:`close`.

    Args:
        path: the database file (created with its parent folder when absent).

    Raises:
        StoreError: the file cannot be opened or is not a store of this schema.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self.warnings: list[str] = []
        self.in_memory = False
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"results store {display_path(self.path)} is a folder or a special file; "
                             "pass a file path to --db (e.g. runs.sqlite)")
        try:
            self._db = self._connect(self.path)
        except sqlite3.DatabaseError as exc:
            fault = sqlite_fault(exc, self.path)
            if fault == "damaged":
                self._db = self._replace_damaged(exc)
            elif fault == "full":
                self._db = self._memory(exc, "nothing was lost from the file")
            else:
                raise StoreError(f"cannot open results store {display_path(self.path)}: {exc}; "
                                 "pass another --db path or free disk space") from None

    @staticmethod
    def _connect(path: Path | str) -> sqlite3.Connection:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise StoreError(f"{display_path(path)} has store schema {row[0]}, this version reads "
                                 f"{SCHEMA_VERSION}; use a new --db path")
        except BaseException:
            db.close()
            raise
        return db

    def _warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    def _replace_damaged(self, exc: BaseException) -> sqlite3.Connection:
        """Move a damaged store aside and start a fresh one (in memory when that fails too)."""
        try:
            moved = move_aside(self.path)
        except OSError as err:
            return self._memory(exc, f"it could not be moved aside ({err.strerror or err})")
        try:
            db = self._connect(self.path)
        except sqlite3.DatabaseError as again:
            return self._memory(again, f"the damaged file was moved to {display_path(moved)}")
        self._warn(f"results store {display_path(self.path)} is damaged ({exc}); moved it to {display_path(moved)} "
                   "and started a fresh store (its trials run again)")
        return db

    def _memory(self, exc: BaseException, detail: str) -> sqlite3.Connection:
        """An in-memory store holding whatever could still be read: the run goes on, nothing more is saved."""
        mem = sqlite3.connect(":memory:", isolation_level=None)
        old = getattr(self, "_db", None)
        if old is None and self.path.is_file():  # opening failed: read the file without writing anything
            try:
                old = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            except sqlite3.Error:
                old = None
        if old is not None:
            try:
                old.backup(mem)
            except sqlite3.Error:
                mem.close()
                mem = sqlite3.connect(":memory:", isolation_level=None)
            try:
                old.close()
            except sqlite3.Error:  # pragma: no cover
                pass
        mem.executescript(_SCHEMA)
        mem.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self.in_memory = True
        why = "the disk is full" if sqlite_fault(exc, self.path) == "full" else "it cannot be used"
        self._warn(f"results store {display_path(self.path)}: {why} ({exc}; {detail}); this run goes on in memory "
                   "and its new trials will not be saved: free space or pass another --db to keep them")
        return mem

    def _heal(self, exc: sqlite3.DatabaseError) -> None:
        """React to an error mid-run: move a damaged file aside, or go on in memory (full disk...)."""
        fault = sqlite_fault(exc, self.path)
        if self.in_memory or fault in ("busy", "other"):
            raise StoreError(f"results store {display_path(self.path)}: {exc}") from None
        if fault == "damaged":
            self._db.close()
            self._db = self._replace_damaged(exc)
        else:
            self._db = self._memory(exc, "nothing was lost from the file")

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction; heal and retry once on a damaged/full file."""
        for attempt in (1, 2):
            try:
                with self._transaction() as db:
                    return body(db)
            except sqlite3.DatabaseError as exc:
                if attempt == 2:
                    raise StoreError(f"results store {display_path(self.path)}: {exc}") from None
                self._heal(exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run a query; heal and retry once on a damaged file."""
        try:
            return body(self._db)
        except sqlite3.DatabaseError as exc:
            self._heal(exc)
        try:
            return body(self._db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"results store {display_path(self.path)}: {exc}") from None

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        self._db.execute("COMMIT")

    def statuses(self, hashes: Iterable[str] | None = None) -> dict[str, str]:
        """Status per hash (all rows, or only the given hashes)."""
        rows = self._read(lambda db: db.execute("SELECT hash, status FROM trials").fetchall())
        if hashes is None:
            return dict(rows)
        wanted = set(hashes)
        return {h: s for h, s in rows if h in wanted}

    @staticmethod
    def _insert_sql(status: str) -> str:
        return ("INSERT INTO trials (hash, task, method, phase, n_train, seed, lr, weight_decay, config, status,"
                f" attempts, host, started) VALUES (?,?,?,?,?,?,?,?,?,'{status}',1,?,?)")

    @staticmethod
    def _insert_args(key: str, cfg: TrialConfig, host: str, now: float) -> tuple[Any, ...]:
        return (key, cfg.task, cfg.method, cfg.phase, cfg.n_train, cfg.train.seed, cfg.train.lr,
                cfg.train.weight_decay, json.dumps(cfg.model_dump(mode="json"), sort_keys=True), host, now)

    def mark_running(self, items: Iterable[tuple[str, TrialConfig]]) -> None:
        """Record trials as started (unless already finished), in one transaction."""
        now = time.time()
        host = f"{socket.gethostname()}:{os.getpid()}"
        rows = [self._insert_args(key, cfg, host, now) for key, cfg in items]

        def body(db: sqlite3.Connection) -> None:
            for args in rows:
                db.execute(self._insert_sql("running") + " ON CONFLICT(hash) DO UPDATE SET status='running',"
                           " attempts=attempts+1, host=excluded.host, started=excluded.started, error=NULL"
                           " WHERE status != 'finished'", args)

        self._write(body)

    def mark_finished(self, key: str, *, metrics: dict[str, Any], timings: dict[str, float],
                      versions: dict[str, str], device: str, config: TrialConfig | None = None) -> None:
        """Store a trial's outcome atomically.

        The row must have been marked running, unless ``config`` is given (then a row lost to a
        store that was healed mid-run is written anew).
        """
        host = f"{socket.gethostname()}:{os.getpid()}"

        def body(db: sqlite3.Connection) -> None:
            if config is not None:
                db.execute(self._insert_sql("running") + " ON CONFLICT(hash) DO NOTHING",
                           self._insert_args(key, config, host, time.time()))
            cur = db.execute(
                "UPDATE trials SET status='finished', metrics=?, timings=?, versions=?, device=?, error=NULL,"
                " finished=? WHERE hash=?",
                (json.dumps(metrics), json.dumps(timings), json.dumps(versions), device, time.time(), key),
            )
            if cur.rowcount != 1:
                raise StoreError(f"trial {key[:12]} was never marked running in {display_path(self.path)}")

        self._write(body)

    def mark_failed(self, key: str, error: str) -> None:
        """Record a failed trial (it is retried by the next run)."""
        self._write(lambda db: db.execute(
            "UPDATE trials SET status='failed', error=?, finished=? WHERE hash=? AND status != 'finished'",
            (error[:2000], time.time(), key)))

    def records(self, *, status: str | None = None, phase: str | None = None) -> list[TrialRecord]:
        """Decoded rows, optionally filtered, ordered by task, method, phase, size, lr, wd, seed."""
        sql = "SELECT hash, task, method, phase, n_train, seed, lr, weight_decay, config, status, metrics, timings," \
              " versions, device, error, attempts FROM trials"
        where, args = [], []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if phase is not None:
            where.append("phase=?")
            args.append(phase)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY task, method, phase, n_train, lr, weight_decay, seed"
        out = []
        for r in self._read(lambda db: db.execute(sql, args).fetchall()):
            try:
                out.append(TrialRecord(hash=r[0], task=r[1], method=r[2], phase=r[3], n_train=r[4], seed=r[5],
                                       lr=r[6], weight_decay=r[7], config=json.loads(r[8]), status=r[9],
                                       metrics=json.loads(r[10]) if r[10] else {},
                                       timings=json.loads(r[11]) if r[11] else {},
                                       versions=json.loads(r[12]) if r[12] else {}, device=r[13], error=r[14],
                                       attempts=r[15]))
            except (ValueError, TypeError) as exc:  # a row damaged by hand: report it, the trial runs again
                self._warn(f"results store {display_path(self.path)}: trial {str(r[0])[:12]} is unreadable ({exc}); "
                           "ignored")
        return out

    def counts(self) -> dict[str, int]:
        """Number of rows per status."""
        return dict(self._read(lambda db: db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall()))
