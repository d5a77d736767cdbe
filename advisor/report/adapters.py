"""Adapters from the other areas' result objects to the report inputs.

- :func:`from_recommendation`: ``advisor.schemas.Recommendation`` (or the whole ``recommend --json``
  object, ``advisor.schemas.RecommendReport``) -> :class:`RecommendReportInputs`.
- :func:`from_pilot`: ``engine.train.pilot.PilotResult`` (plus, optionally, the updated Recommendation)
  -> :class:`PilotReportInputs`.
- :func:`from_vtab_table`: ``benchmarks.vtab.tables.VtabTable`` -> :class:`VtabReportInputs`.

Only attributes are read, and the heavy modules (``engine.train.pilot`` imports torch) are named for type
checking only, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from advisor.answer import usable_calibration
from advisor.pilot_verdict import STATUS_WORDS, ensemble_text, verdict_text
from advisor.report.inputs import (
    DataSizePoint,
    EvidenceRow,
    LearningCurve,
    MethodSeeds,
    PilotReportInputs,
    QuadrantInputs,
    RecommendReportInputs,
    ReportReason,
    SizeTrendInputs,
    UserPoint,
    VtabReportInputs,
    VtabTaskResult,
)
from advisor.report.paper import (
    calibration_points,
    paper_data_size_points,
    paper_fgvc_points,
    paper_size_series,
    paper_size_trend,
)
from advisor.schemas import RecommendReport

# A VTAB table is duck-typed (``benchmarks.vtab.tables.VtabTable``): advisor never imports benchmarks.
VtabTable = Any

if TYPE_CHECKING:
    from advisor.schemas import Recommendation, RecommendReport
    from engine.train.pilot import PilotResult
    from engine.train.pilot_summary import MethodSummary, TrialResult

__all__ = ["from_recommendation", "from_pilot", "from_vtab_table", "verdict_label"]

_VERDICTS = {"FT": "Full finetuning (FT)", "VPT": "Visual prompt tuning (VPT)", "pilot": "Run a pilot"}
_THRESHOLD_LABELS = {
    "table19-default": "derived from Table 19",
    "calibration": "calibration",
    "user": "--fid-threshold",
}


def verdict_label(choice: str, lean: str | None = None) -> str:
    """Headline words for a decision: 'Visual prompt tuning (VPT)', 'Run a pilot (leaning FT)', ..."""
    label = _VERDICTS.get(choice, choice)
    return f"{label} (leaning {lean})" if lean else label


def _report_reasons(rec: Recommendation) -> list[ReportReason]:
    return [ReportReason(text=r.sentence, source=r.source) for r in rec.reasons]


def _quadrant(rec: Recommendation) -> QuadrantInputs:
    thr = rec.provenance.threshold
    inputs = rec.inputs
    points = paper_fgvc_points()
    cal = usable_calibration(inputs)
    if cal is not None:
        points += calibration_points(cal.task_fids, source=f"calibration vs {cal.reference}")
    low, high = thr.band
    return QuadrantInputs(
        points=points,
        user=UserPoint(disparity=rec.disparity, fid=inputs.fid),
        threshold=thr.value,
        band=(min(low, thr.value), max(high, thr.value)),
        threshold_label=_THRESHOLD_LABELS.get(thr.source, thr.source),
    )


def _size_trend(rec: Recommendation) -> SizeTrendInputs:
    trend = rec.size_trend
    if trend is None:
        return paper_size_trend(rec.disparity, user_n=rec.inputs.n_train)
    keys = [t.key for t in trend.tasks]
    curve = sorted((int(n), float(g)) for n, g in trend.curve.items())
    return SizeTrendInputs(
        series=paper_size_series(keys=keys),
        mean_sizes=[n for n, _ in curve],
        mean_gaps=[g for _, g in curve],
        user_n=trend.n_train,
        user_n_label="assumed N" if trend.n_assumed else "your N",
        expected_gap=trend.mean_gap,
        extrapolated=trend.extrapolated,
        catch_up_n=trend.catch_up_n,
        catch_up_note=trend.catch_up_note,
        comparable=f"{len(keys)} comparable tasks",
        mean_label="mean over comparable tasks (the decision's curve)",
        grouping_note=trend.grouping,
    )


def _provenance(rec: Recommendation, report: RecommendReport | None) -> dict[str, str]:
    prov, inputs = rec.provenance, rec.inputs
    out = {
        "paper": f"{prov.paper} (arXiv {prov.arxiv})",
        "paper data sha256": prov.paper_data_sha256,
        "vpt-advisor": prov.advisor_version,
        "task": f"{inputs.task or '-'}; disparity {inputs.disparity} ({inputs.disparity_source})",
        "backbone": inputs.backbone,
        "threshold": prov.threshold.description,
        "reference": prov.reference,
    }
    if inputs.n_train is not None:
        out["training-set size"] = f"{inputs.n_train:,}" + (
            f" ({inputs.n_train_source})" if inputs.n_train_source else ""
        )
    out["FID"] = (
        f"{inputs.fid:.2f} ({inputs.fid_source or 'given'})"
        if inputs.fid is not None
        else (f"not measured: {inputs.fid_unmeasured_reason}" if inputs.fid_unmeasured_reason else "not measured")
    )
    if report is not None:
        if report.dataset is not None:
            ds = report.dataset
            out["dataset"] = (
                f"{ds.source} ({ds.layout}; {ds.n_used:,} images used, {ds.n_skipped:,} skipped, "
                f"{ds.num_classes} classes)"
            )
        if report.fid_measurement is not None:
            fm = report.fid_measurement
            ref = fm.reference
            out["FID measurement"] = f"{fm.n_images:,} images; {fm.extractor}; {fm.preprocessing}"
            out["reference statistics"] = ", ".join(f"{k}={v}" for k, v in ref.items() if v not in (None, "", {}))
    return out


def from_recommendation(rec: Recommendation | RecommendReport) -> RecommendReportInputs:
    """Report inputs for ``recommend --report/--plot`` from the decision (or the full JSON report).

    Args:
        rec: ``advisor.schemas.Recommendation``, or ``advisor.schemas.RecommendReport`` whose dataset
            profile and FID measurement then also appear in the provenance.
    """
    report = rec if isinstance(rec, RecommendReport) else None
    decision = rec.recommendation if isinstance(rec, RecommendReport) else rec
    notes = list(decision.provenance.notes)
    if decision.inputs.fid is None and decision.inputs.fid_unmeasured_reason:
        notes.insert(0, f"FID not measured: {decision.inputs.fid_unmeasured_reason}")
    evidence = [
        EvidenceRow(
            task=t.name,
            disparity=t.disparity,
            fid=t.fid,
            n_train=t.n_train,
            ft=t.ft,
            vpt=t.vpt,
            source=t.source,
            note=t.why,
            paper_winner=t.winner,
        )
        for t in decision.nearest_tasks
    ]
    return RecommendReportInputs(
        verdict=verdict_label(decision.recommendation, decision.lean),
        summary=decision.headline,
        confidence=decision.confidence,
        reasons=_report_reasons(decision),
        warnings=list(report.warnings) if report is not None else [],
        notes=notes,
        evidence=evidence,
        quadrant=_quadrant(decision),
        size_trend=_size_trend(decision),
        provenance=_provenance(decision, report),
    )


def _best_lr_runs(result: PilotResult, summary: MethodSummary) -> list[TrialResult]:
    """The method's trials at its picked lr, by seed (empty before any trial finished)."""
    if summary.best_lr is None:
        return []
    return sorted(
        (t for t in result.trials if t.spec.method == summary.method and t.spec.lr == summary.best_lr),
        key=lambda t: t.spec.seed,
    )


