"""Reasons that state the paper's rules, and the reading of a pilot (used by ``advisor.answer``).

``similarity_reason`` and ``quadrant_reason`` put Fig. 1's quadrants (Han et al., ICLR 2024) into words;
the answer itself comes from the vote of experiments in ``advisor.evidence``. ``read_pilot`` decides
whether pilot results on the user's data are beyond seed noise. Pure, no torch.
"""

from __future__ import annotations

import math
from typing import Literal

from advisor.schemas import (
    AdvisorInputs,
    MethodScore,
    PilotEvidence,
    PilotVerdict,
    Reason,
    Similarity,
    SimilarityThreshold,
)
from engine.paper import VTAB_TASKS, backbone_results
from engine.train.methods import family_of

__all__ = [
    "LOW_DISPARITY_VPT_WINS",
    "PILOT_NOISE_SIGMAS",
    "REFERENCE_CAVEAT",
    "SINGLE_SEED_MARGIN",
    "THRESHOLD_LABEL",
    "Similarity",
    "quadrant_reason",
    "read_pilot",
    "similarity_reason",
]

THRESHOLD_LABEL = "derived from Table 19 (5 FGVC datasets), not printed by the paper"
REFERENCE_CAVEAT = (
    "The paper measured FID against its ImageNet-21k pretraining data with a reference set it does not "
    "specify; an FID is only comparable with a threshold measured against the same kind of reference"
)
LOW_DISPARITY_VPT_WINS: tuple[int, int] = (
    sum(1 for t in VTAB_TASKS.values() if t.disparity == "low" and t.winner_800 == "VPT"),
    sum(1 for t in VTAB_TASKS.values() if t.disparity == "low"),
)
"""(VPT wins, tasks) over Natural + Specialized at the 800/200 split (Tables 1-2)."""

PILOT_NOISE_SIGMAS = 2.0
"""A pilot difference must exceed this many pooled seed standard deviations (our rule)."""
SINGLE_SEED_MARGIN = 2.0
"""Margin in accuracy points when either method has a single seed (no spread to measure; our rule)."""


def _signed(x: float) -> str:
    return f"{x:+.1f}"


def similarity_reason(inputs: AdvisorInputs, thr: SimilarityThreshold, sim: Similarity) -> Reason:
    """The similarity axis in one reason: the FID's side of the threshold, or why it does not decide."""
    src = {"table19-default": "Table 19", "calibration": "calibration file", "user": "--fid-threshold"}[thr.source]
    if sim in ("unmeasured", "unverified"):
        why = inputs.fid_unmeasured_reason or "no FID was given (pass a DATASET to measure one, or --fid)"
        if sim == "unverified":
            why = f"FID {inputs.fid:.1f} is unverified: " + "; ".join(inputs.fid_unverified_reasons)
        if inputs.disparity == "high":
            tail = ("for high-disparity tasks the paper's rule does not depend on it: VPT won all 8 Structured "
                    "tasks at 800 samples (Table 2)")
        else:
            wins, total = LOW_DISPARITY_VPT_WINS
            tail = (f"for low-disparity tasks similarity is what separates FT from VPT, so the answer rests on "
                    f"the vote of the comparable tasks at your size (at 800 samples VPT won {wins} of {total} "
                    f"Natural and Specialized tasks, Tables 1-2)")
        return Reason(rule="similarity", source="Sec. 4.3, Fig. 1; Tables 1-2",
                      sentence=f"The similarity axis is {sim}: {why.rstrip('.')}; {tail}.")
    lo, hi = thr.band
    where = {
        "similar": f"at or below the threshold {thr.value:.1f}",
        "dissimilar": f"above the threshold {thr.value:.1f}",
        "borderline": f"inside the borderline band {lo:.1f}-{hi:.1f} around the threshold {thr.value:.1f}",
    }[sim]
    return Reason(rule="similarity", source=src, favours="pilot" if sim == "borderline" else "neutral", sentence=(
        f"FID {inputs.fid:.1f} against reference '{inputs.reference}' is {where}, so the data counts as {sim} "
        f"({thr.description}). {REFERENCE_CAVEAT}."))


