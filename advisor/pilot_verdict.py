"""The pilot's verdict and FT+VPT ensemble in words, for the terminal, the report, JSON and the answer.

The numbers and the status come from ``engine.train.verdict`` and ``engine.train.ensemble``; this module
only says them (pure, no torch), so every output reads one sentence for one result.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.train.ensemble import EnsembleResult
    from engine.train.verdict import Verdict

__all__ = ["verdict_text", "ensemble_text", "format_params", "STATUS_WORDS"]

STATUS_WORDS = {
    "decisive": "decisive",
    "inconclusive": "inconclusive",
    "underpowered": "underpowered",
    "indicative-only": "indicative only",
    "not-decisive-by-design": "not decisive by design",
    "no-comparison": "no comparison",
}
"""How each ``engine.train.verdict.PilotStatus`` is written."""


def _budget(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def format_params(n: int) -> str:
    """``86.6M``, ``9.2k`` or ``512``."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _fixes(v: Verdict) -> str:
    c = v.compared
    fix = []
    if v.needed_compare is not None and c is not None:
        fix.append(f"about {v.needed_compare:,} comparison images (it had {c.n_images:,})")
    if v.needed_seeds is not None:
        budget = f", about --budget {_budget(v.needed_budget_s)}" if v.needed_budget_s else ""
        fix.append(f"--seeds {v.needed_seeds}{budget}")
    return " or ".join(fix) if fix else "more comparison images and seeds"


def verdict_text(v: Verdict) -> str:
    """The status, the figures behind it and, when underpowered, what would restore the planned power."""
    if v.status == "no-comparison" or v.compared is None:
        return ("No verdict: the pilot needs full finetuning and a VPT variant scored on held-out comparison "
                "images.")
    c = v.compared
    head = (f"{c.other} − {c.baseline} on {c.n_images:,} held-out images: {c.difference:+.1f} points, 95 % interval "
            f"[{c.ci95[0]:+.1f}, {c.ci95[1]:+.1f}] over images and {v.seeds} seed(s)")
    met = f"the methods disagreed on {c.discordance:.0%} of images (the plan assumed {v.assumed_discordance:.0%})"
    if v.measured_seed_sd is not None:
        met += f" and a method's accuracy moved {v.measured_seed_sd:.1f} points from seed to seed (assumed " \
               f"{v.assumed_seed_sd:g})"
    power = f"{100 * (v.posthoc_power or 0.0):.0f} %"
    if v.status == "not-decisive-by-design":
        return (f"{head}: not decisive by design, the plan could only detect {v.planned_mdd:.1f} points, not the "
                f"{v.target_detectable:g} asked.")
    if v.status == "indicative-only":
        return (f"{head}: indicative only. One seed cannot show how far a method's accuracy moves from seed to seed, "
                "so the interval may be too narrow; run --seeds 2 or more for a verdict that can decide.")
    if v.status == "underpowered":
        return (f"{head}: underpowered, so not decisive. {met[0].upper()}{met[1:]}, so the power to detect "
                f"{v.target_detectable:g} points fell to {power} (planned {100 * v.planned_power:.0f} %; this pilot "
                f"detects {v.posthoc_mdd:.1f} points). {_fixes(v)[0].upper()}{_fixes(v)[1:]} would restore it.")
    tail = (f"decisive for {v.winner} (confidence {v.confidence})" if v.decisive
            else "inconclusive, the interval includes 0")
    return f"{head}: {tail}. Power at {v.target_detectable:g} points {power} as met: {met}."


def ensemble_text(e: EnsembleResult) -> str:
    """The ensemble's accuracy, its interval against the better single method, and its cost."""
    if not e.available or e.versus_best is None or e.members is None or e.cost is None:
        return f"FT+VPT ensemble unavailable: {e.reason}."
    d = e.versus_best
    cost = (f"it costs {e.cost.forward_passes} forward passes and {e.cost.backbones} backbones at inference "
            f"({format_params(e.cost.params_at_inference)} parameters); when the FT model is kept anyway it adds "
            f"only VPT's prompts and head ({format_params(e.cost.params_beyond_ft)} parameters) on the frozen "
            "pretrained backbone")
    head = (f"FT+VPT ensemble ({e.members[0]} + {e.members[1]}, mean of probabilities, {e.pairs} seed pair(s)): "
            f"{e.accuracy or 0.0:.1f} %, {d.difference:+.1f} points against {e.best_single} alone, 95 % interval "
            f"[{d.ci95[0]:+.1f}, {d.ci95[1]:+.1f}]")
    if e.offered:
        return f"{head}: the ensemble beats either method on your data; {cost}."
    why = "one seed pair cannot show its seed spread" if e.pairs < 2 else "the interval does not lie above 0"
    return f"{head}: not offered ({why})."
