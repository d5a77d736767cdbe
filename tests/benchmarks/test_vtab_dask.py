"""The Dask backend on a real local cluster (loopback): results equal the local backend's."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.vtab.protocol import get_protocol
from benchmarks.vtab.run import SweepRequest, run_sweep
from benchmarks.vtab.store import TrialStore
from engine.errors import ConfigError
from tests.benchmarks.vtab_tree import TINY_BACKBONE, make_vtab_tree

pytestmark = pytest.mark.usefixtures("one_torch_thread")

distributed = pytest.importorskip("dask.distributed")


def _request(root: Path, db: Path, **kw) -> SweepRequest:
    return SweepRequest(root=root, db=db, tasks=["dtd"], protocol=get_protocol("quick", img_size=16),
                        backbone=TINY_BACKBONE, device="cpu", **kw)


def test_dask_local_cluster_runs_trials_like_local(tmp_path: Path) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp://",
                                  dashboard_address=None) as cluster:
        report = run_sweep(_request(root, tmp_path / "dask.sqlite", backend="dask",
                                    scheduler=cluster.scheduler_address))
    assert report.failures == [] and report.ran == 8
    local = run_sweep(_request(root, tmp_path / "local.sqlite"))
    with TrialStore(tmp_path / "dask.sqlite") as a, TrialStore(tmp_path / "local.sqlite") as b:
        ra = {r.hash: r.metrics["eval_acc"] for r in a.records()}
        rb = {r.hash: r.metrics["eval_acc"] for r in b.records()}
    assert ra == rb and len(ra) == 8  # a trial is a pure function of its config, wherever it runs
    assert [c.mean for c in report.cells] == [c.mean for c in local.cells]


def test_dask_backend_needs_a_reachable_scheduler(tmp_path: Path) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    with pytest.raises(ConfigError, match="--scheduler"):
        run_sweep(_request(root, tmp_path / "db", backend="dask"))
