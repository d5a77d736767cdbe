"""The SQLite trial store: atomic status transitions, no duplicates, resumability, clear errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from benchmarks.vtab.store import TrialStore
from benchmarks.vtab.trials import TrialConfig, config_hash
from engine.config.train import TrainConfig
from engine.errors import StoreError

_TRAIN_FIELDS = set(TrainConfig.model_fields)


def _cfg(**kw) -> TrialConfig:
    """A trial config; training fields (lr, seed, method ...) go into its TrainConfig."""
    train = dict(method="vpt", lr=1.0, weight_decay=0.001, seed=42, epochs=100, warmup_epochs=10, batch_size=64)
    train.update({k: v for k, v in kw.items() if k in _TRAIN_FIELDS})
    base = dict(root="/data/vtab", task="dtd", folder="dtd", num_classes=47, phase="search",
                train=TrainConfig(**train))
    return TrialConfig(**{**base, **{k: v for k, v in kw.items() if k not in _TRAIN_FIELDS}})


def test_config_hash_is_canonical_and_sensitive() -> None:
    a, b = _cfg(), _cfg()
    assert a.key == b.key == config_hash(a) and len(a.key) == 64
    assert _cfg(lr=0.5).key != a.key and _cfg(seed=44).key != a.key and _cfg(engine="batched").key != a.key


def test_status_transitions_and_resume(tmp_path: Path) -> None:
    db = tmp_path / "s" / "runs.sqlite"
    c1, c2 = _cfg(), _cfg(lr=0.5)
    with TrialStore(db) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.mark_running([(c1.key, c1), (c2.key, c2)])
        store.mark_finished(c1.key, metrics={"eval_acc": 55.0}, timings={"wall_s": 1.0}, versions={"torch": "x"},
                            device="cpu")
        store.mark_failed(c2.key, "RuntimeError: boom")
        store.mark_failed(c1.key, "late failure of a finished trial is ignored")
        assert store.statuses() == {c1.key: "finished", c2.key: "failed"}
    with TrialStore(db) as store:  # reopen: nothing lost
        # a rerun marks everything running again: the finished trial stays finished, the failed one restarts
        store.mark_running([(c1.key, c1), (c2.key, c2)])
        recs = {r.hash: r for r in store.records()}
        assert recs[c1.key].status == "finished" and recs[c1.key].metrics == {"eval_acc": 55.0}
        assert recs[c1.key].attempts == 1 and recs[c1.key].seed == 42 and recs[c1.key].device == "cpu"
        assert recs[c2.key].status == "running" and recs[c2.key].attempts == 2 and recs[c2.key].error is None
        assert TrialConfig(**recs[c2.key].config) == c2
        assert store.counts() == {"finished": 1, "running": 1}
        assert [r.hash for r in store.records(status="finished", phase="search")] == [c1.key]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 2


def test_finishing_an_unknown_trial_is_an_error(tmp_path: Path) -> None:
    with TrialStore(tmp_path / "db") as store, pytest.raises(StoreError, match="never marked running"):
        store.mark_finished("abc", metrics={}, timings={}, versions={}, device="cpu")


def test_junk_store_is_moved_aside_and_foreign_schema_raises(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with TrialStore(junk) as store:  # healed: the junk is kept next to it, a fresh store starts
        assert store.counts() == {} and "moved it to" in store.warnings[0]
    aside = list(tmp_path.glob("junk.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    db = tmp_path / "old.sqlite"
    TrialStore(db).close()
    with sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema 99"):
        TrialStore(db)


def test_two_connections_see_each_others_commits(tmp_path: Path) -> None:
    db = tmp_path / "db"
    c = _cfg()
    with TrialStore(db) as writer, TrialStore(db) as reader:
        writer.mark_running([(c.key, c)])
        assert reader.statuses([c.key]) == {c.key: "running"}
        writer.mark_finished(c.key, metrics={"eval_acc": 1.0}, timings={}, versions={}, device="cpu")
        assert reader.statuses([c.key]) == {c.key: "finished"}
