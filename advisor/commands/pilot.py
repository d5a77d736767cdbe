"""``vpt-advisor pilot DATASET --task T --budget 15m``: parse, call :mod:`advisor.usecases.pilot`, render.

The use case (plan, confirmation, training, evidence) is :func:`advisor.usecases.pilot.run_pilot_request`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from advisor.commands._callbacks import cli_confirm, cli_progress
from advisor.commands._options import (
    BudgetOpt,
    DeviceOpt,
    ExplainOpt,
    JsonOpt,
    MinDetectableOpt,
    ModelOpt,
    PrecisionOpt,
    ReportOpt,
    RootOpt,
    WeightsOpt,
    YesOpt,
)
from advisor.usecases.pilot import PilotRefusal, PilotReport, PilotRequest, run_pilot_request
from engine.config.train import DEFAULT_BACKBONE, DEFAULT_BUDGET, DEFAULT_MIN_DETECTABLE, BackboneSpec
from engine.config.validate import check_output_dir
from engine.errors import NotDecisiveError
from engine.train.methods import default_pilot_methods, method_specs, unavailable_reason
from engine.vocab import Disparity

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

if TYPE_CHECKING:
    from engine.train.pilot import PilotResult

__all__ = ["pilot_command", "register", "write_pilot_outputs"]

_DEFAULT_METHODS = ",".join(default_pilot_methods())
EXAMPLES = (
    "Examples: 'vpt-advisor pilot ./mydata --task counting --budget 15m' · "
    f"'vpt-advisor pilot ./mydata --task dtd --methods {','.join(s.name for s in method_specs() if s.side)} "
    "--seeds 2 --budget 1h'"
)


def _method_choices() -> str:
    """Every registered method for ``--methods``, those missing an optional package marked as such."""
    return ", ".join(s.name + (f" (needs pip install 'vpt-advisor[{s.extra}]')" if unavailable_reason(s) else "")
                     for s in method_specs())


def write_pilot_outputs(report: PilotReport, result: PilotResult, path: Path | None) -> Path | None:
    """Write ``--report`` (HTML or Markdown) for a finished pilot; returns the path written."""
    if path is None:
        return None
    from advisor.report import from_pilot, write_pilot_report

    inputs = from_pilot(result, recommendation=report.recommendation, dataset=report.dataset,
                        smoke_test=report.smoke_test or "")
    return write_pilot_report(inputs, path)


_DatasetArg = Annotated[Path, typer.Argument(
    help="Labeled dataset: ImageFolder tree, 'path label' list file or 'path,label' CSV.", show_default=False)]
_TaskOpt = Annotated[str | None, typer.Option(
    "--task", help="Task type or VTAB-1k task (sets the prompt length and enables the recommendation).",
    show_default=False)]
_DisparityOpt = Annotated[Disparity | None, typer.Option(
    "--disparity", help="Task disparity instead of --task (for the recommendation).", show_default=False)]
_MethodsOpt = Annotated[str, typer.Option(
    "--methods", help=f"Comma-separated: {_method_choices()}.")]
_RandomInitOpt = Annotated[bool, typer.Option(
    "--random-init", help="Allow a randomly initialised backbone (smoke tests only: results are meaningless).")]
_InitSeedOpt = Annotated[int, typer.Option(
    "--init-seed", help="Seed of the --random-init backbone (recorded; the same seed builds the same backbone).")]
_PromptsOpt = Annotated[int | None, typer.Option(
    "--prompts", min=1, help="Prompt tokens per set (default: the paper's length for a VTAB-1k --task, else 10).",
    show_default=False)]
_SeedsOpt = Annotated[int, typer.Option("--seeds", min=1, max=5, help="Seeds per method and lr.")]
_BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per step.")]
_ImgSizeOpt = Annotated[int | None, typer.Option(
    "--img-size", min=8, help="Input size (default: the model's, 224 for ViT-B/16).", show_default=False)]
_OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Where trials are stored (default: <data home>/pilot); rerunning resumes.", show_default=False)]
_SaveOpt = Annotated[Path | None, typer.Option(
    "--save", help="Write the winning trial's trainable weights to this folder (safetensors; method, backbone and "
    "data fingerprint in its metadata) so you can continue from it.", show_default=False)]
_QuickOpt = Annotated[bool, typer.Option(
    "--quick", help="Smoke test of the pipeline: 2 epochs and one lr per method; the results are meaningless.")]


def pilot_command(
    dataset: _DatasetArg,
    *,
    task: _TaskOpt = None,
    disparity: _DisparityOpt = None,
    budget: BudgetOpt = DEFAULT_BUDGET,
    methods: _MethodsOpt = _DEFAULT_METHODS,
    model: ModelOpt = DEFAULT_BACKBONE,
    weights: WeightsOpt = None,
    random_init: _RandomInitOpt = False,
    init_seed: _InitSeedOpt = 0,
    prompts: _PromptsOpt = None,
    seeds: _SeedsOpt = 3,
    batch_size: _BatchSizeOpt = 64,
    img_size: _ImgSizeOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    min_detectable: MinDetectableOpt = DEFAULT_MIN_DETECTABLE,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
    out: _OutOpt = None,
    report: ReportOpt = None,
    quick: _QuickOpt = False,
    save: _SaveOpt = None,
    root: RootOpt = None,
) -> None:
    """Run short FT and VPT trainings on your data within a time budget, then update the recommendation."""
    from advisor.report.write import check_report_path

    if report is not None:
        check_report_path(report)  # fail before any training
    check_output_dir("--out", out)
    check_output_dir("--save", save)
    request = PilotRequest(
        dataset=dataset, root=root, task=task, disparity=disparity, budget=budget, methods=methods,
        backbone=BackboneSpec(model=model, weights=weights, random_init=random_init, init_seed=init_seed),
        prompts=prompts, seeds=seeds, batch_size=batch_size, img_size=img_size, device=device, precision=precision,
        min_detectable=min_detectable, yes=yes, out=out, quick=quick, save=save)
    pilot_report, result = _run(request, as_json=as_json)
    _render(pilot_report, result, as_json=as_json, explain=explain, has_task=task is not None or disparity is not None)
    _write_report(pilot_report, result, report)


def _run(request: PilotRequest, *, as_json: bool) -> tuple[PilotReport, PilotResult]:
    """Run the use case with terminal progress and questions; a refused plan still reaches ``--json``."""
    from advisor.render import emit_json
    from advisor.render.pilot import render_plan

    on_plan = None if as_json else (lambda plan, source: render_plan(plan, prompts_source=source))
    try:
        return run_pilot_request(request, progress=cli_progress(not as_json),
                                 on_plan=on_plan, confirm=cli_confirm())
    except NotDecisiveError as exc:
        if as_json and exc.plan is not None:  # --json carries the plan that was refused, then the error
            emit_json(PilotRefusal(reason=str(exc), plan=exc.plan))
        raise


def _render(report: PilotReport, result: PilotResult, *, as_json: bool, explain: bool, has_task: bool) -> None:
    """JSON on stdout, or the results table and the updated advice, then what was skipped (stderr)."""
    from advisor.render import emit_json, warn
    from advisor.render.pilot import render_report

    if as_json:
        emit_json(report)
        return
    render_report(result, report.recommendation, has_task=has_task, random_init=report.random_init, explain=explain,
                  smoke_test=report.smoke_test)
    if report.skipped_by_reason:
        why = ", ".join(f"{reason} {n}" for reason, n in report.skipped_by_reason.items())
        warn(f"{sum(report.skipped_by_reason.values())} dataset entries were not used ({why}); "
             "'vpt-advisor profile' lists them")


def _write_report(report: PilotReport, result: PilotResult, path: Path | None) -> None:
    from advisor.render import err_console, print_message

    written = write_pilot_outputs(report, result, path)
    if written is not None:
        print_message(f"Wrote {written}", target=err_console)


def register(app: typer.Typer) -> None:
    """Add the ``pilot`` command to ``app``."""
    app.command("pilot", epilog=EXAMPLES)(pilot_command)
