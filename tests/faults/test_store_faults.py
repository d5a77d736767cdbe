"""Damaged and full caches and stores heal: moved aside (never deleted), a warning says where, and the
run gives the same result as with a healthy file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor, fake_extractors, fake_weights  # noqa: F401 - fixtures
from tests.faults.conftest import Run, fill_disk


def _folder(root: Path, n: int, seed: int) -> Path:
    gen = np.random.default_rng(seed)
    for i in range(n):
        write_png(root / f"{i}.png", gen.integers(0, 256, (16, 16, 3)).astype(np.uint8))
    return root


def _fid(cli, a: Path, b: Path, weights: Path) -> Run:
    return cli("fid", a, b, "--json", "--inception-weights", weights, "--dims", "64")


def _cache_file() -> Path:
    from engine.fid.cache import default_cache_path

    return default_cache_path()


def _junk_pages(path: Path) -> None:
    """Overwrite everything after the header page with junk (what a bad sector or a stray write leaves)."""
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.seek(4096)
        fh.write(np.random.default_rng(0).integers(0, 256, max(size - 4096, 8192), dtype=np.uint8).tobytes())


@pytest.mark.parametrize("damage", ["junk-pages", "not-a-database"])
def test_damaged_feature_cache_is_moved_aside_and_the_fid_is_unchanged(
    cli, tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor], damage: str  # noqa: F811
) -> None:
    a, b = _folder(tmp_path / "a", 12, 0), _folder(tmp_path / "b", 12, 1)
    first = _fid(cli, a, b, fake_weights)
    assert first.code == 0, first.err
    cache = _cache_file()
    assert cache.is_file()
    if damage == "junk-pages":
        _junk_pages(cache)
    else:
        cache.write_bytes(b"definitely not sqlite " * 500)
    second = _fid(cli, a, b, fake_weights)
    assert second.code == 0, second.err
    assert json.loads(second.out)["fid"] == pytest.approx(json.loads(first.out)["fid"], rel=1e-9)
    aside = list(cache.parent.glob(cache.name + ".damaged-*"))
    assert len(aside) == 1 and "Warning:" in second.err and aside[0].name in " ".join(second.err.split())
    assert any(aside[0].name in w for w in json.loads(second.out)["warnings"])  # in --json too, not only stderr
    third = _fid(cli, a, b, fake_weights)  # the fresh cache works again: everything is a hit, no warning
    assert third.code == 0 and "Warning:" not in third.err and json.loads(third.out)["a"]["n_cached"] == 12


def test_feature_cache_on_a_full_disk_is_switched_off_and_the_fid_is_unchanged(
    cli, tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch,
    fake_weights: Path, fake_extractors: list[FakeExtractor],  # noqa: F811
) -> None:
    a, b = _folder(tmp_path / "a", 40, 0), _folder(tmp_path / "b", 40, 1)
    healthy = _fid(cli, a, b, fake_weights)
    monkeypatch.setenv("VPT_ADVISOR_HOME", str(small_disk / "home"))
    (small_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 48 * 1024))  # leave ~48 KiB: the cache cannot grow
    full = _fid(cli, a, b, fake_weights)
    assert full.code == 0, full.err
    assert json.loads(full.out)["fid"] == pytest.approx(json.loads(healthy.out)["fid"], rel=1e-9)
    assert "Warning:" in full.err and "full" in full.err


def test_trial_store_with_junk_pages_is_moved_aside_and_the_sweep_completes(cli, tmp_path: Path) -> None:
    from tests.benchmarks.vtab_tree import IMG_SIZE, TINY_MODEL, TINY_MODEL_ARGS, make_vtab_tree

    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    db = tmp_path / "runs.sqlite"
    args = ["reproduce-vtab", root, "--protocol", "quick", "--tasks", "dtd", "--methods", "ft", "--random-init",
            "--model", TINY_MODEL, "--img-size", IMG_SIZE, "--device", "cpu", "--db", db, "--format", "json"]
    for k, v in TINY_MODEL_ARGS.items():
        args += ["--model-arg", f"{k}={v}"]
    first = cli(*args)
    assert first.code == 0, first.err
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _junk_pages(db)
    second = cli(*args)
    assert second.code == 0, second.err
    aside = [p for p in tmp_path.glob("runs.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and "Warning:" in second.err
    rows = lambda run: [(r["task"], r["ours_ft"]) for r in json.loads(run.out)["rows"]]  # noqa: E731
    assert rows(second) == rows(first)  # retrained from scratch with the same seeds: the same table


def test_trial_store_on_a_full_disk_finishes_in_memory(cli, tmp_path: Path, small_disk: Path) -> None:
    from benchmarks.vtab.store import TrialStore
    from tests.benchmarks.vtab_tree import IMG_SIZE, TINY_MODEL, TINY_MODEL_ARGS, make_vtab_tree

    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    args = ["reproduce-vtab", root, "--protocol", "quick", "--tasks", "dtd", "--methods", "ft", "--random-init",
            "--model", TINY_MODEL, "--img-size", IMG_SIZE, "--device", "cpu", "--format", "json"]
    for k, v in TINY_MODEL_ARGS.items():
        args += ["--model-arg", f"{k}={v}"]
    healthy = cli(*args, "--db", tmp_path / "ok.sqlite")
    assert healthy.code == 0, healthy.err
    db = small_disk / "runs.sqlite"
    TrialStore(db).close()  # the store exists; then the disk fills up
    fill_disk(small_disk)  # ENOSPC from here on
    full = cli(*args, "--db", db)
    assert full.code == 0, full.err
    assert "Warning:" in full.err and "in memory" in " ".join(full.err.split())
    rows = lambda r: [(x["task"], x["ours_ft"]) for x in json.loads(r.out)["rows"]]  # noqa: E731
    assert rows(full) == rows(healthy)


def test_finished_trials_are_still_reused_when_the_disk_is_full(tmp_path: Path, small_disk: Path) -> None:
    from benchmarks.vtab.store import TrialStore
    from benchmarks.vtab.trials import TrialConfig
    from engine.config.train import TrainConfig

    cfg = TrialConfig(root=str(tmp_path), task="dtd", folder="dtd", num_classes=47, phase="search",
                      train=TrainConfig.for_method("ft", lr=0.1, weight_decay=0.0, seed=42, epochs=1,
                                                   warmup_epochs=0, batch_size=8))
    db = small_disk / "runs.sqlite"
    with TrialStore(db) as store:
        store.mark_running([(cfg.key, cfg)])
        store.mark_finished(cfg.key, metrics={"eval_acc": 50.0}, timings={}, versions={}, device="cpu")
    fill_disk(small_disk)
    with TrialStore(db) as store:  # cannot even create its -shm file: read-only copy in memory
        assert store.in_memory and store.statuses() == {cfg.key: "finished"}
        store.mark_failed("other", "x")  # writes go to memory, never raise


def test_two_extractions_at_once_share_the_feature_cache(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    import threading

    from engine.config.fid import FidConfig
    from engine.fid.run import extract_file_features

    paths = sorted(_folder(tmp_path / "a", 30, 5).glob("*.png"))
    config = FidConfig(weights=fake_weights, dims=64, batch_size=4)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def extract() -> None:
        try:
            results.append(extract_file_features(paths, config, "cpu").features)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=extract) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 2
    np.testing.assert_array_equal(results[0], results[1])
    third = extract_file_features(paths, config, "cpu")
    assert third.n_cached == 30  # both writers' rows landed intact
