"""advisor.decide: the paper's rules against the paper's tables (pure, no torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from advisor.decide import (
    DEFAULT_THRESHOLD,
    LOW_DISPARITY_VPT_WINS,
    build_inputs,
    classify_similarity,
    recommend,
    reconcile_disparity,
)
from advisor.schemas import MethodScore, PairedDifference, PilotEvidence, Recommendation
from engine.fid.calibration import Calibration
from engine.errors import ConfigError, UnknownTaskError
from engine.paper import VTAB_TASKS, backbone_results, fgvc_table

FGVC = {r.key: r for r in fgvc_table()}


def _rec(**kw: object) -> Recommendation:
    pilot = kw.pop("pilot", None)
    return recommend(build_inputs(**kw), pilot)  # type: ignore[arg-type]


# --- disparity reconciliation -------------------------------------------------------------------------

def test_reconcile_disparity() -> None:
    assert reconcile_disparity("counting", None) == ("high", "--task counting")
    assert reconcile_disparity(None, "low") == ("low", "--disparity")
    with pytest.raises(ConfigError, match="mutually exclusive"):
        reconcile_disparity("counting", "high")
    with pytest.raises(ConfigError, match="--task TYPE"):
        reconcile_disparity(None, None)
    with pytest.raises(ConfigError, match="'low' or 'high'"):
        reconcile_disparity(None, "medium")
    with pytest.raises(UnknownTaskError):
        reconcile_disparity("countng", None)


# --- the default threshold is derived from Table 19 --------------------------------------------------

def test_default_threshold_comes_from_table_19() -> None:
    vpt_max = max(r.fid for r in FGVC.values() if r.vpt > r.ft)
    ft_min = min(r.fid for r in FGVC.values() if r.ft > r.vpt)
    assert DEFAULT_THRESHOLD.band == (vpt_max, ft_min)
    assert DEFAULT_THRESHOLD.value == pytest.approx((vpt_max + ft_min) / 2)
    assert "not printed by the paper" in DEFAULT_THRESHOLD.description
    assert DEFAULT_THRESHOLD.source == "table19-default"


def test_table_19_rows_keep_their_observed_side() -> None:
    for row in FGVC.values():
        side = classify_similarity(row.fid, DEFAULT_THRESHOLD)
        assert side == ("dissimilar" if row.winner == "FT" else "similar"), row.key


# --- quadrants against the paper ----------------------------------------------------------------------

@pytest.mark.parametrize("task", ["counting", "distance", "orientation", "azimuth", "elevation", "location",
                                  *[k for k, t in VTAB_TASKS.items() if t.disparity == "high"]])
@pytest.mark.parametrize("n", [100, 400, 800, 1000])
def test_high_disparity_small_n_gives_vpt(task: str, n: int) -> None:
    rec = _rec(task=task, n_train=n)
    assert rec.recommendation == "VPT"
    assert rec.confidence == "high"
    assert any("does not depend" in r.sentence for r in rec.reasons)  # FID unmeasured: rule does not need it


@pytest.mark.parametrize("fid", [None, 120.0, 250.0])
def test_high_disparity_ignores_similarity(fid: float | None) -> None:
    assert _rec(disparity="high", n_train=800, fid=fid).recommendation == "VPT"


def test_stanford_cars_row_gives_ft() -> None:
    cars = FGVC["stanford_cars"]
    rec = _rec(task="fine-grained", fid=cars.fid, n_train=800)
    assert rec.recommendation == cars.winner == "FT"
    assert rec.similarity == "dissimilar"
    text = " ".join(r.sentence for r in rec.reasons)
    assert "not printed by the paper" in text and "does not specify" in text
    assert any(r.source == "Table 19" for r in rec.reasons)


@pytest.mark.parametrize("key", ["cub200", "nabirds", "oxford_flowers", "stanford_dogs"])
def test_other_fgvc_rows_give_vpt(key: str) -> None:
    row = FGVC[key]
    assert row.fid <= DEFAULT_THRESHOLD.band[0]  # at or below the band, i.e. outside it
    rec = _rec(task="fine-grained", fid=row.fid, n_train=800)
    assert rec.recommendation == row.winner == "VPT"


@pytest.mark.parametrize("frac", [0.01, 0.5, 0.99])
def test_fid_inside_the_band_gives_pilot(frac: float) -> None:
    lo, hi = DEFAULT_THRESHOLD.band
    rec = _rec(disparity="low", fid=lo + frac * (hi - lo), n_train=800)
    assert rec.recommendation == "pilot" and rec.similarity == "borderline" and rec.confidence == "low"
    assert rec.lean in ("FT", "VPT")


def test_low_disparity_without_fid_uses_size_and_win_rate() -> None:
    wins, total = LOW_DISPARITY_VPT_WINS
    assert (wins, total) == (sum(t.winner_800 == "VPT" for t in VTAB_TASKS.values() if t.disparity == "low"),
                             sum(t.disparity == "low" for t in VTAB_TASKS.values()))
    rec = _rec(disparity="low", n_train=800, fid_unmeasured_reason="no Inception weights in /x")
    assert rec.similarity == "unmeasured"
    assert rec.recommendation == "VPT"  # mean gap at 800 is positive (Table 5)
    assert rec.confidence in ("low", "medium")
    sim = next(r for r in rec.reasons if r.rule == "similarity")
    assert "unmeasured" in sim.sentence and "no Inception weights in /x" in sim.sentence
    assert f"{wins} of {total}" in sim.sentence


def test_large_n_shifts_to_ft() -> None:
    assert _rec(disparity="low", n_train=20000).recommendation == "FT"
    assert _rec(disparity="low", n_train=20000, fid=150.0).recommendation in ("FT", "pilot")
    big = _rec(task="counting", n_train=20000)
    assert big.recommendation == "FT" and big.confidence == "medium"
    mid = _rec(task="counting", n_train=5000)
    assert mid.recommendation == "pilot" and mid.lean == "FT"
    small = _rec(disparity="low", n_train=400, fid=FGVC["stanford_cars"].fid)
    assert small.recommendation == "FT" and small.confidence != "high"  # size trend disagrees at 400


def test_unknown_n_caps_confidence() -> None:
    rec = _rec(task="counting")
    assert rec.size_trend is not None and rec.size_trend.n_assumed
    assert rec.recommendation == "VPT" and rec.confidence == "medium"


# --- backbones (Appendix C) ---------------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["mae", "mocov3"])
@pytest.mark.parametrize("disparity", ["low", "high"])
def test_self_supervised_backbones_give_ft(backbone: str, disparity: str) -> None:
    rec = _rec(disparity=disparity, n_train=800, fid=150.0, backbone=backbone)
    assert rec.recommendation == "FT"
    res = backbone_results(backbone)  # type: ignore[arg-type]
    groups = ["Structured"] if disparity == "high" else ["Natural", "Specialized"]
    ft_wins = sum(res[g].ft_wins for g in groups)
    assert rec.backbone is not None and rec.backbone.ft_wins == ft_wins
    assert any(r.rule == "backbone" and f"FT wins {ft_wins}" in r.sentence for r in rec.reasons)


def test_swin_reports_appendix_c_honestly() -> None:
    high = _rec(disparity="high", n_train=800, backbone="swin-in21k")
    assert high.recommendation == "FT"  # VPT wins 0/8 Structured (Table 9)
    low = _rec(disparity="low", n_train=800, fid=150.0, backbone="swin-in21k")
    assert low.backbone is not None and low.backbone.groups["Natural"][0] == 6
    assert low.backbone.groups["Specialized"][0] == 0 and low.confidence == "low"


# --- threshold precedence -----------------------------------------------------------------------------

def _cal(reference: str = "in21k", **kw: object) -> Calibration:
    fids = {k: (100.0 if i % 2 else 140.0) for i, k in enumerate(VTAB_TASKS)}
    return Calibration(reference=reference, threshold=120.0, band=(115.0, 125.0), task_fids=fids,
                       method="test", **kw)  # type: ignore[arg-type]


def test_user_threshold_overrides() -> None:
    rec = _rec(disparity="low", fid=150.0, n_train=800, fid_threshold=140.0)
    assert rec.provenance.threshold.source == "user" and rec.recommendation == "FT"


def test_calibration_replaces_the_default_when_the_reference_matches() -> None:
    rec = _rec(disparity="low", fid=150.0, n_train=800, calibration=_cal())
    assert rec.provenance.threshold.source == "calibration"
    assert rec.similarity == "dissimilar" and rec.recommendation == "FT"
    assert rec.size_trend is not None and "calibration" in rec.size_trend.grouping
    fids = _cal().task_fids
    assert all(fids[t.key] > 120.0 for t in rec.size_trend.tasks)  # same side of the threshold only
    nearest = [t for t in rec.nearest_tasks if t.fid is not None]
    assert [abs(t.fid - 150.0) for t in nearest] == sorted(abs(t.fid - 150.0) for t in nearest)  # type: ignore[operator]
    other = _rec(disparity="low", fid=150.0, n_train=800, calibration=_cal("other-ref"))
    assert other.provenance.threshold.source == "table19-default" and other.similarity == "similar"
    assert any("ignored" in r.sentence for r in other.reasons)
    path_ref = _rec(disparity="low", fid=150.0, calibration=_cal(), reference="/refs/in21k.npz")
    assert path_ref.provenance.threshold.source == "calibration"


# --- pilot evidence -----------------------------------------------------------------------------------

def _pilot(ft: float, vpt: float, ci95: tuple[float, float] | None = None, ci99: tuple[float, float] | None = None,
           *, by_design: bool = True) -> PilotEvidence:
    diff = vpt - ft
    lo, hi = ci95 if ci95 is not None else (diff - 2.0, diff + 2.0)
    paired = PairedDifference(vpt_method="vpt-deep", ft_method="full", difference=diff, ci95=(lo, hi),
                              ci99=ci99 or (lo - 1.0, hi + 1.0), n_compare=1800, discordance=0.2)
    return PilotEvidence(n_train=400, n_val=100, paired=paired, decisive_by_design=by_design,
                         min_detectable=3.0 if by_design else 12.0, target_detectable=3.0, scores=[
        MethodScore(method="full", mean=ft, std=0.5, n_seeds=3),
        MethodScore(method="vpt-deep", mean=vpt, std=0.5, n_seeds=3),
        MethodScore(method="vpt-shallow", mean=vpt - 5, std=0.5, n_seeds=3)])


def test_decisive_pilot_outranks_the_priors_and_confidence_follows_the_interval() -> None:
    cars = FGVC["stanford_cars"].fid
    rec = _rec(disparity="low", fid=cars, n_train=800, pilot=_pilot(ft=60.0, vpt=70.0))
    assert rec.recommendation == "VPT" and rec.confidence == "high"  # 99 % interval [7, 13] excludes 0
    assert rec.pilot is not None and rec.pilot.decisive and rec.pilot.vpt is not None
    assert rec.pilot.vpt.method == "vpt-deep" and rec.pilot.interval == (8.0, 12.0)
    assert rec.reasons[0].rule == "pilot" and "excludes zero" in rec.reasons[0].sentence
    medium = _rec(disparity="low", fid=cars, n_train=800, pilot=_pilot(60.0, 63.0, (0.5, 5.5), (-0.3, 6.3)))
    assert medium.recommendation == "VPT" and medium.confidence == "medium"


def test_interval_including_zero_keeps_the_prior() -> None:
    cars = FGVC["stanford_cars"].fid
    # 71 vs 70 with a tight seed spread is not decisive when the paired interval straddles zero
    rec = _rec(disparity="low", fid=cars, n_train=800, pilot=_pilot(ft=70.0, vpt=71.0, ci95=(-2.1, 4.0)))
    assert rec.pilot is not None and not rec.pilot.decisive
    assert rec.pilot.margin == pytest.approx(3.05)
    assert rec.recommendation == "FT" and "includes zero" in rec.reasons[0].sentence


def test_not_decisive_by_design_never_changes_the_answer() -> None:
    lo, hi = DEFAULT_THRESHOLD.band
    for fid in ((lo + hi) / 2, FGVC["stanford_cars"].fid):
        base = _rec(disparity="low", fid=fid, n_train=800)
        rec = _rec(disparity="low", fid=fid, n_train=800, pilot=_pilot(60.0, 80.0, by_design=False))
        assert rec.pilot is not None and not rec.pilot.decisive and not rec.pilot.by_design
        assert (rec.recommendation, rec.confidence, rec.lean) == (base.recommendation, base.confidence, base.lean)
        assert "not decisive by design" in rec.reasons[0].sentence


def test_pilot_breaks_a_borderline_tie_and_handles_missing_methods() -> None:
    lo, hi = DEFAULT_THRESHOLD.band
    rec = _rec(disparity="low", fid=(lo + hi) / 2, n_train=800, pilot=_pilot(ft=70.0, vpt=70.4))
    assert rec.recommendation == "VPT" and rec.confidence == "low"
    partial = PilotEvidence(n_train=10, n_val=10, scores=[MethodScore(method="linear", mean=50)])
    rec2 = _rec(task="counting", n_train=800, pilot=partial)
    assert rec2.recommendation == "VPT" and "cannot be compared" in rec2.reasons[0].sentence
    unpaired = PilotEvidence(n_train=40, n_val=10, scores=[MethodScore(method="FT", mean=60, std=0.1, n_seeds=3),
                                                           MethodScore(method="VPT", mean=80, std=0.1, n_seeds=3)])
    rec3 = _rec(task="counting", n_train=800, pilot=unpaired)
    assert rec3.pilot is not None and not rec3.pilot.decisive and "no paired comparison" in rec3.reasons[0].sentence


# --- output contract ----------------------------------------------------------------------------------

def test_every_reason_has_a_source_and_json_roundtrips() -> None:
    for kw in ({"task": "counting", "n_train": 500}, {"disparity": "low", "fid": 182.487},
               {"disparity": "low", "backbone": "mae"}):
        rec = _rec(**kw)
        assert rec.reasons and all(r.source and r.sentence.endswith(".") for r in rec.reasons)
        assert Recommendation.model_validate_json(rec.model_dump_json()) == rec
        assert rec.nearest_tasks and all(t.disparity == rec.disparity for t in rec.nearest_tasks)


def test_nearest_tasks_start_with_related_ones() -> None:
    rec = _rec(task="counting", n_train=5000)
    first = rec.nearest_tasks[0]
    assert first.key == "clevr_count" and first.n_train == 5000
    vtab = _rec(task="dsprites_loc", n_train=800)
    assert vtab.nearest_tasks[0].key == "dsprites_location" and vtab.nearest_tasks[0].why == "same task"


def test_decide_does_not_import_torch() -> None:
    code = ("import sys, json; import advisor.decide as d; "
            "d.recommend(d.build_inputs(task='counting', n_train=800)); print(json.dumps('torch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


def test_calibrated_side_without_data_at_n_falls_back_to_disparity() -> None:
    fids = {k: 100.0 for k in VTAB_TASKS}
    fids["caltech101"] = 200.0  # the only dissimilar task, printed only at 400 and 800 (Table 5)
    cal = Calibration(reference="in21k", threshold=150.0, band=(150.0, 150.0), task_fids=fids)
    small = _rec(disparity="low", fid=180.0, n_train=800, calibration=cal)
    assert small.size_trend is not None and [t.key for t in small.size_trend.tasks] == ["caltech101"]
    big = _rec(disparity="low", fid=180.0, n_train=5000, calibration=cal)
    assert big.size_trend is not None and "by disparity only" in big.size_trend.grouping
    assert len(big.size_trend.tasks) > 1