def _method_seeds(summary: MethodSummary, runs: list[TrialResult]) -> MethodSeeds:
    """One method's per-seed accuracy on the comparison images (the selection split before they exist)."""
    return MethodSeeds(
        method=summary.method,
        accuracies=[t.compare_acc if t.compare_correct else t.fit.best_val_acc for t in runs],
        seeds=[t.spec.seed for t in runs],
        trainable_percent=summary.trainable_pct,
        best_lr=summary.best_lr,
        images_per_s=summary.images_per_s,
        peak_memory_gb=summary.peak_memory_bytes / 1e9 if summary.peak_memory_bytes else None,
        wall_s=summary.wall_s,
    )


def _learning_curves(method: str, runs: list[TrialResult]) -> list[LearningCurve]:
    """Selection-split accuracy per epoch of each run that recorded one."""
    return [
        LearningCurve(
            method=method,
            seed=t.spec.seed,
            epochs=list(range(1, len(t.fit.val_accs) + 1)),
            val_acc=list(t.fit.val_accs),
        )
        for t in runs
        if t.fit.val_accs
    ]


def _pilot_provenance(result: PilotResult) -> dict[str, str]:
    """The plan, the trial counts and, when measured, the paired comparison and the skipped files."""
    plan = result.plan
    provenance = {
        "model": plan.model,
        "device": f"{plan.device} ({plan.precision})",
        "plan": f"{plan.n_train:,} train / {plan.n_val:,} lr-selection / {plan.n_compare:,} held-out comparison "
        f"images, {plan.num_classes} classes, {plan.epochs} epochs, batch {plan.batch_size}, {plan.img_size} px, "
        f"{plan.num_prompts} prompts",
        "detectable difference": f"{plan.min_detectable:.1f} points (asked {plan.target_detectable:g}; "
        + ("decisive by design)" if plan.decisive_by_design else "not decisive by design)"),
        "lr grid": "; ".join(f"{m}: {', '.join(f'{lr:g}' for lr in grid)}" for m, grid in plan.lr_grid.items()),
        "seeds": ", ".join(str(s) for s in plan.seeds),
        "trials": f"{result.trials_run} run now, {result.trials_resumed} resumed, {len(plan.trials)} planned",
        "wall time": f"{result.wall_s:.0f} s",
        "store": result.store_dir if not result.trials_unsaved else
        f"{result.store_dir} ({result.trials_unsaved} trial(s) could not be saved: full or read-only disk)",
    }
    if result.paired is not None:
        p = result.paired
        provenance["paired bootstrap"] = (
            f"{p.vpt_method} - {p.ft_method} = {p.difference:+.1f} points, 95 % interval [{p.ci95[0]:+.1f}, "
            f"{p.ci95[1]:+.1f}] over {p.n_compare:,} images and seeds (descriptive; the verdict uses the "
            "seed-aware interval)")
    verdict = (result.paired.vpt_method, result.paired.ft_method) if result.paired is not None else None
    for c in result.comparisons:  # every other method against FT, LoRA included (beside the verdict)
        if (c.vpt_method, c.ft_method) == verdict:
            continue
        provenance[f"{c.vpt_method} vs {c.ft_method}"] = (
            f"{c.difference:+.1f} points, 95 % interval [{c.ci95[0]:+.1f}, {c.ci95[1]:+.1f}] on the same images")
    v = result.verdict
    if v is not None and v.posthoc_power is not None:
        provenance["post-hoc power"] = (
            f"{100 * v.posthoc_power:.0f} % at {v.target_detectable:g} points (planned {100 * v.planned_power:.0f} "
            f"%); detects {v.posthoc_mdd or 0:.1f} points as met (planned {v.planned_mdd:.1f})")
    if result.saved is not None:
        provenance["saved weights"] = result.saved.path or f"none: {result.saved.reason}"
    if result.n_skipped_files:
        provenance["skipped files"] = str(result.n_skipped_files)
    return provenance


