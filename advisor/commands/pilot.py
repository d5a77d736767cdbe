"""``vpt-advisor pilot DATASET --task T --budget 15m``: parse, call :mod:`advisor.usecases.pilot`, render.

The use case (plan, confirmation, training, evidence) is :func:`advisor.usecases.pilot.run_pilot_request`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from advisor.commands._callbacks import cli_confirm, cli_progress
from engine.config.train import DEFAULT_BACKBONE
from engine.train.methods import method_specs
from advisor.commands._options import DeviceOpt, ExplainOpt, JsonOpt, YesOpt
from advisor.usecases.pilot import PilotRefusal, PilotReport, PilotRequest, run_pilot_request
from engine.config.validate import check_output_dir
from engine.errors import NotDecisiveError

if TYPE_CHECKING:
    from engine.train.pilot import PilotResult

__all__ = ["pilot_command", "register", "write_pilot_outputs", "BudgetOpt", "ReportOpt", "WeightsOpt",
           "MinDetectableOpt"]

EXAMPLES = (
    "Examples: 'vpt-advisor pilot ./mydata --task counting --budget 15m' · "
    "'vpt-advisor pilot ./mydata --task dtd --methods full,vpt-deep,vpt-shallow --seeds 2 --budget 1h'"
)


def write_pilot_outputs(report: PilotReport, result: PilotResult, path: Path | None) -> Path | None:
    """Write ``--report`` (HTML or Markdown) for a finished pilot; returns the path written."""
    if path is None:
        return None
    from advisor.report import from_pilot, write_pilot_report

    inputs = from_pilot(result, recommendation=report.recommendation, dataset=report.dataset)
    return write_pilot_report(inputs, path)


_PrecisionOpt = Annotated[
    Literal["auto", "fp32", "bf16", "fp16"],
    typer.Option("--precision", help="auto (bf16 on GPU and on CPUs with native bf16 - AVX-512 BF16 or AMX - else "
                 "fp32), fp32, bf16 (refused where the CPU would emulate it) or fp16 (CUDA only)."),
]
MinDetectableOpt = Annotated[float, typer.Option(
    "--min-detectable", min=0.1, max=100.0,
    help="Smallest VPT-FT difference (accuracy points) the pilot must be able to detect; a plan that cannot is "
    "refused before training unless --yes (then it is 'not decisive by design' and never changes the answer).")]
BudgetOpt = Annotated[str, typer.Option("--budget", help="Time budget for all trials, e.g. 15m, 90s, 1h30m.")]
WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", help="Local backbone weights: Google .npz, .safetensors or .pth (instead of the hub).",
    show_default=False)]
ReportOpt = Annotated[Path | None, typer.Option(
    "--report", help="Also write a report: .html (one self-contained file) or .md (PNGs beside it).",
    show_default=False)]


def pilot_command(
    dataset: Annotated[Path, typer.Argument(
        help="Labeled dataset: ImageFolder tree, 'path label' list file or 'path,label' CSV.", show_default=False)],
    *,
    task: Annotated[str | None, typer.Option(
        "--task", help="Task type or VTAB-1k task (sets the prompt length and enables the recommendation).",
        show_default=False)] = None,
    disparity: Annotated[Literal["low", "high"] | None, typer.Option(
        "--disparity", help="Task disparity instead of --task (for the recommendation).", show_default=False)] = None,
    budget: BudgetOpt = "15m",
    methods: Annotated[str, typer.Option(
        "--methods", help=f"Comma-separated: {', '.join(s.name for s in method_specs())}.")] = "full,vpt-deep",
    model: Annotated[str, typer.Option("--model", help="timm ViT name.")] = DEFAULT_BACKBONE,
    weights: WeightsOpt = None,
    random_init: Annotated[bool, typer.Option(
        "--random-init", help="Allow a randomly initialised backbone (smoke tests only: results are meaningless).")] = False,
    prompts: Annotated[int | None, typer.Option(
        "--prompts", min=1, help="Prompt tokens per set (default: the paper's length for a VTAB-1k --task, else 10).",
        show_default=False)] = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, max=5, help="Seeds per method and lr.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per step.")] = 64,
    img_size: Annotated[int | None, typer.Option(
        "--img-size", min=8, help="Input size (default: the model's, 224 for ViT-B/16).", show_default=False)] = None,
    device: DeviceOpt = "auto",
    precision: _PrecisionOpt = "auto",
    min_detectable: MinDetectableOpt = 3.0,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where trials are stored (default: <data home>/pilot); rerunning resumes.",
        show_default=False)] = None,
    report: ReportOpt = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Smoke test of the pipeline: 2 epochs and one lr per method; the results are meaningless.",
    )] = False,
) -> None:
    """Run short FT and VPT trainings on your data within a time budget, then update the recommendation."""
    from rich.markup import escape

    from advisor.render import emit_json, err_console, warn
    from advisor.render.pilot import render_plan, render_report
    from advisor.report.write import check_report_path

    if report is not None:
        check_report_path(report)  # fail before any training
    check_output_dir("--out", out)
    req = PilotRequest(dataset=dataset, task=task, disparity=disparity, budget=budget, methods=methods, model=model,
                       weights=weights, random_init=random_init, prompts=prompts, seeds=seeds, batch_size=batch_size,
                       img_size=img_size, device=device, precision=precision, min_detectable=min_detectable,
                       yes=yes, out=out, quick=quick)
    on_plan = None if as_json else (lambda plan, source: render_plan(plan, prompts_source=source))
    try:
        result, pilot = run_pilot_request(req, progress=cli_progress(not as_json and err_console.is_terminal),
                                          on_plan=on_plan, confirm=cli_confirm())
    except NotDecisiveError as exc:
        if as_json and exc.plan is not None:  # --json carries the plan that was refused, then the error
            emit_json(PilotRefusal(reason=str(exc), plan=exc.plan))
        raise
    if as_json:
        emit_json(result)
    else:
        render_report(pilot, result.recommendation, has_task=task is not None or disparity is not None,
                      random_init=result.random_init, explain=explain)
        if result.skipped_by_reason:
            why = ", ".join(f"{reason} {n}" for reason, n in result.skipped_by_reason.items())
            warn(f"{sum(result.skipped_by_reason.values())} dataset entries were not used ({why}); "
                 "'vpt-advisor profile' lists them")
    written = write_pilot_outputs(result, pilot, report)
    if written is not None:
        err_console.print(f"Wrote {escape(str(written))}")


def register(app: typer.Typer) -> None:
    """Add the ``pilot`` command to ``app``."""
    app.command("pilot", epilog=EXAMPLES)(pilot_command)
