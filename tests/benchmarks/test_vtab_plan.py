"""``reproduce-vtab --plan``: per task and method the batch, warm-up and every grid point's optimiser (issue 21).

The plan must say what the sweep trains: its runs are checked against the trials ``plan_search`` builds, and
the command must print it without training, reading data or creating a store.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from advisor.cli import main
from benchmarks.vtab.layout import LayoutReport, TaskCheck
from benchmarks.vtab.plan import PLAN_COLUMNS, build_plan, plan_markdown, plan_rows
from benchmarks.vtab.protocol import FT_LRS, WEIGHT_DECAYS, get_protocol
from benchmarks.vtab.run import SweepRequest, plan_search
from benchmarks.vtab.tasks import TASKS


def _request(**kw: object) -> SweepRequest:
    return SweepRequest(root=Path("/vtab"), **kw)  # type: ignore[arg-type]


def test_the_paper_plan_lists_every_task_method_and_grid_point() -> None:
    plan = build_plan(_request())
    assert [t.task for t in plan.tasks] == list(TASKS)
    assert (plan.search_trials, plan.final_trials) == (19 * (8 + 40), 19 * 2 * 5)
    for t in plan.tasks:
        ft, vpt = t.methods
        assert (ft.method, ft.engine_method, ft.batch_size, ft.warmup_epochs, ft.epochs) == ("ft", "full", 128, 5, 100)
        assert (vpt.method, vpt.engine_method, vpt.batch_size, vpt.warmup_epochs) == ("vpt", "vpt-deep", 64, 10)
        assert vpt.num_prompts == TASKS[t.task].prompt_length and ft.num_prompts == 0
        assert [(p.lr, p.weight_decay) for p in ft.points] == [(lr, wd) for lr in FT_LRS for wd in WEIGHT_DECAYS]
        assert [(p.optimizer, p.effective_weight_decay) for p in ft.points] == [
            ("adamw", 0.01), ("adamw", 0.01), ("adamw", 0.01), ("sgd", 0.0)] * len(FT_LRS)
        assert (ft.search_runs, vpt.search_runs) == (8, 40)
    assert any("optimizer.py" in n for n in plan.notes) and any("ft_warmup_epochs=10" in n for n in plan.notes)


@pytest.mark.parametrize("rule", ["original", "nominal"])
def test_the_plan_shows_the_runs_the_sweep_trains(rule: str) -> None:
    request = _request(protocol=get_protocol("paper", optimizer_rule=rule), tasks=["dtd", "kitti"])
    layout = LayoutReport(root="/vtab", tasks=[TaskCheck(key=k, folder=TASKS[k].folder, status="ok", sizes=[800])
                                               for k in ("dtd", "kitti_distance")])
    trials = plan_search(request, layout)
    plan = build_plan(request)
    assert plan.search_trials == len(trials)
    for t in plan.tasks:
        for m in t.methods:
            planned = {(p.lr, p.effective_weight_decay, p.optimizer, m.batch_size, m.warmup_epochs)
                       for p in m.points if p.same_run_as is None}
            built = {(c.train.lr, c.train.weight_decay, c.train.optimizer, c.train.batch_size, c.train.warmup_epochs)
                     for c in trials if c.task == t.task and c.method == m.method}
            assert planned == built and len(built) == m.search_runs


def test_plan_rows_and_markdown_have_one_row_per_point() -> None:
    plan = build_plan(_request(tasks=["svhn"], methods=("ft",), sizes=(800, 5000)))
    rows = plan_rows(plan)
    assert len(rows) == 16 and all(len(r) == len(PLAN_COLUMNS) for r in rows)
    assert rows[1][:7] == ["svhn", "ft", "0.001", "0.001", "adamw", "0.01", ""]
    assert rows[1][-1] == "lr 0.001, wd 0.01" and rows[3][4:7] == ["sgd", "0", "0.9"]
    assert plan.search_trials == 2 * 8 and plan.final_trials == 2 * 5
    assert plan_markdown(plan).count("\n| svhn | ft |") == 16


def test_cli_plan_prints_and_trains_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "never.sqlite"
    base = ["reproduce-vtab", str(tmp_path / "no-such-root"), "--db", str(db), "--plan", "--tasks", "dtd,clevr_count"]
    assert main(base + ["--device", "cpu"]) == 0  # the paper protocol on a CPU: a plan needs no --yes
    out = capsys.readouterr().out
    assert "AdamW 0.01*" in out and "SGD 0" in out and "4 AdamW + 4 SGD" in out and "40 SGD" in out
    assert main(base + ["--format", "json", "--protocol-set", "optimizer_rule=nominal"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [t["task"] for t in data["tasks"]] == ["dtd", "clevr_count"]
    assert {p["optimizer"] for p in data["tasks"][0]["methods"][0]["points"]} == {"adamw"}
    assert main(base + ["--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == list(PLAN_COLUMNS) and len(rows) == 1 + 2 * (16 + 40)
    assert not db.exists()
