"""``vpt-advisor recommend [DATASET]``: FT or VPT for a ViT-B/16 pretrained on ImageNet-21k, with reasons.

With a DATASET the images are profiled and the FID against a reference (``in21k`` by default) is
measured; without one it is a what-if query (``recommend --task distance --n-train 5000 --fid 150``).
``--demo`` runs on the embedded counting dataset. When the FID cannot be measured (no Inception
weights, no reference) the answer uses the other axes and says why similarity is unmeasured.

``n_train`` defaults to the number of usable *labeled* images of the dataset. The paper counts
training images only (its 800-sample setting has 200 validation images on top), so holding out a
validation split makes the true training size about 4/5 of this; pass ``--n-train`` to be exact.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from advisor.commands._options import DeviceOpt, ExplainOpt, InceptionWeightsOpt, JsonOpt, ReferenceOpt, YesOpt
from advisor.commands.pilot import BudgetOpt, PilotRequest, WeightsOpt, run_pilot_request
from advisor.decide import DEFAULT_THRESHOLD, build_inputs, recommend, reconcile_disparity
from advisor.rules import THRESHOLD_LABEL
from advisor.schemas import DatasetEvidence, FidEvidence, RecommendReport, RecommendRequest
from advisor.tasks import task_help

__all__ = ["recommend_command", "register", "run_recommend"]

EXAMPLES = (
    "Examples: 'vpt-advisor recommend ./mydata --task counting' · "
    "'vpt-advisor recommend --task distance --n-train 5000 --fid 150' (what-if) · "
    "'vpt-advisor recommend --demo'"
)


def run_recommend(
    request: RecommendRequest,
    *,
    show_progress: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> RecommendReport:
    """Profile the dataset (if any), measure its FID (if possible) and apply the paper's rules.

    Raises:
        ConfigError: contradictory or missing options (checked before any image is read).
        UnknownTaskError: unknown ``--task``.
        DatasetError: the dataset cannot be read or has no usable image.
    """
    from advisor.render import progress_bar
    from engine.fid.calibration import load_calibration
    from engine.data.demo import ensure_demo_dataset
    from engine.errors import ConfigError

    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        if on_warning is not None:
            on_warning(msg)

    task = request.task
    if request.demo and request.dataset is not None:
        raise ConfigError("give either a DATASET or --demo, not both")
    if request.demo and task is None and request.disparity is None:
        task = "counting"  # the demo is a counting task (1-8 shapes per image)
    if request.dataset is None and not request.demo and task is None and request.disparity is None:
        raise ConfigError(f"nothing to advise on: give a DATASET with --task/--disparity, or --task/--disparity alone "
                          f"for a what-if answer, or --demo. {EXAMPLES}")
    reconcile_disparity(task, request.disparity)  # fail fast, before reading any image
    calibration = load_calibration(Path(request.calibration_path) if request.calibration_path else None)

    dataset_ev: DatasetEvidence | None = None
    fid_ev: FidEvidence | None = None
    n_train, n_source = request.n_train, "--n-train" if request.n_train is not None else ""
    fid, fid_source, fid_reason = request.fid, "--fid" if request.fid is not None else "", None
    source: Path | None = Path(request.dataset) if request.dataset is not None else None
    if request.demo:
        from engine.data.demo import ensure_demo_dataset

        source = ensure_demo_dataset()
    if source is not None:
        from engine.data.index import index_dataset
        from engine.data.profile import profile_dataset

        with progress_bar("Reading images", enabled=show_progress) as on_progress:
            profile, index = profile_dataset(index_dataset(source), on_progress=on_progress)
        dataset_ev = DatasetEvidence(
            source=profile.source, layout=profile.layout, labeled=profile.labeled, n_used=profile.n_used,
            n_skipped=profile.n_skipped, skipped_by_reason=dict(profile.skipped_by_reason),
            num_classes=profile.num_classes, profile=profile.model_dump(mode="json"),
        )
        if profile.n_skipped:
            warn(f"{profile.n_skipped} file(s) skipped: "
                 + ", ".join(f"{r} {c}" for r, c in sorted(profile.skipped_by_reason.items())))
        if n_train is None and profile.labeled:
            n_train, n_source = profile.n_used, "usable labeled images in the dataset"
        elif n_train is None:
            warn("the dataset has no labels, so its training size is unknown; pass --n-train")
        if fid is None:
            fid_ev, fid_reason = _measure(index, request, show_progress)
            if fid_ev is not None:
                fid, fid_source = fid_ev.fid, "measured"
                for w in fid_ev.warnings:
                    warn(w)
            else:
                warn(f"FID not measured, answering without the similarity axis: {fid_reason}")
    elif fid is None:
        fid_reason = "what-if mode: no dataset to measure and no --fid given"

    inputs = build_inputs(
        task=task, disparity=request.disparity, n_train=n_train, n_train_source=n_source, fid=fid,
        fid_source=fid_source, fid_unmeasured_reason=fid_reason, fid_threshold=request.fid_threshold,
        calibration=calibration, reference=request.reference, backbone=request.backbone,
    )
    return RecommendReport(recommendation=recommend(inputs), request=request, dataset=dataset_ev,
                           fid_measurement=fid_ev, warnings=warnings)


def _measure(index: object, request: RecommendRequest, show_progress: bool) -> tuple[FidEvidence | None, str | None]:
    """Measure the FID; return ``(None, message)`` when weights or the reference are unavailable."""
    from advisor.render import progress_bar
    from engine.config.fid import FidConfig
    from engine.device import resolve_device
    from engine.errors import ReferenceStatsError, StatsFileError, WeightsError
    from engine.fid.run import measure_fid_against_reference

    config = FidConfig(weights=Path(request.inception_weights) if request.inception_weights else None)
    try:
        with progress_bar("Measuring FID", enabled=show_progress) as on_progress:
            m = measure_fid_against_reference(
                index, request.reference, config=config, device=resolve_device(request.device),  # type: ignore[arg-type]
                on_progress=on_progress,
            )
    except (WeightsError, ReferenceStatsError, StatsFileError) as exc:
        return None, " ".join(str(exc).split())
    return FidEvidence(
        fid=m.fid, n_images=m.n_images, reference=m.reference.model_dump(mode="json"), extractor=m.extractor,
        preprocessing=m.preprocessing, warnings=list(m.warnings),
    ), None


# Choices are validated by RecommendRequest (one-line error), not by the option parser.
_DisparityOpt = Annotated[
    str | None,
    typer.Option("--disparity", show_default=False, metavar="low|high",
                 help="Task disparity instead of --task: low (classification-like) or high (counting, distance, ...)."),
]
_BackboneOpt = Annotated[
    str,
    typer.Option("--backbone", metavar="in21k|mae|mocov3|swin-in21k",
                 help="Pretrained backbone: in21k = supervised ViT-B/16 ImageNet-21k (the paper's default); "
                 "mae, mocov3 = ViT-B/16 self-supervised; swin-in21k = Swin-B (Appendix C)."),
]


def recommend_command(
    dataset: Annotated[Path | None, typer.Argument(
        help="Dataset: ImageFolder tree, flat folder, 'path label' list file or 'path,label' CSV. "
        "Omit for a what-if answer.", show_default=False)] = None,
    *,
    task: Annotated[str | None, typer.Option("--task", help=task_help(), show_default=False)] = None,
    disparity: _DisparityOpt = None,
    n_train: Annotated[int | None, typer.Option(
        "--n-train", min=1, help="Training-set size (default: the dataset's usable labeled images).",
        show_default=False)] = None,
    fid: Annotated[float | None, typer.Option(
        "--fid", min=0.0, help="Known FID to the reference (skips the measurement).", show_default=False)] = None,
    fid_threshold: Annotated[float | None, typer.Option(
        "--fid-threshold", min=0.0, show_default=False,
        help="FID above which data counts as dissimilar (default: a calibration file for the same reference, "
        f"else {DEFAULT_THRESHOLD.value:.1f}, {THRESHOLD_LABEL}).")] = None,
    reference: ReferenceOpt = "in21k",
    inception_weights: InceptionWeightsOpt = None,
    backbone: _BackboneOpt = "in21k",
    device: DeviceOpt = "auto",
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", help="Calibration file (default: calibration.json in the data home, if present).",
        show_default=False)] = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
    demo: Annotated[bool, typer.Option("--demo", help="Use the embedded counting demo dataset.")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Also write a report: .html (one self-contained file) or .md (PNGs beside it).",
        show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also write the quadrant chart (.png/.svg/.pdf) and the data-size chart beside it.",
        show_default=False)] = None,
    pilot: Annotated[bool, typer.Option(
        "--pilot", help="Also run a short FT vs VPT pilot on the dataset (see 'vpt-advisor pilot' for every "
        "option); its evidence outranks the paper's priors when the gap exceeds the seed noise.")] = False,
    budget: BudgetOpt = "15m",
    weights: WeightsOpt = None,
    yes: YesOpt = False,
) -> None:
    """Recommend full finetuning (FT) or visual prompt tuning (VPT), with the paper's evidence."""
    from advisor.render import emit_json, err_console, warn
    from advisor.render.recommend import render_report
    from engine.data.demo import ensure_demo_dataset
    from engine.errors import ConfigError

    request = RecommendRequest(
        dataset=str(dataset) if dataset is not None else None, demo=demo, task=task,
        disparity=disparity,  # type: ignore[arg-type]
        n_train=n_train, fid=fid, fid_threshold=fid_threshold, reference=reference,
        inception_weights=str(inception_weights) if inception_weights else None, backbone=backbone,  # type: ignore[arg-type]
        device=device, calibration_path=str(calibration) if calibration else None,
    )
    _check_output_paths(report, plot)  # fail before any image is read
    if pilot and dataset is None and not demo:
        raise ConfigError("--pilot trains on a dataset: give a DATASET (or --demo)")
    show = not as_json and err_console.is_terminal
    result = run_recommend(request, show_progress=show)  # warnings: printed once by render_report
    if pilot:
        result = _run_pilot(result, PilotRequest(
            dataset=dataset if dataset is not None else ensure_demo_dataset(),
            task=result.recommendation.inputs.task,  # --demo implies counting
            disparity=disparity,  # type: ignore[arg-type]
            budget=budget, weights=weights, device=device, yes=yes), as_json=as_json, show=show)
    if as_json:
        emit_json(result)
        for w in result.warnings:
            warn(w)  # stdout stays pure JSON; the warnings still reach the person on stderr
    else:
        render_report(result, explain=explain)
    _write_outputs(result, report, plot)