_PILOT_NOTE = (
    "Each method's lr is picked on the lr-selection split; accuracies are final-model accuracies on the "
    "held-out comparison images, which neither training nor lr selection saw. Learning curves are on the "
    "selection split."
)


def from_pilot(
    result: PilotResult, *, recommendation: Recommendation | None = None, dataset: str = "", smoke_test: str = ""
) -> PilotReportInputs:
    """Report inputs for ``pilot --report`` from a finished (or partly finished) pilot.

    Each method is shown at its lr picked on the selection split (as :func:`engine.train.pilot.summarize_trials`
    picks it): every seed's accuracy on the held-out comparison images there, and those runs' learning curves.

    Args:
        result: The pilot result.
        recommendation: The recommendation updated with the pilot evidence, if the caller has one.
        dataset: Dataset path or name for the heading.
        smoke_test: The smoke-test label of a --random-init or --quick run (``advisor.usecases.pilot``).
    """
    methods: list[MethodSeeds] = []
    curves: list[LearningCurve] = []
    for summary in result.methods:
        runs = _best_lr_runs(result, summary)
        if runs:
            methods.append(_method_seeds(summary, runs))
            curves += _learning_curves(summary.method, runs)
    e = result.ensemble
    if e is not None and e.available and e.members is not None and e.pair_accuracies:
        methods.append(MethodSeeds(method=f"{e.members[0]}+{e.members[1]} (ensemble)",
                                   accuracies=list(e.pair_accuracies)))
    rec = recommendation
    return PilotReportInputs(
        dataset=dataset,
        n_train=result.plan.n_train,
        n_val=result.plan.n_val,
        methods=methods,
        curves=curves,
        verdict=verdict_label(rec.recommendation, rec.lean) if rec is not None else "",
        summary=rec.headline if rec is not None else "",
        confidence=rec.confidence if rec is not None else "",
        reasons=_report_reasons(rec) if rec is not None else [],
        notes=[_PILOT_NOTE],
        provenance=_pilot_provenance(result),
        verdict_status=STATUS_WORDS[result.verdict.status] if result.verdict is not None else "",
        verdict_text=verdict_text(result.verdict) if result.verdict is not None else "",
        ensemble_text=ensemble_text(result.ensemble) if result.ensemble is not None else "",
        smoke_test=smoke_test,
    )


