"""Does the pilot's verdict hold? A simulation with a known true difference and a seed effect.

Each replicate is one pilot's comparison: ``n`` held-out images scored 0/1 by ``k`` seeds of FT and of
VPT. The images fall in four kinds with known shares (both right, only FT right, only VPT right, both
wrong), which fixes the true difference ``delta`` and the disagreement rate ``p_d``. A seed moves a
method's accuracy as a whole: each (method, seed) draws a shift ``u ~ N(0, sigma^2)`` and turns that
share of its wrong images right (or right images wrong when ``u < 0``), on images drawn anew per seed.
The plan is the pilot's own (``engine.train.power``): ``n`` = the comparison images that make
``--min-detectable`` detectable with ``k`` seeds; the verdict is the pilot's own rule applied to every
replicate at once (``engine.train.verdict.difference_arrays`` / ``posthoc_power`` / ``decisive_mask``).

Printed per scenario: the share of replicates whose 95 % interval excludes 0, the share called
underpowered, and the share called decisive; with ``delta = 0`` the decisive share is the false
"decisive" rate (target <= alpha = 5 %), with ``delta`` = the plan's MDD it is the power (target within
5 points of the plan's 80 % when the disagreement and seed spread are as assumed). The first rows
show the old one-seed rule (an interval over images only) for comparison.

Run: ``python -m benchmarks.perf.pilot_verdict [--replicates 4000] [--target 3] [--seeds 3]``
(vectorised numpy: seconds).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Scenario", "simulate", "rates", "plan_images", "main", "BASE_ACCURACY"]

BASE_ACCURACY = 0.70
"""FT's expected accuracy in the simulation (any value away from 0 and 1 behaves alike)."""
_CHUNK = 500
"""Replicates simulated at once (bounds memory: chunk x seeds x images per method)."""


@dataclass(frozen=True)
class Scenario:
    """One simulated truth: disagreement rate, true difference (points) and seed SD (points)."""

    name: str
    discordance: float
    delta: float
    seed_sd: float


