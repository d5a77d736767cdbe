"""FT, VPT or "run a pilot" for a ViT-B/16, from the paper's own experiments (pure functions, no torch).

Han et al., "Facing the Elephant in the Room: Visual Prompt Tuning or Full Finetuning?" (ICLR 2024).
Every cell of Tables 1-15 and 19 is an experiment (``engine.paper.evidence``); ``advisor.answer``
selects the ones comparable to the question (a named task's own cell, a task type's vote of tasks, the
Table 19 side of the FID threshold) and ``advisor.evidence`` turns their vote into a choice and a
confidence. This module reconciles the user's options, resolves the FID threshold and assembles the
:class:`~advisor.schemas.Recommendation`; the Tables 5-6 size trend is computed here for display.

Confidence rules (explicit; each names its source, "ours" = checked by ``benchmarks.held_out``):

* a named task's own cell: ``high`` when its gap is at least 1 point (ours: the paper prints no seed
  spread) and it was measured within 2x of the user's size (ours; 4x -> low); a tie -> ``pilot``; ``low``
  below 400 samples (one-shot Tables 3-4) and between two sizes whose winners differ.
* a task type or a disparity (an unseen task): the probability that VPT wins (``advisor.evidence.estimate``)
  earns ``medium`` or ``low`` by the thresholds of ``advisor.evidence.estimate_level``, never ``high``; the
  held-out record of answers given the same way is quoted (``advisor.heldout``).
* caps: ``medium`` beyond 10,000 samples, with n_train unknown (800 assumed), for a task type resting on
  fewer than 3 tasks.
* a pilot whose paired 95 % interval on held-out images excludes zero decides at its own size
  (``high`` when its 99 % interval excludes zero too, else ``medium``); a pilot "not decisive by
  design" never changes the answer; when the user's n is more than twice the pilot's, it is combined
  with the paper's experiments at n (``advisor.answer.combine_pilot``).
"""

from __future__ import annotations

import functools

from advisor.answer import combine_pilot, paper_finding, task_line, usable_calibration
from advisor.heldout import Answer, HeldOutQuestion, asked_by, held_out_record
from advisor.rules import (
    LOW_DISPARITY_VPT_WINS,
    REFERENCE_CAVEAT,
    THRESHOLD_LABEL,
)
from advisor.schemas import (
    AdvisorInputs,
    BackboneName,
    BackboneSummary,
    PilotEvidence,
    Provenance,
    Reason,
    Recommendation,
    Similarity,
    SimilarityThreshold,
    SizeTrend,
)
from advisor.tasks import resolve_task
from advisor.trend import size_trend
from engine import __version__
from engine.errors import ConfigError
from engine.fid.calibration import Calibration, calibration_problem, derive_threshold, similarity_side
from engine.paper import (
    VTAB_TASKS,
    Disparity,
    Group,
    backbone_results,
    fgvc_table,
    paper_data_sha256,
    paper_source,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "LOW_DISPARITY_VPT_WINS",
    "ask_held_out",
    "backbone_summary",
    "build_inputs",
    "classify_similarity",
    "recommend",
    "reconcile_disparity",
    "resolve_threshold",
]


def _default_threshold(held_out: tuple[str, ...] = ()) -> SimilarityThreshold:
    """The Table 19 threshold (refitted without the ``held_out`` datasets; ConfigError when one side is empty)."""
    rows = [r for r in fgvc_table() if r.key not in held_out]
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
        n=None,
        n_note="N not printed by the paper (Table 19 gives the FIDs without their sample size)",
    )


DEFAULT_THRESHOLD: SimilarityThreshold = _default_threshold()
"""Default similarity threshold, computed at import from the packaged Table 19."""

_LOW_GROUPS: tuple[Group, ...] = ("Natural", "Specialized")
_DISPARITIES: dict[str, Disparity] = {"low": "low", "high": "high"}
"""``--disparity`` values, typed: the option arrives as a plain string."""


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
    value = _DISPARITIES.get(disparity)
    if value is None:
        raise ConfigError(f"--disparity must be 'low' or 'high', not {disparity!r}")
    return value, "--disparity"


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
    held_out: tuple[str, ...] = (),
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
        held_out=list(held_out),
    )


