"""The pilot's verdict: seed-aware interval against closed forms, the status rule, and its error rates.

The simulation test is a small version of ``benchmarks/perf/pilot_verdict.py`` (a plan for 8 points, so
252 comparison images): it checks the two promises of issue 20 with a tolerance of three Monte-Carlo
standard errors of a share estimated from ``REPLICATES`` replicates (fixed seed, so it is deterministic).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.perf.pilot_verdict import Scenario, plan_images, run_scenario
from engine.train.pilot_plan import PilotPlan
from engine.train.power import (
    ASSUMED_SEED_SD,
    UNREACHABLE_IMAGES,
    compare_images_needed,
    min_detectable_difference,
    seed_variance_factor,
    seeds_needed,
)
from engine.train.verdict import judge, seed_aware_difference, verdict_status

REPLICATES = 3000
_MC = 3 * math.sqrt(0.05 * 0.95 / REPLICATES)  # 3 Monte-Carlo SEs of a 5 % share (1.2 points)
_MC_POWER = 3 * math.sqrt(0.8 * 0.2 / REPLICATES)  # 3 Monte-Carlo SEs of an 80 % share (2.2 points)


def _plan(**kw: object) -> PilotPlan:
    base: dict[str, object] = dict(
        request_key="k", n_samples=100, n_train=80, n_val=20, n_compare=400, n_labeled=600, num_classes=3, epochs=5,
        batch_size=16, img_size=32, lr_grid={"full": (1e-3,), "vpt-deep": (1.0,)}, seeds=(42, 44, 82), trials=[],
        timings=[], estimated_s=60.0, budget_s=120.0, device="cpu", precision="fp32", model="m", num_prompts=5,
        min_detectable=6.0, target_detectable=8.0, decisive_by_design=True)
    base.update(kw)
    return PilotPlan.model_validate(base)


def test_one_seed_interval_is_mcnemars_normal_approximation() -> None:
    rng = np.random.default_rng(0)
    ft = rng.random(800) < 0.7
    vpt = np.where(rng.random(800) < 0.2, ~ft, ft)
    c = seed_aware_difference(ft[None], vpt[None], assumed_seed_sd=0.0)
    d = vpt.astype(float) - ft.astype(float)
    assert c.difference == pytest.approx(100 * d.mean())
    assert c.se_images == pytest.approx(100 * d.std(ddof=1) / math.sqrt(800))
    assert c.discordance == pytest.approx(np.mean(ft != vpt))
    assert c.se_seeds == 0 and c.ci95[0] == pytest.approx(c.difference - 1.959964 * c.se, abs=1e-4)


def test_seed_variance_is_the_crossed_anova_estimate() -> None:
    # seeds shift the whole accuracy: seed 2 is right on 60 more of 600 images than seed 1
    base = np.zeros(600, dtype=bool)
    base[:300] = True
    s1, s2 = base.copy(), base.copy()
    s2[300:360] = True
    c = seed_aware_difference(np.stack([s1, s2]), np.stack([s1, s2]), assumed_seed_sd=0.0)
    seed_acc = np.array([s1.mean(), s2.mean()])
    resid = np.stack([s1, s2]).astype(float)
    resid = resid - resid.mean(0) - resid.mean(1, keepdims=True) + resid.mean()
    ms = (resid**2).sum() / (1 * 599)
    expected = math.sqrt(seed_acc.var(ddof=1) - ms / 600) * 100
    assert c.seed_sd[0] == pytest.approx(expected) and c.seed_sd_used == pytest.approx(expected)
    assert c.difference == 0 and c.se_seeds == pytest.approx(expected)  # sqrt(sd^2 / 2 + sd^2 / 2)
    # a small measured spread never counts below the assumption
    assert seed_aware_difference(np.stack([s1, s1]), np.stack([s1, s1])).seed_sd_used == ASSUMED_SEED_SD


def test_plan_budgets_for_the_seed_effect() -> None:
    from scipy import stats

    # nu = 2 seeds - 2 = 2: chi2_2 / 2 is Exp(1), and E[max(X, 1)] = 1 + 1/e
    assert seed_variance_factor(1) == 1.0 and seed_variance_factor(2) == pytest.approx(1 + math.exp(-1))
    x = np.linspace(0, 60, 60_001)  # E[max(chi2_8 / 8, 1)] by quadrature, independent of the Poisson sums
    assert seed_variance_factor(5) == pytest.approx(np.trapezoid(np.maximum(x / 8, 1) * stats.chi2.pdf(x, 8), x),
                                                    rel=1e-6)
    assert min_detectable_difference(2000, 3, seed_sd=0.0) < min_detectable_difference(2000, 3)
    assert min_detectable_difference(10**9, 3) > 0.7  # seeds bound what images can buy
    assert compare_images_needed(0.5, 3) == UNREACHABLE_IMAGES and seeds_needed(0.5) is None
    assert seeds_needed(3.0) == 1 and compare_images_needed(3.0, 2) > compare_images_needed(3.0, 3)


def test_status_rule() -> None:
    ok = dict(has_comparison=True, by_design=True, seeds=3, excludes_zero=True, underpowered=False)
    assert verdict_status(**ok) == "decisive"  # type: ignore[arg-type]
    assert verdict_status(**{**ok, "excludes_zero": False}) == "inconclusive"  # type: ignore[arg-type]
    assert verdict_status(**{**ok, "underpowered": True}) == "underpowered"  # type: ignore[arg-type]
    assert verdict_status(**{**ok, "seeds": 1}) == "indicative-only"  # type: ignore[arg-type]
    assert verdict_status(**{**ok, "by_design": False}) == "not-decisive-by-design"  # type: ignore[arg-type]
    assert verdict_status(**{**ok, "has_comparison": False}) == "no-comparison"  # type: ignore[arg-type]


def test_judge_calls_a_high_disagreement_pilot_underpowered_and_names_the_fix() -> None:
    rng = np.random.default_rng(3)
    n = 400
    # the same images are hard for a method at every seed (the plan's model), and FT and VPT are
    # independent of each other: they disagree on about half of the images, not the 20 % assumed
    ft = np.repeat((rng.random(n) < 0.5)[None], 3, axis=0)
    vpt = np.repeat((rng.random(n) < 0.62)[None], 3, axis=0)
    v = judge(_plan(), ft.tolist(), vpt.tolist())
    assert v.status == "underpowered" and not v.decisive and v.winner is None
    assert v.compared is not None and v.compared.ci95[0] > 0  # significant, yet not decisive
    assert v.posthoc_power is not None and v.posthoc_power < 0.7 and v.observed_discordance is not None
    assert v.needed_compare is not None and v.needed_compare > n
    # the same data with a plan that asked for a large difference is decisive for VPT
    loose = judge(_plan(target_detectable=30.0, min_detectable=20.0), ft.tolist(), vpt.tolist())
    assert loose.status == "decisive" and loose.winner == "vpt-deep" and loose.confidence == "high"
    one = judge(_plan(seeds=(42,)), ft[:1].tolist(), vpt[:1].tolist())
    assert one.status == "indicative-only" and not one.decisive
    assert judge(_plan(), None, None).status == "no-comparison"


@pytest.fixture(scope="module")
def small_plan() -> tuple[int, float]:
    return plan_images(8.0, 3, assumed_seed_sd=ASSUMED_SEED_SD)


def _run(scenario: Scenario, n: int, seed: int) -> dict[str, float]:
    return run_scenario(scenario, n=n, k=3, replicates=REPLICATES, target=8.0, assumed_seed_sd=ASSUMED_SEED_SD,
                        seed=seed)


def test_simulated_false_decisive_rate_is_at_most_alpha(small_plan: tuple[int, float]) -> None:
    n, _ = small_plan
    r = _run(Scenario("null", 0.20, 0.0, ASSUMED_SEED_SD), n, seed=1)
    assert r["decisive"] <= 0.05 + _MC


def test_simulated_power_matches_the_plan_when_the_disagreement_is_as_assumed(small_plan: tuple[int, float]) -> None:
    n, mdd = small_plan
    r = _run(Scenario("as assumed", 0.20, mdd, ASSUMED_SEED_SD), n, seed=2)
    assert abs(r["decisive"] - 0.80) <= 0.05 + _MC_POWER and r["wrong"] == 0.0


def test_simulated_high_disagreement_is_called_underpowered(small_plan: tuple[int, float]) -> None:
    n, mdd = small_plan
    r = _run(Scenario("35 %", 0.35, mdd, ASSUMED_SEED_SD), n, seed=3)
    assert r["underpowered"] >= 0.95 and r["decisive"] <= 0.01
