"""Threshold fitting on given FIDs (no images): separable, overlapping, ties, and the saved file."""

from __future__ import annotations

import pytest

from benchmarks.vtab.calibrate import (
    CALIBRATION_SIZES,
    check_fit,
    fit_threshold,
    leave_one_out,
    paper_low_disparity_winners,
)
from engine.errors import ConfigError
from engine.fid.calibration import Calibration, calibration_problem, load_calibration, save_calibration


def test_paper_winners_are_the_low_disparity_tasks() -> None:
    winners = paper_low_disparity_winners()
    assert len(winners) == 11
    assert {k for k, w in winners.items() if w == "FT"} == {"svhn", "patch_camelyon", "retinopathy"}


def test_separable_fids_give_midpoint_of_the_gap() -> None:
    fids = {"a": 100.0, "b": 120.0, "c": 130.0, "x": 170.0, "y": 200.0}
    winners = {"a": "VPT", "b": "VPT", "c": "VPT", "x": "FT", "y": "FT"}
    fit = fit_threshold(fids, winners)
    assert fit.threshold == pytest.approx(150.0)
    assert fit.band == (130.0, 170.0)
    assert fit.accuracy == 1.0 and fit.misclassified == []


def test_overlap_maximises_accuracy_and_band_covers_the_errors() -> None:
    # VPT: 10, 20, 30; FT: 25, 50. 22.5 and 40 both get 4/5; 40 sits in the wider gap (30..50).
    fids = {"v1": 10.0, "v2": 20.0, "v3": 30.0, "f1": 25.0, "f2": 50.0}
    winners = {"v1": "VPT", "v2": "VPT", "v3": "VPT", "f1": "FT", "f2": "FT"}
    fit = fit_threshold(fids, winners)
    assert fit.threshold == pytest.approx(40.0)
    assert fit.accuracy == pytest.approx(0.8)
    assert fit.misclassified == ["f1"]
    assert fit.band == (25.0, 50.0)
    # without the tie the more accurate threshold wins even though its gap is narrower
    fids["v0"], winners["v0"] = 5.0, "VPT"
    fids["f3"], winners["f3"] = 27.0, "FT"
    fids["f4"], winners["f4"] = 28.0, "FT"
    assert fit_threshold(fids, winners).threshold == pytest.approx(22.5)
    assert fit.band[0] <= fit.threshold <= fit.band[1]


def test_ties_go_to_the_widest_gap() -> None:
    # v 10 | f 20 | v 60 | f 64 : thresholds 15 and 62 both give 3/4; 40 gives 2/4... gaps 10 vs 4 -> 15.
    fids = {"v1": 10.0, "f1": 20.0, "v2": 60.0, "f2": 64.0}
    winners = {"v1": "VPT", "f1": "FT", "v2": "VPT", "f2": "FT"}
    fit = fit_threshold(fids, winners)
    assert fit.threshold == pytest.approx(15.0)


def test_ignores_tasks_without_a_winner_and_needs_both_classes() -> None:
    with pytest.raises(ConfigError, match="each method"):
        fit_threshold({"a": 1.0, "b": 2.0}, {"a": "VPT", "b": "VPT"})
    fit = fit_threshold({"a": 1.0, "b": 3.0, "high_task": 99.0}, {"a": "VPT", "b": "FT"})
    assert fit.n_tasks == 2 and fit.threshold == 2.0
    with pytest.raises(ConfigError, match="finite"):
        fit_threshold({"a": float("nan"), "b": 3.0}, {"a": "VPT", "b": "FT"})


def test_fit_on_paper_winners_round_trips_through_the_calibration_file(tmp_path) -> None:
    winners = paper_low_disparity_winners()
    fids = {k: (190.0 + i if w == "FT" else 120.0 + 3 * i) for i, (k, w) in enumerate(winners.items())}
    fit = fit_threshold(fids, winners)
    cal = Calibration(reference="in21k", threshold=fit.threshold, band=fit.band, task_fids=fids, method="test")
    path = save_calibration(cal, tmp_path / "cal.json")
    loaded = load_calibration(path)
    assert loaded is not None and loaded.threshold == fit.threshold
    assert max(fids[k] for k, w in winners.items() if w == "VPT") < loaded.threshold
    assert min(fids[k] for k, w in winners.items() if w == "FT") > loaded.threshold


# --- the command, end to end with generated Inception weights and reference statistics --------------------------


def _write_reference(name: str = "in21k", dims: int = 64) -> None:
    import numpy as np

    from engine.fid.frechet import FeatureStats, save_stats
    from engine.fid.reference import reference_path

    gen = np.random.default_rng(5)
    feats = gen.normal(size=(96, dims)) * 0.1
    save_stats(reference_path(name), FeatureStats(mu=feats.mean(0), sigma=np.cov(feats, rowvar=False), n=96))