def resolve_threshold(inputs: AdvisorInputs) -> tuple[SimilarityThreshold, list[Reason]]:
    """Threshold in force: ``--fid-threshold`` > a calibration for the same reference > the Table 19 default."""
    notes: list[Reason] = []
    cal = inputs.calibration if inputs.fid_threshold is None else None
    if cal is not None:  # the one check (engine.fid.calibration.calibration_problem)
        verdict, why = calibration_problem(cal, inputs.reference, inception_sha256=inputs.fid_weights_sha256,
                                           reference_sha256=inputs.reference_sha256)
        if verdict == "refuse":
            raise ConfigError(why)
        if verdict == "other-reference":
            notes.append(Reason(rule="threshold", source="calibration file", sentence=f"{why[0].upper()}{why[1:]}, "
                                "so it is ignored."))
            cal = None
    if inputs.fid_threshold is not None:
        thr = SimilarityThreshold(
            value=inputs.fid_threshold, band=(inputs.fid_threshold, inputs.fid_threshold), source="user",
            reference=inputs.reference,
            description=f"FID threshold {inputs.fid_threshold:.1f} given with --fid-threshold (no borderline band)",
            n=None, n_note="N not given with --fid-threshold",
        )
    elif cal is not None:
        thr = SimilarityThreshold(
            value=cal.threshold, band=cal.band, source="calibration", reference=cal.reference,
            description=(f"FID threshold {cal.threshold:.1f} from the calibration file "
                         f"({cal.method or 'calibrate'}; reference '{cal.reference}', {len(cal.task_fids)} task FIDs)"),
            n=cal.n, n_note="" if cal.n else "N not recorded by this calibration file",
        )
    else:
        thr = DEFAULT_THRESHOLD
        held = tuple(k for k in inputs.held_out if k in {r.key for r in fgvc_table()})
        if held and _held_out_gap(inputs) is None:
            thr = _default_threshold(held)
    return thr, notes


def _held_out_gap(inputs: AdvisorInputs) -> str | None:
    """Why Table 19 without the held-out datasets gives no threshold (no FT-won or VPT-won one left), or None."""
    held = tuple(k for k in inputs.held_out if k in {r.key for r in fgvc_table()})
    if not held:
        return None
    try:
        _default_threshold(held)
    except ConfigError as exc:
        return str(exc)
    return None


def classify_similarity(
    fid: float | None, threshold: SimilarityThreshold, interval: tuple[float, float] | None = None,
    bias: float = 0.0,
) -> Similarity:
    """``similar`` (<= threshold), ``dissimilar`` (> threshold, and still beyond the band after the small-N
    ``bias`` is taken off), ``borderline`` otherwise (``engine.fid.calibration.similarity_side``).

    The band is exclusive so that the datasets it was derived from keep their observed side: with the
    Table 19 default, NABirds (169.117, VPT won) is similar and Stanford Cars (182.487, FT won) dissimilar.
    """
    if fid is None:
        return "unmeasured"
    return similarity_side(fid, threshold.value, threshold.band, interval=interval,
                           bias=bias if threshold.n is None else 0.0)


def backbone_summary(backbone: BackboneName, disparity: Disparity) -> BackboneSummary:
    """Win counts of FT and VPT for ``backbone`` over the VTAB groups of ``disparity``."""
    return _backbone_summary(backbone, disparity).model_copy()


@functools.lru_cache(maxsize=16)
def _backbone_summary(backbone: BackboneName, disparity: Disparity) -> BackboneSummary:
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
    cal = usable_calibration(inputs)
    return dict(cal.task_fids) if cal is not None else {}


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
    if inputs.task_kind is not None and inputs.task_name is not None:
        own = [inputs.task_name] if inputs.task_kind == "vtab" else list(inputs.related_tasks)
        label = "the task itself" if inputs.task_kind == "vtab" else f"the tasks like '{inputs.task_name}'"
        try:
            return size_trend(own, inputs.n_train, grouping=label)
        except ValueError:  # those tasks are not measured around this size: use the whole disparity group
            why = f"{label} are not measured around this size"
    grouping = f"all {inputs.disparity}-disparity tasks (by disparity only: {why})"
    return size_trend(keys, inputs.n_train, grouping=grouping)


