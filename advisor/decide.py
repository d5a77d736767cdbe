"""The paper's decision rules as pure functions: FT or VPT for a ViT-B/16 pretrained on ImageNet-21k.

Han et al., "Facing the Elephant in the Room: Visual Prompt Tuning or Full Finetuning?" (ICLR 2024):
Fig. 1 splits tasks by *task disparity* and by *data similarity* (FID to the pretraining data). VPT is
preferable in three quadrants; FT only for low disparity with dissimilar data. Tables 5-6 add that
the gap narrows with more data; Appendix C that the picture changes with other backbones.

Every rule returns its reason (a sentence and its source), which the report shows. No torch import:
this module is tested exhaustively in milliseconds. Rules that are ours, not the paper's (the FID
threshold, the noise margin of a pilot, the confidence levels), say so in their reason or docstring.

Confidence rules (explicit):

* ``pilot`` is always ``low`` (the evidence does not decide); ``lean`` says which way it points.
* The quadrant and the size trend agree -> ``high``; they disagree -> ``medium`` or ``pilot``.
* Caps: ``medium`` when n_train is unknown, above 10,000 (beyond Tables 5-6), or similarity rests on
  the Table 19 default threshold; ``low`` for a non-default backbone whose group VPT mostly wins
  (the quadrant analysis is for ViT-B/16 ImageNet-21k only).
* Similarity unmeasured with low disparity -> ``medium`` if at least 3/4 of the comparable tasks
  agree at the user's size, otherwise ``low``.
* Decisive pilot evidence -> ``high`` with >= 2 seeds per method, ``medium`` with one seed.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Literal

from advisor.rules import (
    LOW_DISPARITY_VPT_WINS,
    REFERENCE_CAVEAT,
    THRESHOLD_LABEL,
    Similarity,
    combine_priors,
    read_pilot,
)
from advisor.schemas import (
    AdvisorInputs,
    BackboneName,
    BackboneSummary,
    Choice,
    Confidence,
    NearestTask,
    PilotEvidence,
    Provenance,
    Reason,
    Recommendation,
    SimilarityThreshold,
    SizeTrend,
)
from advisor.tasks import resolve_task
from advisor.trend import size_trend
from engine import __version__
from engine.fid.calibration import Calibration, derive_threshold
from engine.errors import ConfigError
from engine.paper import (
    VTAB_TASKS,
    Disparity,
    Group,
    backbone_results,
    data_size_table,
    fgvc_table,
    paper_data_sha256,
    paper_source,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "LOW_DISPARITY_VPT_WINS",
    "backbone_summary",
    "build_inputs",
    "calibration_matches",
    "classify_similarity",
    "nearest_tasks",
    "recommend",
    "reconcile_disparity",
    "resolve_threshold",
]


def _default_threshold() -> SimilarityThreshold:
    rows = fgvc_table()
    value, band = derive_threshold({r.key: r.fid for r in rows}, {r.key: r.winner for r in rows})
    vpt_top = max((r for r in rows if r.winner == "VPT"), key=lambda r: r.fid)
    ft_low = min((r for r in rows if r.winner == "FT"), key=lambda r: r.fid)
    return SimilarityThreshold(
        value=value,
        band=band,
        source="table19-default",
        reference=None,
        description=(
            f"FID threshold {value:.1f} {THRESHOLD_LABEL}: the midpoint between {vpt_top.name} "
            f"({vpt_top.fid:.3f}, the highest FID where VPT wins) and {ft_low.name} ({ft_low.fid:.3f}, "
            f"the lowest FID where FT wins); FIDs strictly between them are borderline"
        ),
    )


DEFAULT_THRESHOLD: SimilarityThreshold = _default_threshold()
"""Default similarity threshold, computed at import from the packaged Table 19."""

_LOW_GROUPS: tuple[Group, ...] = ("Natural", "Specialized")


def reconcile_disparity(task: str | None, disparity: str | None) -> tuple[Disparity, str]:
    """Pick the disparity from exactly one of ``--task`` and ``--disparity``.

    Returns:
        ``(disparity, source)`` where source reads e.g. ``"--task counting"``.

    Raises:
        ConfigError: both or neither given, or an invalid disparity value.
        UnknownTaskError: unknown task (with close matches).
    """
    if task is not None and disparity is not None:
        raise ConfigError(
            "--task and --disparity are mutually exclusive: --task implies a disparity "
            f"(give --task {task} alone, or --disparity {disparity} alone)"
        )
    if task is not None:
        resolved = resolve_task(task)
        return resolved.disparity, f"--task {task}"
    if disparity is None:
        raise ConfigError(
            "say what the task is: --task TYPE (e.g. counting, fine-grained) or --disparity low|high; "
            "see 'vpt-advisor recommend --help'"
        )
    if disparity not in ("low", "high"):
        raise ConfigError(f"--disparity must be 'low' or 'high', not {disparity!r}")
    return disparity, "--disparity"  # type: ignore[return-value]


def build_inputs(
    *,
    task: str | None = None,
    disparity: str | None = None,
    n_train: int | None = None,
    n_train_source: str = "",
    fid: float | None = None,
    fid_source: str = "",
    fid_unmeasured_reason: str | None = None,
    fid_threshold: float | None = None,
    calibration: Calibration | None = None,
    reference: str = "in21k",
    backbone: BackboneName = "in21k",
) -> AdvisorInputs:
    """Reconcile the user's options into :class:`AdvisorInputs` (pure; raises ConfigError/UnknownTaskError)."""
    disp, source = reconcile_disparity(task, disparity)
    resolved = resolve_task(task) if task is not None else None
    return AdvisorInputs(
        task=task,
        task_name=resolved.name if resolved else None,
        task_kind=resolved.kind if resolved else None,
        related_tasks=list(resolved.related) if resolved else [],
        disparity=disp,
        disparity_source=source,
        n_train=n_train,
        n_train_source=n_train_source or ("--n-train" if n_train is not None else ""),
        fid=fid,
        fid_source=fid_source or ("--fid" if fid is not None else ""),
        fid_unmeasured_reason=fid_unmeasured_reason if fid is None else None,
        fid_threshold=fid_threshold,
        calibration=calibration,
        reference=reference,
        backbone=backbone,
    )


