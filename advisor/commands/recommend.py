"""``vpt-advisor recommend [DATASET]``: parse the options, call :mod:`advisor.usecases.recommend`, render.

The use case (profiling, FID, the paper's rules, the optional pilot) is in
:func:`advisor.usecases.recommend.run_recommend`; this module only turns options into a
``RecommendRequest`` and the report into terminal output and files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advisor.commands._callbacks import cli_confirm, cli_progress
from advisor.commands._options import (
    BudgetOpt,
    DaskWorkersOpt,
    DeviceOpt,
    ExplainOpt,
    FidBackendOpt,
    FidSchedulerOpt,
    InceptionWeightsOpt,
    JsonOpt,
    MinDetectableOpt,
    ReferenceOpt,
    ReportOpt,
    RootOpt,
    WeightsOpt,
    YesOpt,
    finite_non_negative,
)
from advisor.decide import DEFAULT_THRESHOLD
from advisor.rules import THRESHOLD_LABEL
from advisor.schemas import RecommendReport, RecommendRequest
from advisor.tasks import task_help
from advisor.usecases.recommend import EXAMPLES, add_pilot, check_pilot_request, run_recommend
from engine.config.train import DEFAULT_BUDGET, DEFAULT_MIN_DETECTABLE

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

__all__ = ["recommend_command", "register"]


_DatasetArg = Annotated[Path | None, typer.Argument(
    help="Dataset: ImageFolder tree, flat folder, 'path label' list file or 'path,label' CSV. "
    "Omit for a what-if answer.", show_default=False)]
_TaskOpt = Annotated[str | None, typer.Option("--task", help=task_help(), show_default=False)]
# Choices are validated by RecommendRequest (one-line error), not by the option parser.
_DisparityOpt = Annotated[
    str | None,
    typer.Option("--disparity", show_default=False, metavar="low|high",
                 help="Task disparity instead of --task: low (classification-like) or high (counting, distance, ...)."),
]
_NTrainOpt = Annotated[int | None, typer.Option(
    "--n-train", min=1, help="Training-set size (default: the dataset's usable labeled images).", show_default=False)]
_FidOpt = Annotated[float | None, typer.Option(
    "--fid", callback=finite_non_negative, help="Known FID to the reference (skips the measurement).",
    show_default=False)]
_FidThresholdOpt = Annotated[float | None, typer.Option(
    "--fid-threshold", callback=finite_non_negative, show_default=False,
    help="FID above which data counts as dissimilar (default: a calibration file for the same reference, "
    f"else {DEFAULT_THRESHOLD.value:.1f}, {THRESHOLD_LABEL}).")]
_TrustReferenceOpt = Annotated[bool, typer.Option(
    "--trust-reference", help="Let the FID decide although the reference lacks provenance, was built with "
    "another extractor or preprocessing, or from fewer than 10,000 images (experts only; non-standard "
    "Inception weights stay unverified).")]
_BackboneOpt = Annotated[
    str,
    typer.Option("--backbone", metavar="in21k|mae|mocov3|swin-in21k",
                 help="Pretrained backbone: in21k = supervised ViT-B/16 ImageNet-21k (the paper's default); "
                 "mae, mocov3 = ViT-B/16 self-supervised; swin-in21k = Swin-B (Appendix C)."),
]
_CalibrationOpt = Annotated[Path | None, typer.Option(
    "--calibration", help="Calibration file (default: calibration.json in the data home, if present).",
    show_default=False)]
_DemoOpt = Annotated[bool, typer.Option("--demo", help="Use the embedded counting demo dataset.")]
_PlotOpt = Annotated[Path | None, typer.Option(
    "--plot", help="Also write the quadrant chart (.png/.svg/.pdf) and the data-size chart beside it.",
    show_default=False)]
_PilotOpt = Annotated[bool, typer.Option(
    "--pilot", help="Also run a short FT vs VPT pilot on the dataset (see 'vpt-advisor pilot' for every "
    "option); its evidence outranks the paper's priors when the paired 95 % interval of the gap excludes zero.")]


def recommend_command(
    dataset: _DatasetArg = None,
    *,
    task: _TaskOpt = None,
    disparity: _DisparityOpt = None,
    n_train: _NTrainOpt = None,
    fid: _FidOpt = None,
    fid_threshold: _FidThresholdOpt = None,
    reference: ReferenceOpt = "in21k",
    trust_reference: _TrustReferenceOpt = False,
    inception_weights: InceptionWeightsOpt = None,
    fid_backend: FidBackendOpt = "local",
    scheduler: FidSchedulerOpt = None,
    dask_workers: DaskWorkersOpt = 0,
    backbone: _BackboneOpt = "in21k",
    device: DeviceOpt = "auto",
    calibration: _CalibrationOpt = None,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
    demo: _DemoOpt = False,
    report: ReportOpt = None,
    plot: _PlotOpt = None,
    pilot: _PilotOpt = False,
    budget: BudgetOpt = DEFAULT_BUDGET,
    min_detectable: MinDetectableOpt = DEFAULT_MIN_DETECTABLE,
    weights: WeightsOpt = None,
    yes: YesOpt = False,
    root: RootOpt = None,
) -> None:
    """Recommend full finetuning (FT) or visual prompt tuning (VPT), with the paper's evidence."""

    request = RecommendRequest(
        dataset=str(dataset) if dataset is not None else None, root=str(root) if root else None, demo=demo,
        task=task, disparity=disparity,
        n_train=n_train, fid=fid, fid_threshold=fid_threshold, reference=reference,
        inception_weights=str(inception_weights) if inception_weights else None, backbone=backbone,
        fid_backend=fid_backend, scheduler=scheduler, dask_workers=dask_workers,
        device=device, calibration_path=str(calibration) if calibration else None, trust_reference=trust_reference,
    )
    _check_output_paths(report, plot)  # fail before any image is read
    if pilot:
        check_pilot_request(request)
    show = not as_json
    result = run_recommend(request, progress=cli_progress(show))  # warnings: printed once, after the answer
    if pilot:
        result = _with_pilot(result, budget=budget, weights=weights, yes=yes, as_json=as_json, show=show,
                             min_detectable=min_detectable)
    _render(result, as_json=as_json, explain=explain)
    _write_outputs(result, report, plot)