def recommend(inputs: AdvisorInputs, pilot: PilotEvidence | None = None, *, with_record: bool = True
              ) -> Recommendation:
    """FT, VPT or 'pilot' for the user's task, with a confidence and every reason.

    Args:
        inputs: reconciled inputs (see :func:`build_inputs`).
        pilot: optional pilot results on the user's data; a paired difference whose 95 % interval
            excludes zero outranks the paper's evidence at the pilot's own size (see
            :func:`advisor.answer.combine_pilot` and ``advisor.rules.read_pilot``).
    """
    thr, reasons = resolve_threshold(inputs)
    no_threshold = _held_out_gap(inputs)  # held-out Table 19 datasets leave one side empty: no threshold
    # An unverified FID (non-official weights, a doubtful reference) is shown but never decides.
    similarity = ("unverified" if inputs.fid_status == "unverified"
                  else classify_similarity(inputs.fid, thr, inputs.fid_interval, inputs.fid_bias or 0.0))
    if no_threshold is not None and inputs.fid is not None:
        similarity = "unmeasured"
        inputs = inputs.model_copy(update={"fid_unmeasured_reason": (
            f"without {', '.join(inputs.held_out)} Table 19 cannot give a threshold ({no_threshold})")})
    trend = _size_trend(inputs, similarity, thr)
    summary = backbone_summary(inputs.backbone, inputs.disparity)
    finding, quadrant, context = paper_finding(inputs, similarity, thr, n_train=inputs.n_train)
    reasons.extend(context)
    reasons.extend(finding.reasons)
    choice, lean, confidence = finding.choice, finding.lean, finding.confidence
    verdict = None
    if pilot is not None and pilot.random_init:
        reasons.insert(0, Reason(rule="pilot", source="pilot (your data)", sentence=(
            "The pilot ran on a randomly initialised backbone (--random-init), so its accuracies say nothing "
            "about finetuning a pretrained model and are ignored.")))
        pilot = None
    if pilot is not None:
        verdict, pilot_reasons, (choice, lean, confidence) = combine_pilot(
            inputs, similarity, thr, finding, pilot)
        reasons[:0] = pilot_reasons
    record = held_out_record(inputs, choice, confidence, similarity, ask_held_out) if with_record else None
    if record is not None:
        reasons.append(Reason(rule="record", source="benchmarks.held_out", sentence=record.sentence))
    src = paper_source()
    label = {"FT": "full finetuning (FT)", "VPT": "visual prompt tuning (VPT)", "pilot": "run a pilot"}[choice]
    headline = (f"Recommendation: {label}, leaning {lean} (confidence {confidence})" if choice == "pilot" and lean
                else f"Recommendation: {label} (confidence {confidence})")
    return Recommendation(
        recommendation=choice, lean=lean if choice == "pilot" else None, confidence=confidence,
        headline=headline, disparity=inputs.disparity, similarity=similarity, quadrant=quadrant,
        reasons=reasons, task_line=task_line(inputs), nearest_tasks=finding.rows, vote=finding.vote,
        probability_vpt=None if finding.probability is None else round(finding.probability, 3), record=record,
        size_trend=trend, backbone=summary, pilot=verdict, inputs=inputs,
        provenance=Provenance(
            paper=f"{src['authors']}, \"{src['title']}\", {src['venue']}", arxiv=src["arxiv"],
            paper_data_sha256=paper_data_sha256(), advisor_version=__version__, threshold=thr,
            reference=inputs.reference, notes=[REFERENCE_CAVEAT + "."],
        ),
    )


def ask_held_out(q: HeldOutQuestion) -> tuple[Answer, str | None]:
    """The advisor's answer to one held-out question (its task's own cells left out), and how it was asked."""
    rec = recommend(build_inputs(task=q.task, disparity=q.disparity, n_train=q.n_train, fid=q.fid,
                                 backbone=q.backbone, held_out=(q.key,)), with_record=False)
    return (rec.recommendation, rec.lean, rec.confidence), asked_by(rec.inputs, rec.similarity)
