"""Reasons that state the paper's rules, and the reading of a pilot (used by ``advisor.answer``).

``similarity_reason`` and ``quadrant_reason`` put Fig. 1's quadrants (Han et al., ICLR 2024) into words;
the answer itself comes from the vote of experiments in ``advisor.evidence``. ``read_pilot`` decides
whether a pilot's paired difference on held-out images excludes zero. Pure, no torch.
"""

from __future__ import annotations

from advisor.schemas import (
    AdvisorInputs,
    Confidence,
    MethodScore,
    PilotEvidence,
    PilotVerdict,
    Reason,
    Similarity,
    SimilarityThreshold,
)
from engine.paper import VTAB_TASKS, backbone_results
from engine.train.methods import family_of
from engine.train.verdict import verdict_status
from engine.vocab import Side

__all__ = [
    "LOW_DISPARITY_VPT_WINS",
    "REFERENCE_CAVEAT",
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
            tail = ("for low-disparity tasks similarity is what separates FT from VPT, so without it the answer rests "
                    "on the comparable tasks' own results at your size (the reasons below name them)")
        return Reason(rule="similarity", source="Sec. 4.3, Fig. 1",
                      sentence=f"The similarity axis is {sim}: {why.rstrip('.')}; {tail}.")
    lo, hi = thr.band
    bias = inputs.fid_bias if thr.n is None and inputs.fid_bias else 0.0
    if sim == "borderline" and bias and not lo < (inputs.fid or 0.0) < hi:
        hi = max(hi, thr.value) + bias
    where = {
        "similar": f"at or below the threshold {thr.value:.1f}",
        "dissimilar": f"above the threshold {thr.value:.1f}",
        "borderline": f"inside the borderline band {lo:.1f}-{hi:.1f} around the threshold {thr.value:.1f}",
    }[sim]
    return Reason(rule="similarity", source=src, favours="pilot" if sim == "borderline" else "neutral", sentence=(
        f"FID {inputs.fid:.1f} against reference '{inputs.reference}' is {where}, so the data counts as {sim} "
        f"({thr.description}). {_bias_note(bias, inputs.fid_n)}{REFERENCE_CAVEAT}."))


def _bias_note(bias: float, n: int | None) -> str:
    if not bias:
        return ""
    at = f" at N = {n:,}" if n else ""
    return (f"The threshold has no N and FID is biased upwards at small N: the bias{at} is estimated at {bias:.1f} "
            "points (twice FID(N/2) - FID(N), our rule), so the data counts as dissimilar only when the FID minus "
            "that bias is still above the band. ")


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


def _interval(lo: float, hi: float) -> str:
    return f"[{_signed(lo)}, {_signed(hi)}]"


def read_pilot(pilot: PilotEvidence) -> tuple[PilotVerdict, Reason]:
    """Read a pilot's verdict: it decides only when its status is ``decisive``.

    The status is the pilot's own (``engine.train.verdict``: seed spread, post-hoc power, by design); for
    evidence without one it comes from the same rule (:func:`engine.train.verdict.verdict_status`) over
    the paired interval, the seeds and ``decisive_by_design``. Confidence follows the interval: high when
    the 99 % interval excludes zero too, else medium. Evidence without a paired comparison (per-image
    scores on held-out images) cannot decide.
    """
    ft, vpt = _pick(pilot.scores)
    src = "pilot (your data)"
    if ft is None or vpt is None:
        missing = "full finetuning" if ft is None else "VPT"
        return PilotVerdict(ft=ft, vpt=vpt, by_design=pilot.decisive_by_design), Reason(
            rule="pilot", source=src, sentence=(
                f"The pilot results have no {missing} score, so they cannot be compared; the paper's priors decide."))
    p = pilot.paired
    if p is None:
        return PilotVerdict(ft=ft, vpt=vpt, by_design=pilot.decisive_by_design), Reason(
            rule="pilot", source=src, sentence=(
                "The pilot has no paired comparison on held-out images (per-image results), so seed spreads "
                "alone cannot say whether the methods differ; the paper's priors decide."))
    lo, hi = p.ci95
    status = pilot.status or verdict_status(
        has_comparison=True, by_design=pilot.decisive_by_design, seeds=min(ft.n_seeds, vpt.n_seeds),
        excludes_zero=lo > 0 or hi < 0, underpowered=False)
    decisive = status == "decisive"
    winner: Side | None = ("VPT" if p.difference > 0 else "FT") if decisive else None
    conf: Confidence | None = ("high" if p.ci99[0] > 0 or p.ci99[1] < 0 else "medium") if decisive else None
    verdict = PilotVerdict(ft=ft, vpt=vpt, difference=p.difference, margin=(hi - lo) / 2, interval=(lo, hi),
                           decisive=decisive, status=status, winner=winner, confidence=conf,
                           by_design=pilot.decisive_by_design)
    sizes = f"Pilot on your data ({pilot.n_train} train / {pilot.n_val} lr-selection / {p.n_compare} held-out " \
            "comparison images)"
    head = (f"{sizes}: {p.vpt_method} minus {p.ft_method} is {_signed(p.difference)} points, 95 % "
            f"interval {_interval(lo, hi)} over comparison images and seeds (methods disagree "
            f"on {100 * p.discordance:.0f} % of images)")
    if pilot.verdict:  # the pilot's own sentence already gives the figures behind its status
        head = f"{sizes}: {pilot.verdict.rstrip('.')}"
        tail = ("; so the pilot decides at its own size" if decisive else "; it never changes the answer"
                if status == "not-decisive-by-design" else "; so the paper's priors decide")
    elif status == "not-decisive-by-design":
        mdd = f"{pilot.min_detectable:.1f}" if pilot.min_detectable is not None else "?"
        target = f"{pilot.target_detectable:g}" if pilot.target_detectable is not None else "the target"
        tail = (f"; not decisive by design: the plan could only detect differences of {mdd} points or more "
                f"(--min-detectable {target}), so it never changes the answer")
    elif decisive:
        tail = (f"; the interval excludes zero, so the pilot decides at its own size (confidence {conf}: the "
                f"99 % interval {_interval(*p.ci99)} {'excludes' if conf == 'high' else 'includes'} zero)")
    elif status in ("indicative-only", "underpowered"):
        tail = f"; {status.replace('-', ' ')}, so the paper's priors decide"
    else:
        tail = "; the interval includes zero, so the paper's priors decide"
    if pilot.ensemble is not None and pilot.ensemble.offered:
        tail += f". {pilot.ensemble.sentence.rstrip('.')}"
    return verdict, Reason(rule="pilot", source=src, favours=winner or "neutral", sentence=head + tail + ".")
