"""``--backend dask``: reference builds and FID features on a 2-worker LocalCluster equal the one-process ones.

The network is pytorch-fid's Inception with random weights in the real file format (``fid_weights``), run
in the worker processes; ``dims=64`` keeps it to the first blocks so the module stays fast. Statistics are
compared to 1e-9 relative to their largest entry: features are bit-identical per image (same batches on
both backends), only the order of the float64 additions differs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.config.fid import FidConfig
from engine.fid.frechet import load_stats, sidecar_path
from engine.fid.refbuild import build_reference
from engine.fid.reference import reference_path, resolve_reference
from engine.paths import references_dir
from tests.conftest import write_png
from tests.shard_server import make_shard, png_bytes

pytest.importorskip("distributed", reason="the Dask backend needs dask[distributed] (the test extra installs it)")
from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402 - after the skip

pytestmark = pytest.mark.slow  # a LocalCluster start and Inception passes in worker processes: ~1 min here


def _same(a: np.ndarray, b: np.ndarray) -> None:
    """Relative difference, against the largest entry, at most 1e-9."""
    assert a.shape == b.shape
    assert float(np.max(np.abs(a - b))) <= 1e-9 * float(np.max(np.abs(b))), float(np.max(np.abs(a - b)))


def _tree(root: Path, n: int, seed: int) -> Path:
    gen = np.random.default_rng(seed)
    for i in range(n):
        write_png(root / f"c{i % 3}" / f"{i}.png", gen.integers(0, 256, (12 + i % 3, 12, 3), dtype=np.uint8))
    return root


def _shards(folder: Path, n_shards: int, per_shard: int, seed: int) -> Path:
    gen = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for k in range(n_shards):
        images = {f"n{k}_{i}.png": png_bytes(gen.integers(0, 256, (12, 12, 3), dtype=np.uint8))
                  for i in range(per_shard)}
        (folder / f"s-{k}.tar").write_bytes(make_shard(images))
    return folder


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A 2-worker LocalCluster for the tests that pass --scheduler (one start for the module)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=0, dashboard_address=None,
                      silence_logs=40) as lc:
        yield lc.scheduler_address


def test_two_worker_localcluster_build_equals_the_one_process_build(tmp_path: Path, fid_weights: Path) -> None:
    src = _tree(tmp_path / "src", 10, seed=0)
    config = FidConfig(weights=fid_weights, dims=64, batch_size=3, use_cache=False)
    local = build_reference(src, name="local", config=config, device="cpu", checkpoint_every=3)
    dask_cfg = config.model_copy(update={"backend": "dask", "cluster_workers": 2})
    info = build_reference(src, name="dask", config=dask_cfg, device="cpu", checkpoint_every=3)
    (a, _), (b, _) = resolve_reference("local"), resolve_reference("dask")
    assert info.n_images == local.n_images == 10
    _same(b.mu, a.mu)
    _same(b.sigma, a.sigma)
    side = json.loads(sidecar_path(reference_path("dask")).read_text())
    assert side["build"]["backend"] == "dask" and side["build"]["units"] == 4  # 10 images in stretches of 3
    by_worker = side["build"]["worker_units"]  # host:pid of the processes that did the units
    assert side["build"]["workers"] == len(by_worker) <= 2 and sum(by_worker.values()) == 4
    assert all(label.rsplit(":", 1)[1] != str(os.getpid()) for label in by_worker)  # in workers, not this process
    assert json.loads(sidecar_path(reference_path("local")).read_text())["build"]["backend"] == "local"
    assert not (references_dir() / ".dask.partial").exists()


class _KillOnce(WorkerPlugin):
    """Worker plugin: the first shard unit any worker starts kills its worker process half a second later."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker: object) -> None:
        self.worker = worker

    def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
        if finish != "executing" or "shard_unit" not in str(key):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # once across every worker
        except FileExistsError:
            return
        os.close(fd)
        threading.Timer(0.5, os._exit, args=(1,)).start()  # mid-shard: the unit has started reading