def _seeded(base: npt.NDArray[np.bool_], k: int, seed_sd: float, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """``k`` seeds of one method: each shifts its accuracy by u ~ N(0, seed_sd) points, on random images."""
    import numpy as np

    acc = base.mean(axis=-1, keepdims=True)[:, None]  # (R, 1, 1)
    shift = rng.normal(0.0, seed_sd / 100.0, (base.shape[0], k, 1))
    p_up = np.clip(shift / np.maximum(1 - acc, 1e-9), 0, 1)  # share of wrong images turned right
    p_down = np.clip(-shift / np.maximum(acc, 1e-9), 0, 1)  # share of right images turned wrong
    draw = rng.random((base.shape[0], k, base.shape[1]))
    right = base[:, None, :]
    return np.asarray(np.where(right, draw >= p_down, draw < p_up))


def simulate(replicates: int, n: int, k: int, scenario: Scenario,
             rng: np.random.Generator) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(FT, VPT) correctness, each ``(replicates, k, n)``, for ``scenario``."""
    delta = scenario.delta / 100.0
    only_ft, only_vpt = (scenario.discordance - delta) / 2, (scenario.discordance + delta) / 2
    if min(only_ft, only_vpt) < 0 or BASE_ACCURACY - only_ft < 0:
        raise ValueError(f"{scenario.name}: a difference of {scenario.delta} points needs more disagreement")
    both = BASE_ACCURACY - only_ft
    u = rng.random((replicates, n))
    ft = u < both + only_ft
    vpt = (u < both) | ((u >= both + only_ft) & (u < both + only_ft + only_vpt))
    return _seeded(ft, k, scenario.seed_sd, rng), _seeded(vpt, k, scenario.seed_sd, rng)


def rates(ft: npt.ArrayLike, vpt: npt.ArrayLike, *, target: float, assumed_seed_sd: float, by_design: bool = True,
          image_only: bool = False) -> dict[str, npt.NDArray[np.bool_] | npt.NDArray[np.float64]]:
    """Per replicate: interval excludes 0, underpowered, decisive, wrong sign (the pilot's own rule).

    ``image_only`` drops the seed term (the old rule, which a one-seed bootstrap amounts to).
    """
    import numpy as np

    from engine.train.power import ALPHA, POWER
    from engine.train.verdict import POWER_SLACK, decisive_mask, difference_arrays, posthoc_power

    s = difference_arrays(ft, vpt, assumed_seed_sd=assumed_seed_sd)
    se = np.sqrt(s["v_images"]) if image_only else s["se"]
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - ALPHA / 2)
    excludes = np.abs(s["difference"]) > z * se
    under = posthoc_power(target / 100.0, se) < POWER - POWER_SLACK
    k = min(np.shape(ft)[1], np.shape(vpt)[1])
    if image_only:  # the old rule: no seed requirement, no power check
        decisive = excludes
    else:
        decisive = decisive_mask(by_design=by_design, seeds=k, excludes_zero=excludes, underpowered=under)
    return {"excludes": excludes, "underpowered": under, "decisive": decisive,
            "difference": s["difference"]}


def plan_images(target: float, seeds: int, *, assumed_seed_sd: float) -> tuple[int, float]:
    """(comparison images, planned MDD) of the pilot's own plan for ``target`` points with ``seeds`` seeds."""
    from engine.train.power import compare_images_needed, min_detectable_difference

    n = compare_images_needed(target, seeds, seed_sd=assumed_seed_sd)
    return n, min_detectable_difference(n, seeds, seed_sd=assumed_seed_sd)


def run_scenario(scenario: Scenario, *, n: int, k: int, replicates: int, target: float, assumed_seed_sd: float,
                 seed: int, image_only: bool = False) -> dict[str, float]:
    """Shares over ``replicates`` (in chunks): excludes 0, underpowered, decisive, decisive with the wrong sign."""
    import numpy as np

    rng = np.random.default_rng(seed)
    totals = {"excludes": 0.0, "underpowered": 0.0, "decisive": 0.0, "wrong": 0.0}
    done = 0
    while done < replicates:
        r = min(_CHUNK, replicates - done)
        ft, vpt = simulate(r, n, k, scenario, rng)
        out = rates(ft, vpt, target=target, assumed_seed_sd=assumed_seed_sd, image_only=image_only)
        totals["excludes"] += float(out["excludes"].sum())
        totals["underpowered"] += float(out["underpowered"].sum())
        totals["decisive"] += float(out["decisive"].sum())
        # a decisive verdict is wrong when there is no difference, or when it names the loser
        decisive = np.asarray(out["decisive"], dtype=bool)
        wrong_sign = np.sign(out["difference"]) != np.sign(scenario.delta) if scenario.delta else np.True_
        totals["wrong"] += float((decisive & wrong_sign).sum())
        done += r
    return {key: v / replicates for key, v in totals.items()}


def _scenarios(mdd: float, assumed_seed_sd: float) -> list[Scenario]:
    sd = assumed_seed_sd
    return [
        Scenario("as assumed, no difference", 0.20, 0.0, sd),
        Scenario("as assumed, delta = MDD", 0.20, mdd, sd),
        Scenario("no seed effect, delta = MDD", 0.20, mdd, 0.0),
        Scenario("seed SD 2x assumed, no diff.", 0.20, 0.0, 2 * sd),
        Scenario("seed SD 2x assumed, delta = MDD", 0.20, mdd, 2 * sd),
        Scenario("35 % disagree, no difference", 0.35, 0.0, sd),
        Scenario("35 % disagree, delta = MDD", 0.35, mdd, sd),
        Scenario("54 % disagree, delta = MDD", 0.54, mdd, sd),
    ]


def main(argv: list[str] | None = None) -> None:
    """Simulate each scenario and print the verdict's error rates beside their targets."""
    parser = argparse.ArgumentParser(description="False-decisive rate and power of the pilot's verdict.")
    parser.add_argument("--replicates", type=int, default=4000)
    parser.add_argument("--target", type=float, default=3.0, help="--min-detectable of the simulated plan.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    from benchmarks.perf.cpuinfo import cpu_line
    from engine.train.power import ALPHA, ASSUMED_SEED_SD, POWER

    print(cpu_line())
    n, mdd = plan_images(args.target, args.seeds, assumed_seed_sd=ASSUMED_SEED_SD)
    n1, mdd1 = plan_images(args.target, 1, assumed_seed_sd=ASSUMED_SEED_SD)
    mc = (ALPHA * (1 - ALPHA) / args.replicates) ** 0.5
    print(f"plan: --min-detectable {args.target:g} -> {n:,} comparison images with {args.seeds} seeds (MDD "
          f"{mdd:.2f} points), assumed disagreement 20 %, seed SD {ASSUMED_SEED_SD:g} points; {args.replicates:,} "
          f"replicates (Monte-Carlo SE {100 * mc:.1f} points at 5 %)")
    print(f"{'scenario':<34}{'k':>3}{'excl 0':>9}{'underp.':>9}{'decisive':>10}{'wrong':>8}  target")
    t0 = time.perf_counter()
    rows = [("one seed, old rule (images only)", 1, n1, Scenario("", 0.20, 0.0, ASSUMED_SEED_SD), True),
            ("one seed, this rule", 1, n1, Scenario("", 0.20, 0.0, ASSUMED_SEED_SD), False)]
    rows += [(s.name, args.seeds, n, s, False) for s in _scenarios(mdd, ASSUMED_SEED_SD)]
    for i, (name, k, images, scenario, old) in enumerate(rows):
        r = run_scenario(scenario, n=images, k=k, replicates=args.replicates, target=args.target,
                         assumed_seed_sd=ASSUMED_SEED_SD, seed=args.seed + i, image_only=old)
        if scenario.delta == 0:
            goal = f"decisive <= {ALPHA:.0%}"
        elif scenario.discordance == 0.20 and scenario.seed_sd <= ASSUMED_SEED_SD:
            goal = f"decisive {POWER:.0%} +- 5" + (" (or more: less seed noise)" if scenario.seed_sd == 0 else "")
        else:
            goal = "underpowered (power below plan)"
        print(f"{name:<34}{k:>3}{100 * r['excludes']:>8.1f}%{100 * r['underpowered']:>8.1f}%"
              f"{100 * r['decisive']:>9.1f}%{100 * r['wrong']:>7.1f}%  {goal}", flush=True)
    print(f"{len(rows)} scenarios in {time.perf_counter() - t0:.1f} s; 'wrong' = decisive with no true difference "
          "or for the losing method")


if __name__ == "__main__":
    main()