def _run_pilot(result: RecommendReport, req: PilotRequest, *, as_json: bool, show: bool) -> RecommendReport:
    """Run the pilot on the profiled dataset and fold its evidence into the recommendation.

    If the pilot cannot run (no backbone weights offline, budget too small...), the paper-only
    recommendation is shown first and the error then ends the command with exit code 1.
    """
    from advisor.decide import recommend
    from advisor.render import err_console
    from advisor.render.pilot import render_plan
    from advisor.render.recommend import render_report
    from engine.errors import EngineError

    on_plan = None if as_json else (lambda plan, source: render_plan(plan, prompts_source=source))
    try:
        pilot_report, _ = run_pilot_request(req, show_progress=show, on_plan=on_plan,
                                            prior=result.recommendation.inputs)
    except EngineError:
        if not as_json:
            err_console.print("The pilot could not run; the recommendation from the paper alone:")
            render_report(result)
        raise
    if pilot_report.evidence is None:
        return result.model_copy(update={"warnings": [*result.warnings, "the pilot finished no trial"]})
    updated = recommend(result.recommendation.inputs, pilot_report.evidence)
    return result.model_copy(update={"recommendation": updated, "pilot": pilot_report.evidence})


def _check_output_paths(report: Path | None, plot: Path | None) -> None:
    from advisor.report.figures import check_plot_path
    from advisor.report.write import check_report_path

    if report is not None:
        check_report_path(report)
    if plot is not None:
        check_plot_path(plot)


def _write_outputs(result: RecommendReport, report: Path | None, plot: Path | None) -> None:
    """Write ``--report`` / ``--plot`` files and say where they went (on stderr, so --json stays clean)."""
    from advisor.render import err_console
    from advisor.report import write_recommend_plots, write_recommend_report

    written: list[Path] = []
    if report is not None:
        written.append(write_recommend_report(result, report))
    if plot is not None:
        written.extend(write_recommend_plots(result, plot))
    for path in written:
        err_console.print(f"Wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the ``recommend`` command to ``app``."""
    app.command("recommend", epilog=EXAMPLES)(recommend_command)