@pytest.mark.slow  # random FID-Inception weights (96 MB, generated once per session) and a real extraction: 40 s
@pytest.mark.usefixtures("one_torch_thread")
def test_calibrate_command_refuses_a_fit_on_too_few_tasks(tmp_path, fid_weights, capsys) -> None:  # noqa: F811
    from advisor.cli import main
    from tests.benchmarks.vtab_tree import make_vtab_tree

    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd", "svhn"],
                          per_split={"train800": 2, "val200": 1, "test": 1})
    _write_reference()
    out = tmp_path / "cal.json"
    # 64-d features keep the covariance maths cheap (2048-d: ~10 s per FID on a busy 2-core CPU)
    argv = ["calibrate", str(root), "--reference", "in21k", "--device", "cpu", "--output", str(out), "--dims", "64"]
    # generated weights and a 96-image reference: every FID is unverified, so nothing is fitted
    assert main([*argv, "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: no VTAB-1k task could be measured") and "FID unverified, not fitted" in err
    assert main([*argv, "--json", "--allow-unverified"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: calibration refused") and "(FT: 1, VPT: 1)" in err and "nothing was written" in err
    assert not out.exists()


def test_check_fit_refuses_chance_level_and_reports_leave_one_out() -> None:
    winners = paper_low_disparity_winners()
    separable = {k: (190.0 + i if w == "FT" else 120.0 + 3 * i) for i, (k, w) in enumerate(winners.items())}
    fit = check_fit(fit_threshold(separable, winners), separable, winners)
    assert fit.loo_accuracy == pytest.approx(1.0) and fit.majority_accuracy == pytest.approx(8 / 11)
    # FIDs that interleave the winners: the in-sample fit looks fine, leave-one-out does not
    mixed = {k: 100.0 + 10 * i for i, k in enumerate(winners)}
    weak = fit_threshold(mixed, winners)
    assert leave_one_out(mixed, winners) <= weak.majority_accuracy
    with pytest.raises(ConfigError, match="leave-one-task-out accuracy .* is not above"):
        check_fit(weak, mixed, winners)
    few = {k: v for k, v in separable.items() if k != "svhn"}
    with pytest.raises(ConfigError, match=r"\(FT: 2, VPT: 8\)"):
        check_fit(fit_threshold(few, winners), few, winners)


def test_calibrate_without_reference_is_a_one_line_error(tmp_path, capsys) -> None:
    from advisor.cli import main
    from tests.benchmarks.vtab_tree import make_vtab_tree

    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"], per_split={"train800": 2, "val200": 1, "test": 1})
    assert main(["calibrate", str(root), "--reference", "nosuchref", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error:") and "nosuchref" in err


def test_run_calibration_writes_a_checked_fit_with_its_leave_one_out(tmp_path, monkeypatch) -> None:
    """The write path, with the FID measurement replaced by known per-task values (no Inception run)."""
    from types import SimpleNamespace

    import engine.fid.run as fid_run
    from benchmarks.vtab.calibrate import CalibrationRequest, run_calibration
    from benchmarks.vtab.tasks import TASKS
    from tests.benchmarks.vtab_tree import make_vtab_tree

    winners = paper_low_disparity_winners()
    fids = {k: (190.0 + i if w == "FT" else 120.0 + 3 * i) for i, (k, w) in enumerate(winners.items())}
    by_folder = {TASKS[k].folder: v for k, v in fids.items()}
    root = make_vtab_tree(tmp_path / "vtab", tasks=list(fids), per_split={"train800": 1, "val200": 1, "test": 1})

    def fake(index, reference, *, config, device, at_n=()):  # noqa: ANN001, ANN202 - stands in for the Inception run
        fid = by_folder[index.root.name]
        assert tuple(at_n) == CALIBRATION_SIZES  # every task is measured at each N (subsets of one extraction)

        def estimate(n):  # noqa: ANN001, ANN202 - FID rises at small N, as the real one does
            return SimpleNamespace(n=n, fid=fid + 1000.0 / n)

        return SimpleNamespace(fid=fid, n_images=1000, warnings=[], estimate=estimate, status="verified",
                               unverified_reasons=[], extractor="pytorch-fid-inception-v3:dims=2048:weights=6726825d00",
                               reference=SimpleNamespace(npz_sha256="ab" * 32))

    monkeypatch.setattr(fid_run, "measure_fid_against_reference", fake)
    out = tmp_path / "cal.json"
    report = run_calibration(CalibrationRequest(root=root, output=out))
    cal = load_calibration(out)
    # provenance: the weights and reference hashes, the N of every FID, only verified FIDs
    assert cal is not None and cal.reference_sha256 == "ab" * 32 and cal.inception_sha256.startswith("6726825d")
    assert cal.verified and cal.task_n == {k: 1000 for k in fids}
    assert calibration_problem(cal, "in21k", inception_sha256="6726825d", reference_sha256="ab" * 32)[0] == "ok"
    assert calibration_problem(cal, "in21k", reference_sha256="cd" * 32)[0] == "refuse"
    assert cal is not None and cal.loo_accuracy == pytest.approx(1.0) == report.fit.loo_accuracy
    assert cal.majority_accuracy == pytest.approx(8 / 11)
    assert any("leave-one-task-out accuracy 1.00" in n for n in cal.notes)
    # N bookkeeping: the top level at all 1,000 images, one level per smaller N with that N's FIDs and threshold
    assert cal.n == 1000 and [lv.n for lv in cal.levels] == [250, 500]
    for lv in cal.levels:
        assert lv.task_fids == pytest.approx({k: v + 1000.0 / lv.n for k, v in fids.items()})
        assert lv.threshold == pytest.approx(fit_threshold(lv.task_fids, winners).threshold)
    assert cal.at_n(600).n == 500 and cal.at_n(600).threshold == cal.levels[1].threshold
    assert all(lv.loo_accuracy == pytest.approx(1.0) for lv in cal.levels)  # every N passed check_fit
    # the same tree with interleaved FIDs is refused and leaves the file as it was
    by_folder.update({TASKS[k].folder: 100.0 + 10 * i for i, k in enumerate(winners)})
    before = out.read_text()
    with pytest.raises(ConfigError, match="calibration refused"):
        run_calibration(CalibrationRequest(root=root, output=out))
    assert out.read_text() == before


def test_every_n_level_passes_the_same_check_and_unverified_fids_are_not_fitted(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    import engine.fid.run as fid_run
    from benchmarks.vtab.calibrate import CalibrationRequest, run_calibration
    from benchmarks.vtab.tasks import TASKS
    from tests.benchmarks.vtab_tree import make_vtab_tree

    winners = paper_low_disparity_winners()
    fids = {k: (190.0 + i if w == "FT" else 120.0 + 3 * i) for i, (k, w) in enumerate(winners.items())}
    interleaved = {k: 100.0 + 10 * i for i, k in enumerate(winners)}  # at N = 250 the FIDs do not separate
    by_folder = {TASKS[k].folder: k for k in fids}
    root = make_vtab_tree(tmp_path / "vtab", tasks=[*fids, "clevr_count"],
                          per_split={"train800": 1, "val200": 1, "test": 1})

    def fake(index, reference, *, config, device, at_n=()):  # noqa: ANN001, ANN202
        key = by_folder.get(index.root.name)
        if key is None:  # a task measured with non-official weights: shown, never fitted
            return SimpleNamespace(fid=1.0, n_images=1000, warnings=[], status="unverified",
                                   unverified_reasons=["non-standard weights"], estimate=None, extractor="",
                                   reference=SimpleNamespace(npz_sha256=""))

        def estimate(n):  # noqa: ANN001, ANN202
            return SimpleNamespace(n=n, fid=interleaved[key] if n == 250 else fids[key] + 1000.0 / n)

        return SimpleNamespace(fid=fids[key], n_images=1000, warnings=[], estimate=estimate, status="verified",
                               unverified_reasons=[], extractor="x:weights=6726825d",
                               reference=SimpleNamespace(npz_sha256="ab" * 32))

    monkeypatch.setattr(fid_run, "measure_fid_against_reference", fake)
    out = tmp_path / "cal.json"
    report = run_calibration(CalibrationRequest(root=root, output=out))
    cal = load_calibration(out)
    assert cal is not None and [lv.n for lv in cal.levels] == [500]  # N = 250 failed check_fit: not written
    assert any(n.startswith("N = 250 not written: calibration refused") for n in cal.notes)
    unverified = next(r for r in report.tasks if r.task == "clevr_count")
    assert unverified.fid is None and unverified.problem is not None and "unverified" in unverified.problem
    assert "clevr_count" not in cal.task_fids


def test_a_calibration_without_provenance_is_refused() -> None:
    old = Calibration(reference="in21k", threshold=300.0, band=(290.0, 310.0), loo_accuracy=0.9)  # hand-written
    verdict, why = calibration_problem(old, "in21k")
    assert verdict == "refuse" and "Inception weights sha256" in why and "reference sha256" in why
    assert calibration_problem(old, "other")[0] == "other-reference"