def calibration_matches(cal: Calibration, reference: str) -> bool:
    """True when a calibration was measured against ``reference`` (a name, or a path whose stem is the name)."""
    return cal.reference in (reference, PurePath(reference).stem)


def resolve_threshold(inputs: AdvisorInputs) -> tuple[SimilarityThreshold, list[Reason]]:
    """Threshold in force: ``--fid-threshold`` > a calibration for the same reference > the Table 19 default."""
    notes: list[Reason] = []
    cal = inputs.calibration
    if cal is not None and not calibration_matches(cal, inputs.reference):
        notes.append(Reason(rule="threshold", source="calibration file", sentence=(
            f"The calibration file is for reference '{cal.reference}', not '{inputs.reference}', so it is ignored.")))
        cal = None
    if inputs.fid_threshold is not None:
        thr = SimilarityThreshold(
            value=inputs.fid_threshold, band=(inputs.fid_threshold, inputs.fid_threshold), source="user",
            reference=inputs.reference,
            description=f"FID threshold {inputs.fid_threshold:.1f} given with --fid-threshold (no borderline band)",
        )
    elif cal is not None:
        thr = SimilarityThreshold(
            value=cal.threshold, band=cal.band, source="calibration", reference=cal.reference,
            description=(f"FID threshold {cal.threshold:.1f} from the calibration file "
                         f"({cal.method or 'calibrate'}; reference '{cal.reference}', {len(cal.task_fids)} task FIDs)"),
        )
    else:
        thr = DEFAULT_THRESHOLD
    return thr, notes


def classify_similarity(fid: float | None, threshold: SimilarityThreshold) -> Similarity:
    """``similar`` (<= threshold), ``dissimilar`` (> threshold), ``borderline`` (strictly inside the band).

    The band is exclusive so that the datasets it was derived from keep their observed side: with the
    Table 19 default, NABirds (169.117, VPT won) is similar and Stanford Cars (182.487, FT won) dissimilar.
    """
    if fid is None:
        return "unmeasured"
    lo, hi = threshold.band
    if lo < fid < hi:
        return "borderline"
    return "similar" if fid <= threshold.value else "dissimilar"


def backbone_summary(backbone: BackboneName, disparity: Disparity) -> BackboneSummary:
    """Win counts of FT and VPT for ``backbone`` over the VTAB groups of ``disparity``."""
    results = backbone_results(backbone)
    groups: tuple[Group, ...] = _LOW_GROUPS if disparity == "low" else ("Structured",)
    return BackboneSummary(
        backbone=backbone,
        source=results["Natural"].source if backbone != "in21k" else "Tables 1-2",
        groups={g: (r.vpt_wins, r.n_tasks) for g, r in results.items()},
        vpt_wins=sum(results[g].vpt_wins for g in groups),
        ft_wins=sum(results[g].ft_wins for g in groups),
        n_tasks=sum(results[g].n_tasks for g in groups),
    )


def _task_fids(inputs: AdvisorInputs) -> dict[str, float]:
    cal = inputs.calibration
    return dict(cal.task_fids) if cal is not None and calibration_matches(cal, inputs.reference) else {}


def _size_trend(inputs: AdvisorInputs, similarity: Similarity, thr: SimilarityThreshold) -> SizeTrend:
    """Tables 5-6 trend over comparable tasks: same disparity, and the same FID side when calibrated."""
    keys = [k for k, t in VTAB_TASKS.items() if t.disparity == inputs.disparity]
    fids = _task_fids(inputs)
    why = "VTAB per-task FIDs are not published and no calibration supplies them"
    if fids and similarity not in ("similar", "dissimilar"):
        why = f"the similarity of your data is {similarity}"
    elif fids:
        side = [k for k in keys if k in fids and (fids[k] <= thr.value) == (similarity == "similar")]
        grouping = f"{inputs.disparity}-disparity tasks on the {similarity} side of FID {thr.value:.1f} (calibration)"
        try:
            return size_trend(side, inputs.n_train, grouping=grouping)
        except ValueError:  # no calibrated task on that side has Tables 5-6 data at this size
            why = f"no calibrated {similarity}-side task has Tables 5-6 data at this size"
    grouping = f"all {inputs.disparity}-disparity tasks (by disparity only: {why})"
    return size_trend(keys, inputs.n_train, grouping=grouping)


