"""End to end on a generated VTAB-1k tree (19 task folders, tiny PNGs, tiny random ViT, quick protocol),
plus resume after ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advisor.cli import main
from benchmarks.vtab.layout import check_layout
from benchmarks.vtab.protocol import get_protocol
from benchmarks.vtab.run import SweepRequest, make_units, plan_search, run_sweep
from benchmarks.vtab.tasks import TASKS
from tests.benchmarks.vtab_tree import IMG_SIZE, TINY_BACKBONE, TINY_MODEL, TINY_MODEL_ARGS, make_vtab_tree

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
_FINISHED = "SELECT hash, metrics, finished FROM trials WHERE status='finished'"


def _cli_args(root: Path, db: Path) -> list[str]:
    args = ["reproduce-vtab", str(root), "--protocol", "quick", "--random-init", "--model", TINY_MODEL,
            "--img-size", str(IMG_SIZE), "--device", "cpu", "--db", str(db)]
    for k, v in TINY_MODEL_ARGS.items():
        args += ["--model-arg", f"{k}={v}"]
    return args


def test_quick_protocol_end_to_end_with_broken_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_vtab_tree(tmp_path / "vtab")
    import shutil

    shutil.rmtree(root / "dmlab")  # missing task
    (root / "kitti" / "val200.txt").write_text("images/val200/000000.png not-a-label\n")  # malformed task
    db, out = tmp_path / "runs.sqlite", tmp_path / "out"
    assert main(_cli_args(root, db) + ["--format", "json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert "missing dmlab" in captured.err and "malformed kitti_distance" in captured.err  # reported up front
    unusable = {t["key"]: t for t in data["unusable"]}
    assert set(unusable) == {"dmlab", "kitti_distance"}
    assert unusable["dmlab"]["status"] == "missing" and "get_vtab1k.py" in unusable["dmlab"]["problems"][0]
    assert unusable["kitti_distance"]["status"] == "malformed"
    assert "not an integer" in unusable["kitti_distance"]["problems"][0]
    rows = {r["task"]: r for r in data["rows"]}
    assert set(rows) == set(TASKS) - {"dmlab", "kitti_distance"}
    for row in rows.values():  # every usable task got both methods over both final seeds
        assert row["seeds_ft"] == 2 and row["seeds_vpt"] == 2
        assert 0.0 <= row["ours_ft"] <= 100.0 and 0.0 <= row["ours_vpt"] <= 100.0
        assert row["paper_ft"] is not None and row["flag_ft"] is False  # quick runs are never flagged
    assert data["failures"] == []
    # 17 tasks x (2 FT + 2 VPT search + 2 x 2 final), one row each
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT hash) FROM trials WHERE status='finished'").fetchone() \
            == (17 * 8, 17 * 8)
        group_sizes = {r[0] for r in con.execute(
            "SELECT json_extract(metrics, '$.group_size') FROM trials WHERE method='vpt'")}
    assert group_sizes == {2}  # VPT grid and final seeds each ran as one batched unit
    written = {p.name for p in out.iterdir()}
    assert {"config.json", "table.md", "table.csv", "table.json"} <= written
    config = json.loads((out / "config.json").read_text())
    assert config["protocol"]["name"] == "quick" and config["backbone"]["model_kwargs"]["depth"] == 1
    # a rerun finds everything finished and runs nothing; it can also write the report
    html = tmp_path / "vtab.html"
    assert main(_cli_args(root, db) + ["--format", "markdown", "--out", str(out), "--report", str(html)]) == 0
    assert "| DTD | Natural |" in capsys.readouterr().out
    page = html.read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "DTD" in page
    report = json.loads((out / "report.json").read_text())
    assert report["ran"] == 0 and report["reused"] == 17 * 8


def test_paper_protocol_plans_the_full_grid(tmp_path: Path) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd", "svhn"])
    req = SweepRequest(root=root, tasks=["dtd", "svhn"], db=tmp_path / "db")
    search = plan_search(req, check_layout(root, [TASKS["dtd"], TASKS["svhn"]]))
    assert len(search) == 2 * (40 + 8)  # FT: 4 lrs x {AdamW at wd 0.01, SGD at wd 0} (the original rule)
    assert {c.train.num_prompts for c in search if c.task == "dtd"} == {TASKS["dtd"].prompt_length}
    assert {c.train.batch_size for c in search if c.method == "vpt"} == {64}
    assert {(c.train.optimizer, c.train.weight_decay, c.train.batch_size, c.train.prompt_dropout)
            for c in search if c.method == "ft"} == {("adamw", 0.01, 128, 0.0), ("sgd", 0.0, 128, 0.0)}
    units = make_units(search)
    assert sorted(len(u) for u in units) == [1] * 16 + [40, 40]
    sequential = make_units([c.model_copy(update={"engine": "fit"}) for c in search])
    assert len(sequential) == len(search)


def test_cli_refuses_paper_protocol_on_cpu_without_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    assert main(["reproduce-vtab", str(root), "--device", "cpu", "--db", str(tmp_path / "db")]) == 1
    assert "--protocol quick" in capsys.readouterr().err
    assert main(["reproduce-vtab", str(root), "--methods", "ft,lora", "--protocol", "quick"]) == 1
    assert "unknown method" in capsys.readouterr().err


_CHILD = """
import sys
from pathlib import Path
from benchmarks.vtab.protocol import get_protocol
from benchmarks.vtab.run import SweepRequest, run_sweep
from tests.benchmarks.vtab_tree import TINY_BACKBONE
req = SweepRequest(root=Path(sys.argv[1]), db=Path(sys.argv[2]), tasks=sys.argv[3].split(","), methods=("ft",),
                   protocol=get_protocol("quick", img_size=16, epochs=3, final_seeds=(42, 44, 82)),
                   backbone=TINY_BACKBONE, device="cpu")