def test_a_worker_killed_mid_shard_is_retried_and_counted_once(tmp_path: Path, fid_weights: Path,
                                                               cluster: str) -> None:
    from distributed import Client

    shards = _shards(tmp_path / "shards", 4, 3, seed=1)
    marker = tmp_path / "killed"
    config = FidConfig(weights=fid_weights, dims=64, batch_size=2, use_cache=False)
    local = build_reference(shards, name="local", config=config, device="cpu", max_images=None)
    with Client(cluster) as client:
        client.register_plugin(_KillOnce(str(marker)), name="kill-once")
        try:
            dask_cfg = config.model_copy(update={"backend": "dask", "scheduler": cluster})
            info = build_reference(shards, name="dask", config=dask_cfg, device="cpu", max_images=None)
        finally:
            client.unregister_worker_plugin("kill-once")
    assert marker.exists()  # a worker did die mid-shard
    assert info.n_images == local.n_images == 12 and info.n_shards == 4
    (a, _), (b, _) = resolve_reference("local"), resolve_reference("dask")
    _same(b.mu, a.mu)
    _same(b.sigma, a.sigma)
    side = json.loads(sidecar_path(reference_path("dask")).read_text())
    assert side["build"]["scheduler"] == cluster and [s["n_images"] for s in side["shards"]] == [3, 3, 3, 3]


def test_an_interrupted_dask_build_resumes_without_redoing_finished_shards(
    tmp_path: Path, fid_weights: Path, cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    shards = _shards(tmp_path / "shards", 4, 2, seed=2)
    config = FidConfig(weights=fid_weights, dims=64, batch_size=2, use_cache=False, backend="dask", scheduler=cluster)

    def stop(done: int, total: int) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_reference(shards, name="r", config=config, device="cpu", max_images=None, on_progress=stop)
    parts = references_dir() / ".r.partial" / "parts"
    first = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.npz")}
    assert len(first) >= 1 and not reference_path("r").exists()
    with caplog.at_level(logging.INFO, logger="engine.fid.refdask"):
        info = build_reference(shards, name="r", config=config, device="cpu", max_images=None)
    assert info.n_images == 8 and not info.messages
    assert f"{len(first)} of 4 units already done" in caplog.text  # only the other units were submitted
    whole = build_reference(shards, name="whole", config=config.model_copy(update={"backend": "local",
                                                                                    "scheduler": None}),
                            device="cpu", max_images=None)
    assert whole.n_images == 8
    _same(resolve_reference("r")[0].sigma, resolve_reference("whole")[0].sigma)
    assert json.loads(sidecar_path(reference_path("r")).read_text())["build"]["units"] == 4


def test_fid_features_on_dask_equal_local_features(tmp_path: Path, fid_weights: Path, cluster: str) -> None:
    from engine.fid.run import extract_file_features

    files = sorted(_tree(tmp_path / "imgs", 7, seed=3).rglob("*.png"))
    files.insert(3, tmp_path / "missing.png")
    config = FidConfig(weights=fid_weights, dims=64, batch_size=2, use_cache=False, resize="pil-bicubic-299")
    local = extract_file_features(files, config, "cpu")
    remote = extract_file_features(files, config.model_copy(update={"backend": "dask", "scheduler": cluster}), "cpu")
    assert remote.ok == local.ok and len(remote.ok) == 7 and [s.reason for s in remote.skipped] == ["missing"]
    np.testing.assert_array_equal(remote.features, local.features)


def test_scheduler_without_dask_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="needs --backend dask"):
        FidConfig(scheduler="tcp://127.0.0.1:8786")


def test_stats_of_a_dask_build_load_like_any_reference(tmp_path: Path, fid_weights: Path, cluster: str) -> None:
    src = _tree(tmp_path / "src", 4, seed=4)
    config = FidConfig(weights=fid_weights, dims=64, batch_size=2, use_cache=False, backend="dask", scheduler=cluster)
    build_reference(src, name="x", config=config, device="cpu")
    stats, prov = load_stats(reference_path("x"))
    assert stats.n == 4 and prov is not None and prov.build is not None and prov.build.backend == "dask"