def _render(result: RecommendReport, *, as_json: bool, explain: bool) -> None:
    """The answer on the terminal, or JSON on stdout with the warnings on stderr."""
    from advisor.render import emit_json, warn
    from advisor.render.recommend import render_report

    if as_json:
        emit_json(result)
        for w in result.warnings:
            warn(w)  # stdout stays pure JSON; the warnings still reach the person on stderr
    else:
        render_report(result, explain=explain)  # says each warning once (not again where a reason says it)


def _with_pilot(result: RecommendReport, *, budget: str, weights: Path | None, yes: bool, as_json: bool,
                show: bool, min_detectable: float) -> RecommendReport:
    """Run the pilot; if it cannot run, show the paper-only recommendation first, then fail (exit 1)."""
    from advisor.render import err_console
    from advisor.render.pilot import render_plan
    from advisor.render.recommend import render_report
    from engine.errors import EngineError

    on_plan = None if as_json else (lambda plan, source: render_plan(plan, prompts_source=source))
    try:
        return add_pilot(result, budget=budget, weights=weights, yes=yes, progress=cli_progress(show),
                         on_plan=on_plan, confirm=cli_confirm(), min_detectable=min_detectable)
    except EngineError:
        if not as_json:
            err_console.print("The pilot could not run; the recommendation from the paper alone:")
            render_report(result)
        raise


def _check_output_paths(report: Path | None, plot: Path | None) -> None:
    from advisor.report.figures import check_plot_path
    from advisor.report.write import check_report_path

    if report is not None:
        check_report_path(report)
    if plot is not None:
        check_plot_path(plot)


def _write_outputs(result: RecommendReport, report: Path | None, plot: Path | None) -> None:
    """Write ``--report`` / ``--plot`` files and say where they went (on stderr, so --json stays clean)."""
    from advisor.render import err_console, print_message
    from advisor.report import write_recommend_plots, write_recommend_report

    written: list[Path] = []
    if report is not None:
        written.append(write_recommend_report(result, report))
    if plot is not None:
        written.extend(write_recommend_plots(result, plot))
    for path in written:
        print_message(f"Wrote {path}", target=err_console)


def register(app: typer.Typer) -> None:
    """Add the ``recommend`` command to ``app``."""
    app.command("recommend", epilog=EXAMPLES)(recommend_command)
