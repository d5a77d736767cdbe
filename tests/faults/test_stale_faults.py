"""Results that could go stale or be clobbered: stores keyed by content, a seeded random backbone, and files
written beside --report/--plot that replace an existing file only with a warning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.benchmarks.vtab_tree import IMG_SIZE, TINY_MODEL, TINY_MODEL_ARGS, make_vtab_tree
from tests.conftest import write_png
from tests.faults.conftest import labeled_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_ARGS = [a for k, v in TINY_MODEL_ARGS.items() for a in ("--model-arg", f"{k}={v}")]
PILOT = ["--task", "dtd", "--model", "vit_tiny_patch16_224", "--img-size", "32", "--batch-size", "16", "--seeds", "1",
         "--budget", "10m", "--device", "cpu", "--yes", "--quick", "--json"]


def _replace_image(path: Path, seed: int) -> None:
    """New pixels at the same path (same size on disk is not promised, the path is)."""
    img = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_png(path, img)


def _pilot(cli, data: Path, store: Path, *extra: object) -> dict:
    run = cli("pilot", data, *PILOT, "--out", store, *extra)
    assert run.code == 0, run.err[-800:]
    return json.loads(run.out)


def test_pilot_trials_are_keyed_by_the_images_content_not_their_paths(cli, tmp_path: Path) -> None:
    data = labeled_folder(tmp_path / "data", {"red": 6, "green": 6, "blue": 6}, size=32)
    store = tmp_path / "store"
    first = _pilot(cli, data, store, "--random-init")
    assert first["pilot"]["trials_run"] > 0
    again = _pilot(cli, data, store, "--random-init")
    assert again["pilot"]["trials_run"] == 0 and again["pilot"]["trials_resumed"] == first["pilot"]["trials_run"]
    for name in ("red/0.png", "green/3.png"):  # other images at the same paths: the stored trials no longer apply
        _replace_image(data / name, seed=99)
    changed = _pilot(cli, data, store, "--random-init")
    assert changed["pilot"]["trials_run"] == first["pilot"]["trials_run"] and changed["pilot"]["trials_resumed"] == 0


def test_a_random_init_pilot_is_seeded_recorded_and_never_mixed_with_another_seed(cli, tmp_path: Path) -> None:
    from engine.train.models import create_backbone

    a, b = (create_backbone("vit_tiny_patch16_224", random_init=True, init_seed=3, img_size=32) for _ in range(2))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):  # the same seed builds the same backbone
        assert bool((pa == pb).all())
    data = labeled_folder(tmp_path / "data", {"red": 6, "green": 6, "blue": 6}, size=32)
    store = tmp_path / "store"
    first = _pilot(cli, data, store, "--random-init")
    assert first["random_init"] is True and first["init_seed"] == 0
    other = _pilot(cli, data, store, "--random-init", "--init-seed", "1")
    assert other["init_seed"] == 1 and other["pilot"]["trials_resumed"] == 0  # another backbone: nothing reused


def _vtab(cli, tmp_path: Path, *extra: object) -> dict:
    """Run the sweep; returns its JSON with ``ran``: the trials this run added to the store."""
    import sqlite3

    db = tmp_path / "runs.sqlite"

    def finished() -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(db) as con:
            return int(con.execute("SELECT COUNT(*) FROM trials WHERE status='finished'").fetchone()[0])

    before = finished()
    run = cli("reproduce-vtab", tmp_path / "vtab", "--protocol", "quick", "--tasks", "dtd", "--methods", "ft",
              "--model", TINY_MODEL, "--img-size", IMG_SIZE, "--device", "cpu", "--db", tmp_path / "runs.sqlite",
              *TINY_ARGS, "--format", "json", *extra)
    assert run.code == 0, run.err[-800:]
    return {**json.loads(run.out), "ran": finished() - before}


def test_vtab_trials_are_keyed_by_the_task_images(cli, tmp_path: Path) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    first = _vtab(cli, tmp_path, "--random-init")
    assert first["ran"] > 0
    assert _vtab(cli, tmp_path, "--random-init")["ran"] == 0
    train = sorted((root / "dtd" / "images" / "train800").glob("*.png"))
    write_png(train[0], np.zeros((16, 16, 3), np.uint8))  # one training image replaced at the same path
    assert _vtab(cli, tmp_path, "--random-init")["ran"] == first["ran"]


def test_vtab_trials_are_keyed_by_the_weights_content(cli, tmp_path: Path) -> None:
    from tests.gen_vit import make_vit, write_weights

    make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    weights = tmp_path / "w.safetensors"
    spec = {**TINY_MODEL_ARGS, "img_size": IMG_SIZE}
    write_weights(make_vit(0, **spec), weights)
    first = _vtab(cli, tmp_path, "--weights", weights)
    assert first["ran"] > 0 and _vtab(cli, tmp_path, "--weights", weights)["ran"] == 0
    write_weights(make_vit(1, **spec), weights)  # other weights, same file name
    assert _vtab(cli, tmp_path, "--weights", weights)["ran"] == first["ran"]


def test_file_fingerprints_follow_content_and_survive_a_damaged_memo(tmp_path: Path) -> None:
    import os

    from engine.fingerprint import file_fingerprint, files_fingerprint
    from engine.paths import cache_dir

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    before = file_fingerprint(f)
    assert before.startswith("100:") and file_fingerprint(f) == before
    st = f.stat()
    f.write_bytes(b"b" * 100)  # same size; even with the old mtime put back, the inode check or content differs
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert file_fingerprint(f) != before
    assert files_fingerprint([f, tmp_path / "gone.png"]) != files_fingerprint([f])  # a missing file never crashes
    memo = cache_dir() / "fingerprints.sqlite"
    memo.write_bytes(b"not a database" * 300)
    import engine.fingerprint as fp

    fp._memo.clear()  # noqa: SLF001 - a new process: only the damaged on-disk memo is left
    fp._disk = fp._DiskMemo()  # noqa: SLF001
    g = tmp_path / "other.bin"
    g.write_bytes(b"c" * 10)
    assert file_fingerprint(g).startswith("10:")  # a damaged memo costs a rehash, never a result
    assert list(memo.parent.glob("fingerprints.sqlite.damaged-*"))  # kept aside, and a fresh memo works
    fp._memo.clear()  # noqa: SLF001
    assert file_fingerprint(g) == file_fingerprint(g) and memo.stat().st_size > 0


def test_figures_beside_a_markdown_report_or_plot_warn_before_replacing_a_file(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "x_data_size.png"
    mine.write_bytes(b"the user's own picture")
    run = cli("recommend", "--task", "dtd", "--n-train", "800", "--fid", "150", "--report", out / "x.md")
    assert run.code == 0, run.err
    warning = " ".join(run.err.split())
    assert "Warning:" in warning and "x_data_size.png" in warning and "x.md" in warning
    plot = cli("recommend", "--task", "dtd", "--n-train", "800", "--fid", "150", "--plot", out / "p.png")
    assert plot.code == 0 and "Warning:" not in plot.err  # nothing existed beside p.png: nothing to say
    again = cli("recommend", "--task", "dtd", "--n-train", "800", "--fid", "150", "--plot", out / "p.png")
    assert "p_data_size.png" in " ".join(again.err.split())


def test_save_stats_warns_before_its_sidecar_replaces_a_file_of_the_user(tmp_path: Path) -> None:
    import logging

    import engine.fid.frechet as frechet

    seen: list[str] = []

    class Collect(logging.Handler):  # on the module's own logger: other tests may change propagation or levels
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    was_disabled = frechet.logger.disabled  # a logging.config call elsewhere (dask) may disable existing loggers
    was_level = frechet.logger.level
    frechet.logger.disabled = False
    frechet.logger.setLevel(logging.WARNING)
    frechet.logger.addHandler(handler)
    try:
        notes = tmp_path / "a.json"
        notes.write_text('{"mine": true}')
        stats = frechet.FeatureStats(mu=np.zeros(4), sigma=np.eye(4), n=10)
        frechet.save_stats(tmp_path / "a.npz", stats)
        assert any("replacing the existing file" in m and "a.json" in m for m in seen), seen
        seen.clear()
        frechet.save_stats(tmp_path / "a.npz", stats)  # the sidecar of our own earlier save: nothing to say
        assert not any("replacing" in m for m in seen)
    finally:
        frechet.logger.removeHandler(handler)
        frechet.logger.disabled = was_disabled
        frechet.logger.setLevel(was_level)