def from_vtab_table(table: VtabTable) -> VtabReportInputs:
    """Report inputs for ``reproduce-vtab --report`` from the comparison table.

    The per-task rows and the difference chart use the 800/200 split (Tables 1-2) when the sweep has
    it, else its smallest size (Tables 5-6). Tasks run at two or more sizes also get Figure-4-like
    data-size curves, ours against every size the paper prints for them.
    """
    sizes = sorted({r.n_train for r in table.rows})
    main_n = 800 if 800 in sizes else (sizes[0] if sizes else 800)
    main = [r for r in table.rows if r.n_train == main_n]
    results = [
        VtabTaskResult(
            task=r.name,
            group=r.group,
            ours_ft=r.ours_ft,
            ours_ft_std=r.ours_ft_std,
            ours_vpt=r.ours_vpt,
            ours_vpt_std=r.ours_vpt_std,
            paper_ft=r.paper_ft,
            paper_vpt=r.paper_vpt,
            n_seeds=max(r.seeds_ft, r.seeds_vpt),
        )
        for r in main
    ]
    notes = list(table.notes)
    for r in table.rows:
        for method, diff, flag in (("FT", r.diff_ft, r.flag_ft), ("VPT", r.diff_vpt, r.flag_vpt)):
            if flag and diff is not None:
                notes.append(
                    f"{r.name} at {r.n_train:,} images, {method}: ours minus paper {diff:+.1f} points, "
                    "beyond seed noise."
                )
    data_size: list[DataSizePoint] = []
    names = {r.task: r.name for r in table.rows}
    for key, name in names.items():
        mine = [r for r in table.rows if r.task == key]
        if len({r.n_train for r in mine}) < 2:
            continue
        for r in mine:
            for method, acc, std in (("FT", r.ours_ft, r.ours_ft_std), ("VPT", r.ours_vpt, r.ours_vpt_std)):
                if acc is not None:
                    data_size.append(
                        DataSizePoint(task=name, method=method, n_train=r.n_train, accuracy=acc, std=std, origin="ours")
                    )
        data_size += [p.model_copy(update={"task": name}) for p in paper_data_size_points(keys={key})]
    split = "800/200 split, Tables 1-2" if main_n == 800 else f"{main_n:,} training images, Tables 5-6"
    provenance = {"protocol": table.protocol, "compared with the paper": "yes" if table.compared else "no (smoke test)"}
    return VtabReportInputs(
        protocol=table.protocol, split=split, results=results, data_size=data_size, notes=notes, provenance=provenance
    )