def quadrant_reason(inputs: AdvisorInputs, sim: Similarity) -> tuple[str, Reason]:
    """Fig. 1's quadrant in words, and the reason stating the paper's rule for it."""
    in21k = backbone_results("in21k")
    if inputs.disparity == "high":
        s = in21k["Structured"]
        return "high disparity (VPT for either similarity)", Reason(
            rule="quadrant", source="Fig. 1; Table 2", favours="VPT", sentence=(
                f"High task disparity: the paper prefers VPT whatever the data similarity; VPT won "
                f"{s.vpt_wins} of {s.n_tasks} Structured tasks at 800 samples."))
    if sim == "similar":
        return "low disparity, similar data (VPT)", Reason(
            rule="quadrant", source="Fig. 1; Sec. 4.3", favours="VPT",
            sentence="Low task disparity with data similar to the pretraining data: the paper prefers VPT.")
    if sim == "dissimilar":
        return "low disparity, dissimilar data (FT)", Reason(
            rule="quadrant", source="Fig. 1, Fig. 3; Table 19", favours="FT", sentence=(
                "Low task disparity with dissimilar data is the one quadrant where the paper prefers FT: a larger "
                "FID 'typically leads to higher performance of full finetuning'; in Table 19 FT wins only Stanford "
                "Cars, the highest FID."))
    if sim == "borderline":
        return "low disparity, borderline similarity (pilot)", Reason(
            rule="quadrant", source="Fig. 1; Table 19", favours="pilot", sentence=(
                "Low task disparity with an FID in the borderline band, where Table 19 has no dataset either "
                "way: the quadrant is undecided, so a short pilot of both methods is the reliable answer."))
    return "low disparity, similarity unmeasured", Reason(
        rule="quadrant", source="Fig. 1", favours="neutral",
        sentence="Low task disparity: the quadrant depends on data similarity, which is unmeasured.")


def _pick(scores: list[MethodScore]) -> tuple[MethodScore | None, MethodScore | None]:
    ft = [s for s in scores if family_of(s.method) == "ft"]
    vpt = [s for s in scores if family_of(s.method) == "vpt"]
    return (max(ft, key=lambda s: s.mean) if ft else None, max(vpt, key=lambda s: s.mean) if vpt else None)


def read_pilot(pilot: PilotEvidence) -> tuple[PilotVerdict, Reason]:
    """Decide whether a pilot's VPT-FT difference is beyond seed noise.

    Margin (our rule): ``2 x pooled std`` when both methods have >= 2 seeds, otherwise 2.0 points;
    never less than one validation image (``100 / n_val`` points). The best VPT variant is compared
    with full finetuning.
    """
    ft, vpt = _pick(pilot.scores)
    if ft is None or vpt is None:
        missing = "full finetuning" if ft is None else "VPT"
        return PilotVerdict(ft=ft, vpt=vpt), Reason(rule="pilot", source="pilot (your data)", sentence=(
            f"The pilot results have no {missing} score, so they cannot be compared; the paper's priors decide."))
    diff = vpt.mean - ft.mean
    one_image = 100.0 / pilot.n_val
    if ft.n_seeds >= 2 and vpt.n_seeds >= 2:
        pooled = math.sqrt((ft.std**2 + vpt.std**2) / 2.0)
        margin, how = PILOT_NOISE_SIGMAS * pooled, f"{PILOT_NOISE_SIGMAS:g} x pooled seed std"
    else:
        margin, how = SINGLE_SEED_MARGIN, f"{SINGLE_SEED_MARGIN:g} points for a single seed"
    if margin < one_image:
        margin, how = one_image, f"one validation image of {pilot.n_val}"
    decisive = abs(diff) > margin
    winner: Literal["FT", "VPT"] | None = ("VPT" if diff > 0 else "FT") if decisive else None
    verdict = PilotVerdict(ft=ft, vpt=vpt, difference=diff, margin=margin, decisive=decisive, winner=winner)
    scores = (f"{vpt.method} {vpt.mean:.1f}+-{vpt.std:.1f} ({vpt.n_seeds} seed(s)) vs {ft.method} "
              f"{ft.mean:.1f}+-{ft.std:.1f} ({ft.n_seeds} seed(s))")
    if decisive:
        tail = f"exceeds the noise margin {margin:.1f} ({how}; our rule), so the pilot decides at its own size"
    else:
        tail = f"is within the noise margin {margin:.1f} ({how}; our rule), so the paper's priors decide"
    return verdict, Reason(rule="pilot", source="pilot (your data)", favours=winner or "neutral", sentence=(
        f"Pilot on your data ({pilot.n_train} train / {pilot.n_val} val): {scores}; the difference "
        f"{_signed(diff)} {tail}."))