def _pair_winner(ft: float, vpt: float) -> Literal["FT", "VPT", "tie"]:
    return "VPT" if vpt > ft else "FT" if ft > vpt else "tie"


def nearest_tasks(inputs: AdvisorInputs, n_train: int, limit: int = 5) -> list[NearestTask]:
    """Paper tasks nearest the user's: related tasks first, then by calibrated FID, then paper order."""
    fids = _task_fids(inputs)
    keys = [k for k, t in VTAB_TASKS.items() if t.disparity == inputs.disparity]
    related = [k for k in inputs.related_tasks if k in keys]
    rest = [k for k in keys if k not in related]
    if fids and inputs.fid is not None:
        fid = inputs.fid
        rest.sort(key=lambda k: abs(fids[k] - fid) if k in fids else float("inf"))
    table = data_size_table()
    out: list[NearestTask] = []
    for key in (related + rest)[:limit]:
        sizes = [s for s, p in table[key].items() if p.gap is not None]
        size = min(sizes, key=lambda s: abs(math.log(s / n_train)))
        pair = table[key][size]
        assert pair.ft is not None and pair.vpt is not None
        task = VTAB_TASKS[key]
        if key in related:
            if inputs.task_kind == "vtab":
                why = "same task" if key == inputs.task_name else "same VTAB group"
            else:
                why = f"like '{inputs.task_name}'"
        elif key in fids and inputs.fid is not None:
            why = f"FID {fids[key]:.1f}"
        else:
            why = "same disparity"
        # At 800 the winner keeps the paper's tie-break digits (Clevr/distance 58.2(3) vs 58.2(2)).
        winner = task.winner_800 if size == 800 else _pair_winner(pair.ft, pair.vpt)
        out.append(NearestTask(
            key=key, name=task.name, group=task.group, disparity=task.disparity, n_train=size, ft=pair.ft,
            vpt=pair.vpt, winner=winner, fid=fids.get(key), why=why,
            source=("Table 5" if task.disparity == "low" else "Table 6")
            + (" (= Tables 1-2)" if size == 800 else ""),
        ))
    return out


def recommend(inputs: AdvisorInputs, pilot: PilotEvidence | None = None) -> Recommendation:
    """FT, VPT or 'pilot' for the user's task, with a confidence and every reason.

    Args:
        inputs: reconciled inputs (see :func:`build_inputs`).
        pilot: optional pilot results on the user's data; a difference beyond seed noise outranks
            the paper's priors (see ``advisor.rules.read_pilot``).
    """
    thr, reasons = resolve_threshold(inputs)
    # An unverified FID (non-official weights, a doubtful reference) is shown but never decides.
    similarity = "unverified" if inputs.fid_status == "unverified" else classify_similarity(inputs.fid, thr)
    trend = _size_trend(inputs, similarity, thr)
    summary = backbone_summary(inputs.backbone, inputs.disparity)
    prior = combine_priors(inputs, thr, similarity, trend, summary)
    reasons.extend(prior.reasons)
    choice: Choice = prior.choice
    lean = prior.lean
    confidence: Confidence = prior.confidence
    verdict = None
    if pilot is not None:
        verdict, pilot_reason = read_pilot(pilot)
        reasons.insert(0, pilot_reason)
        if verdict.decisive and verdict.winner is not None:
            choice, lean = verdict.winner, None
            seeds = min(verdict.ft.n_seeds, verdict.vpt.n_seeds) if verdict.ft and verdict.vpt else 1
            confidence = "high" if seeds >= 2 else "medium"
        elif choice == "pilot" and verdict.difference is not None:
            choice, lean, confidence = ("VPT" if verdict.difference >= 0 else "FT"), None, "low"
    src = paper_source()
    label = {"FT": "full finetuning (FT)", "VPT": "visual prompt tuning (VPT)", "pilot": "run a pilot"}[choice]
    headline = f"Recommendation: {label}" + (f", leaning {lean}" if lean else "") + f" (confidence {confidence})"
    return Recommendation(
        recommendation=choice, lean=lean if choice == "pilot" else None, confidence=confidence,
        headline=headline, disparity=inputs.disparity, similarity=similarity, quadrant=prior.quadrant,
        reasons=reasons, nearest_tasks=nearest_tasks(inputs, trend.n_train), size_trend=trend,
        backbone=summary, pilot=verdict, inputs=inputs,
        provenance=Provenance(
            paper=f"{src['authors']}, \"{src['title']}\", {src['venue']}", arxiv=src["arxiv"],
            paper_data_sha256=paper_data_sha256(), advisor_version=__version__, threshold=thr,
            reference=inputs.reference, notes=[REFERENCE_CAVEAT + "."],
        ),
    )
