"""The adapters turn the real decision (advisor.decide.recommend) and a real pilot summary
(engine.train.pilot.summarize_trials) into report inputs that carry their numbers faithfully."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from advisor.decide import build_inputs, recommend
from advisor.report import write_pilot_report, write_recommend_plots, write_recommend_report, write_vtab_report
from advisor.report.adapters import from_pilot, from_recommendation, verdict_label
from engine.fid.calibration import Calibration


def test_recommendation_with_measured_fid_maps_every_part() -> None:
    rec = recommend(build_inputs(task="fine-grained", n_train=1200, fid=150.0))
    report = from_recommendation(rec)
    assert report.verdict == verdict_label(rec.recommendation, rec.lean)
    assert report.confidence == rec.confidence and report.summary == rec.headline
    assert [r.text for r in report.reasons] == [r.sentence for r in rec.reasons]
    assert [r.source for r in report.reasons] == [r.source for r in rec.reasons]
    assert [e.task for e in report.evidence] == [t.name for t in rec.nearest_tasks]
    q = report.quadrant
    assert q is not None and q.user is not None
    assert (q.user.fid, q.user.disparity) == (150.0, rec.disparity)
    assert q.threshold == rec.provenance.threshold.value
    assert len(q.points) == 5  # Table 19 only: no calibration
    t = report.size_trend
    assert t is not None and rec.size_trend is not None
    assert t.user_n == 1200 and t.expected_gap == rec.size_trend.mean_gap
    assert dict(zip(t.mean_sizes, t.mean_gaps, strict=True)) == {int(k): v for k, v in rec.size_trend.curve.items()}
    assert {s.key for s in t.series} == {g.key for g in rec.size_trend.tasks}
    assert report.provenance["FID"].startswith("150.00")


def test_unmeasured_fid_and_calibration_points() -> None:
    cal = Calibration(
        reference="in21k",
        threshold=180.0,
        band=(170.0, 190.0),
        task_fids={"clevr_count": 240.0, "svhn": 200.0},
        method="test",
        loo_accuracy=0.9, n=1000, verified=True, inception_sha256="6726825d" * 8, reference_sha256="ab" * 32,
    )
    rec = recommend(build_inputs(task="counting", fid_unmeasured_reason="no Inception weights", calibration=cal))
    report = from_recommendation(rec)
    q = report.quadrant
    assert q is not None and q.user is not None and q.user.fid is None
    assert {p.name for p in q.points} >= {"Clevr/count", "SVHN"} and len(q.points) == 7
    assert any("no Inception weights" in n for n in report.notes)


def test_write_functions_accept_the_decision_directly(tmp_path: Path) -> None:
    rec = recommend(build_inputs(task="distance", n_train=5000, fid=160.0))
    text = write_recommend_report(rec, tmp_path / "r.html").read_text(encoding="utf-8")
    assert rec.reasons[0].sentence.split()[0] in text and "data:image/png;base64," in text
    assert len(write_recommend_plots(rec, tmp_path / "p.png")) == 2


def _pilot_result():  # noqa: ANN202 - engine.train.pilot imports torch; keep it inside the test
    from engine.train.loop import FitResult
    from engine.train.pilot import PilotPlan, PilotResult, TrialResult, TrialSpec, summarize_trials

    grid = {"full": (1e-4, 1e-3), "vpt-deep": (0.5,)}
    specs = [TrialSpec(method=m, lr=lr, seed=s) for m, lrs in grid.items() for lr in lrs for s in (42, 44)]
    accs = {("full", 1e-4): (60.0, 64.0), ("full", 1e-3): (70.0, 72.0), ("vpt-deep", 0.5): (75.0, 78.0)}
    trials = []
    for spec in specs:
        acc = accs[(spec.method, spec.lr)][0 if spec.seed == 42 else 1]
        fit = FitResult(
            method=spec.method,
            best_val_acc=acc,
            best_epoch=3,
            final_val_acc=acc,
            train_losses=[1.0, 0.8, 0.5],
            val_accs=[acc - 20, acc - 5, acc],
            diverged=False,
            effective_lr=spec.lr,
            images_per_s=12.0,
            peak_memory_bytes=2_000_000_000,
            peak_memory_kind="cpu-peak-rss",
            wall_s=30.0,
            trainable_params=1000 if spec.method == "full" else 10,
            total_params=1000,
        )
        trials.append(TrialResult(key=f"k{len(trials)}", spec=spec, fit=fit))
    plan = PilotPlan(
        request_key="r",
        n_samples=500,
        n_train=400,
        n_val=100,
        num_classes=3,
        epochs=3,
        batch_size=32,
        img_size=224,
        lr_grid=grid,
        seeds=(42, 44),
        trials=specs,
        timings=[],
        estimated_s=100.0,
        budget_s=900.0,
        device="cpu",
        precision="fp32",
        model="vit_base_patch16_224.orig_in21k",
        num_prompts=10,
    )
    return PilotResult(
        plan=plan,
        methods=summarize_trials(plan, trials),
        trials=trials,
        trials_run=len(trials),
        trials_resumed=0,
        n_skipped_files=0,
        store_dir="/tmp/store",
        wall_s=180.0,
    )


def test_pilot_adapter_reports_each_method_at_its_best_lr(tmp_path: Path) -> None:
    result = _pilot_result()
    rec = recommend(build_inputs(task="counting", n_train=400))
    inputs = from_pilot(result, recommendation=rec, dataset="./mydata")
    by_method = {m.method: m for m in inputs.methods}
    assert by_method["full"].accuracies == [70.0, 72.0] and by_method["full"].best_lr == 1e-3
    assert by_method["full"].seeds == [42, 44]
    summaries = {m.method: m for m in result.methods}
    for method, seeds in by_method.items():
        assert seeds.mean == pytest.approx(summaries[method].mean_acc)
        assert seeds.std == pytest.approx(summaries[method].std_acc)
    assert by_method["vpt-deep"].trainable_percent == pytest.approx(1.0)
    assert len(inputs.curves) == 4 and all(c.epochs == [1, 2, 3] for c in inputs.curves)
    assert inputs.verdict == verdict_label(rec.recommendation, rec.lean)
    html_text = write_pilot_report(result, tmp_path / "pilot.html").read_text(encoding="utf-8")
    assert f"{statistics.fmean([75.0, 78.0]):.1f}" in html_text and html_text.count("data:image/png;base64,") == 2


def test_pilot_report_says_when_trials_could_not_be_saved() -> None:
    result = _pilot_result()
    assert from_pilot(result).provenance["store"] == result.store_dir
    unsaved = from_pilot(result.model_copy(update={"trials_unsaved": 2})).provenance["store"]
    assert unsaved.startswith(result.store_dir) and "2 trial(s) could not be saved" in unsaved


def test_empty_pilot_still_reports(tmp_path: Path) -> None:
    result = _pilot_result()
    empty = result.model_copy(update={"trials": [], "methods": []})
    text = write_pilot_report(empty, tmp_path / "p.md").read_text(encoding="utf-8")
    assert "No trial has finished yet." in text
    assert list(tmp_path.glob("*.png")) == []  # no figures without finished trials


def _vtab_table():  # noqa: ANN202 - benchmarks.vtab imports the training engine; keep it inside the test
    from benchmarks.vtab.tables import TaskRow, VtabTable

    rows = [
        TaskRow(
            task="cifar100",
            name="CIFAR-100",
            group="Natural",
            n_train=800,
            paper_ft=64.5,
            paper_vpt=77.7,
            ours_ft=62.0,
            ours_ft_std=0.5,
            ours_vpt=78.0,
            ours_vpt_std=0.4,
            seeds_ft=5,
            seeds_vpt=5,
            diff_ft=-2.5,
            diff_vpt=0.3,
            flag_ft=True,
        ),
        TaskRow(
            task="cifar100",
            name="CIFAR-100",
            group="Natural",
            n_train=5000,
            paper_ft=85.0,
            paper_vpt=87.1,
            ours_ft=84.0,
            ours_ft_std=0.3,
            ours_vpt=86.5,
            ours_vpt_std=0.2,
            seeds_ft=5,
            seeds_vpt=5,
            diff_ft=-1.0,
            diff_vpt=-0.6,
        ),
        TaskRow(
            task="dmlab",
            name="DMLab",
            group="Structured",
            n_train=800,
            paper_ft=40.4,
            paper_vpt=45.3,
            ours_vpt=44.0,
            ours_vpt_std=1.0,
            seeds_vpt=3,
            diff_vpt=-1.3,
        ),
    ]
    return VtabTable(protocol="paper", compared=True, rows=rows, groups=[], notes=["a table note"])


def test_vtab_adapter_uses_the_800_split_and_builds_data_size_curves(tmp_path: Path) -> None:
    from advisor.report.adapters import from_vtab_table

    inputs = from_vtab_table(_vtab_table())
    assert [r.task for r in inputs.results] == ["CIFAR-100", "DMLab"]
    cifar = inputs.results[0]
    assert (cifar.ours_ft, cifar.paper_ft, cifar.n_seeds) == (62.0, 64.5, 5)
    assert inputs.split.startswith("800/200")
    assert inputs.notes[0] == "a table note" and any("CIFAR-100" in n and "-2.5" in n for n in inputs.notes)
    ours = {(p.method, p.n_train) for p in inputs.data_size if p.origin == "ours"}
    assert ours == {("FT", 800), ("FT", 5000), ("VPT", 800), ("VPT", 5000)}  # DMLab has one size: no curve
    paper = {(p.method, p.n_train): p.accuracy for p in inputs.data_size if p.origin == "paper"}
    assert paper[("FT", 10000)] == 88.6 and paper[("VPT", 400)] == 70.6  # Table 5, CIFAR-100
    assert {p.task for p in inputs.data_size} == {"CIFAR-100"}
    text = write_vtab_report(_vtab_table(), tmp_path / "vtab.html").read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 2 and "-2.5" in text


def test_evidence_rows_keep_the_papers_winner_and_the_catch_up_range() -> None:
    rec = recommend(build_inputs(task="clevr_distance", n_train=800))  # 58.2(3) vs 58.2(2): VPT
    report = from_recommendation(rec)
    assert [(e.task, e.winner) for e in report.evidence] == [("Clevr/distance", "VPT")]
    assert report.size_trend is not None and rec.size_trend is not None
    assert report.size_trend.catch_up_note == rec.size_trend.catch_up_note
