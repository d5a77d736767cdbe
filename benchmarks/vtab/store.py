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
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from engine.io import json_digest
from engine.config import FrozenModel
from engine.errors import StoreError
from engine.data.imageio import display_path

__all__ = ["SCHEMA_VERSION", "TrialRecord", "TrialStore", "config_hash"]

SCHEMA_VERSION = 1

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


def config_hash(config: FrozenModel) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no whitespace; ``engine.io.json_digest``) of a config."""
    return json_digest(config.model_dump(mode="json"))


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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(f"{display_path(self.path)} has store schema {row[0]}, this version reads "
                                 f"{SCHEMA_VERSION}; use a new --db path")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open results store {display_path(self.path)}: {exc}; "
                             "pass another --db path or delete the file") from None

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"results store {display_path(self.path)}: {exc}") from None

    def statuses(self, hashes: Iterable[str] | None = None) -> dict[str, str]:
        """Status per hash (all rows, or only the given hashes)."""
        rows = self._db.execute("SELECT hash, status FROM trials").fetchall()
        if hashes is None:
            return dict(rows)
        wanted = set(hashes)
        return {h: s for h, s in rows if h in wanted}

    def mark_running(self, items: Iterable[tuple[str, FrozenModel]]) -> None:
        """Record trials as started (unless already finished), in one transaction."""
        now = time.time()
        host = f"{socket.gethostname()}:{os.getpid()}"
        with self._transaction() as db:
            for key, cfg in items:
                c = cfg.model_dump(mode="json")
                db.execute(
                    "INSERT INTO trials (hash, task, method, phase, n_train, seed, lr, weight_decay, config, status,"
                    " attempts, host, started) VALUES (?,?,?,?,?,?,?,?,?,'running',1,?,?)"
                    " ON CONFLICT(hash) DO UPDATE SET status='running', attempts=attempts+1, host=excluded.host,"
                    " started=excluded.started, error=NULL WHERE status != 'finished'",
                    (key, c["task"], c["method"], c["phase"], c["n_train"], c["seed"], c["lr"], c["weight_decay"],
                     json.dumps(c, sort_keys=True), host, now),
                )

    def mark_finished(self, key: str, *, metrics: dict[str, Any], timings: dict[str, float],
                      versions: dict[str, str], device: str) -> None:
        """Store a trial's outcome atomically (the row must have been marked running)."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE trials SET status='finished', metrics=?, timings=?, versions=?, device=?, error=NULL,"
                " finished=? WHERE hash=?",
                (json.dumps(metrics), json.dumps(timings), json.dumps(versions), device, time.time(), key),
            )
            if cur.rowcount != 1:
                raise StoreError(f"trial {key[:12]} was never marked running in {display_path(self.path)}")

    def mark_failed(self, key: str, error: str) -> None:
        """Record a failed trial (it is retried by the next run)."""
        with self._transaction() as db:
            db.execute("UPDATE trials SET status='failed', error=?, finished=? WHERE hash=? AND status != 'finished'",
                       (error[:2000], time.time(), key))

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
        for r in self._db.execute(sql, args).fetchall():
            out.append(TrialRecord(hash=r[0], task=r[1], method=r[2], phase=r[3], n_train=r[4], seed=r[5], lr=r[6],
                                   weight_decay=r[7], config=json.loads(r[8]), status=r[9],
                                   metrics=json.loads(r[10]) if r[10] else {},
                                   timings=json.loads(r[11]) if r[11] else {},
                                   versions=json.loads(r[12]) if r[12] else {}, device=r[13], error=r[14],
                                   attempts=r[15]))
        return out

    def counts(self) -> dict[str, int]:
        """Number of rows per status."""
        return dict(self._db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())