run_sweep(req)
"""


def test_kill_9_mid_sweep_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    tasks = ["dtd", "svhn", "eurosat", "resisc45", "sun397"]
    root = make_vtab_tree(tmp_path / "vtab", tasks=tasks)
    db = tmp_path / "runs.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(db), ",".join(tasks)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    before: dict[str, tuple] = {}
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=1) as con:
                        rows = con.execute(_FINISHED).fetchall()
                except sqlite3.OperationalError:
                    rows = []
                if len(rows) >= 4:
                    break
            time.sleep(0.02)
        assert child.poll() is None, f"the sweep ended before it could be killed: {child.stderr.read().decode()[-500:]}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    with sqlite3.connect(db) as con:
        before = {h: (m, f) for h, m, f in con.execute(_FINISHED)}
        planned_total = 5 * (2 + 3)
        assert 4 <= len(before) < planned_total
    req = SweepRequest(root=root, db=db, tasks=tasks, methods=("ft",),
                       protocol=get_protocol("quick", img_size=16, epochs=3, final_seeds=(42, 44, 82)),
                       backbone=TINY_BACKBONE, device="cpu")
    report = run_sweep(req)
    assert report.reused >= len(before) and report.ran + report.reused == planned_total
    with sqlite3.connect(db) as con:
        after = {h: (m, f) for h, m, f in con.execute(_FINISHED)}
        assert con.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == planned_total
        assert con.execute("SELECT COUNT(*) FROM trials WHERE status != 'finished'").fetchone()[0] == 0
    for key, value in before.items():  # finished before the kill: kept as they were, not rerun
        assert after[key] == value
    assert all(len(c.test_accs) == 3 for c in report.cells)


def test_the_protocols_normalization_reaches_both_trainers() -> None:
    """One training configuration: the protocol's normalization reaches fit and the batched sweep alike."""
    from benchmarks.vtab.layout import LayoutReport, TaskCheck
    from benchmarks.vtab.protocol import get_protocol
    from benchmarks.vtab.run import SweepRequest, plan_search
    from engine.errors import ConfigError
    from engine.train.batched_vpt import check_batched_config

    request = SweepRequest(root=Path("/vtab"), protocol=get_protocol("quick", normalization="inception"),
                           tasks=["dtd"], methods=("ft", "vpt"))
    layout = LayoutReport(root="/vtab", tasks=[TaskCheck(key="dtd", folder="dtd", status="ok", sizes=[800])])
    configs = plan_search(request, layout)
    assert configs and {c.train.normalization for c in configs} == {"inception"}
    vpt = next(c for c in configs if c.method == "vpt")
    tc = vpt.train
    assert (tc.method, tc.normalization, tc.optimizer) == ("vpt-deep", "inception", "sgd")
    check_batched_config(tc)  # the batched sweep reads this same TrainConfig (fit_batched_vpt's config)
    with pytest.raises(ConfigError, match="batched VPT"):
        check_batched_config(next(c for c in configs if c.method == "ft").train)
