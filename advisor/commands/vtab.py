"""``vpt-advisor reproduce-vtab`` (the paper's VTAB-1k protocol, resumable) and ``vpt-advisor calibrate``.

Parse, call, render: the use cases are :func:`benchmarks.vtab.reproduce.reproduce_vtab` and
:func:`benchmarks.vtab.calibrate.run_calibration` (the CLI is the one place advisor reaches benchmarks).

``reproduce-vtab VTAB_ROOT`` checks the NOAH-layout tree, runs the lr x wd search on 800/200, the
final seeds on train800val200 and the test split, and prints ours against the paper's Tables 1-2.
Trials live in a SQLite store (``--db``); rerunning the same command resumes. ``calibrate VTAB_ROOT``
fits the FID similarity threshold ``recommend`` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from advisor.commands._callbacks import cli_progress
from advisor.commands._options import (
    DeviceOpt,
    ExplainOpt,
    InceptionWeightsOpt,
    JsonOpt,
    ModelOpt,
    ProtocolSetOpt,
    ReferenceOpt,
    YesOpt,
)
from engine.config.train import DEFAULT_BACKBONE
from engine.config.validate import check_output_dir

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

if TYPE_CHECKING:
    from benchmarks.vtab.plan import ProtocolPlan
    from benchmarks.vtab.run import SweepReport
    from benchmarks.vtab.tables import VtabTable

__all__ = ["reproduce_vtab_command", "calibrate_command", "register"]

EXAMPLES = ("Examples: 'vpt-advisor reproduce-vtab ~/data/vtab-1k --protocol quick --tasks dtd,eurosat' · "
            "'vpt-advisor reproduce-vtab ~/data/vtab-1k --backend dask --scheduler tcp://head:8786 --yes'")


_ReportOpt = Annotated[Path | None, typer.Option(
    "--report", help="Also write a report (.html or .md): ours minus paper per task, data-size curves.",
    show_default=False)]


_RootArg = Annotated[Path, typer.Argument(help="VTAB-1k root in the NOAH layout (<task>/images, train800.txt...).",
                                         show_default=False)]
_ProtocolOpt = Annotated[Literal["paper", "quick"], typer.Option(
    "--protocol", help="paper (the full grid, 100 epochs, 5 seeds) or quick (a small smoke test).")]
_TasksOpt = Annotated[list[str] | None, typer.Option(
    "--tasks", help="Tasks or groups (natural, specialized, structured), comma-separated. Default: all 19.",
    show_default=False)]
_MethodsOpt = Annotated[list[str] | None, typer.Option("--methods", help="ft and/or vpt (default both).",
                                                       show_default=False)]
_SizesOpt = Annotated[list[str] | None, typer.Option(
    "--sizes", help="Training sizes for Tables 5-6, e.g. 400,800,5000 (default 800).", show_default=False)]
_BackendOpt = Annotated[Literal["local", "dask", "ray"], typer.Option(
    "--backend", help="local (joblib processes), dask (needs --scheduler) or ray (if installed).")]
_SchedulerOpt = Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://h:8786.",
                                                   show_default=False)]
_JobsOpt = Annotated[int, typer.Option("--jobs", min=0, help="Local worker processes (0 = one per GPU, or 1).")]
_DbOpt = Annotated[Path | None, typer.Option(
    "--db", help="Results store (default: <data home>/vtab/<protocol>.sqlite).", show_default=False)]
_WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="Local backbone weights (.npz/.safetensors/.pth).",
                                                  show_default=False)]
_RandomInitOpt = Annotated[bool, typer.Option("--random-init", help="Random backbone (smoke tests only).")]
_ModelArgOpt = Annotated[list[str] | None, typer.Option(
    "--model-arg", help="Extra timm.create_model argument KEY=VALUE (repeatable), e.g. depth=2.", show_default=False)]
_ImgSizeOpt = Annotated[int | None, typer.Option("--img-size", min=8, help="Input size (default 224).",
                                                 show_default=False)]
_BatchVptOpt = Annotated[bool, typer.Option(
    "--batch-vpt/--no-batch-vpt", help="Train a task's VPT configurations together on one backbone.")]
_FormatOpt = Annotated[Literal["rich", "markdown", "csv", "json"], typer.Option("--format", help="Output format.")]
_OutOpt = Annotated[Path | None, typer.Option("--out", help="Also write config.json, table.md/.csv/.json here.",
                                              show_default=False)]
_PlanOpt = Annotated[bool, typer.Option(
    "--plan", help="Print the plan and stop: per task and method the batch, warm-up and every grid point's "
    "optimiser (lr, wd -> SGD/AdamW, effective wd). Trains nothing, reads no data.")]


def reproduce_vtab_command(
    vtab_root: _RootArg, *, protocol: _ProtocolOpt = "paper", tasks: _TasksOpt = None, methods: _MethodsOpt = None,
    sizes: _SizesOpt = None, backend: _BackendOpt = "local", scheduler: _SchedulerOpt = None, jobs: _JobsOpt = 0,
    db: _DbOpt = None, model: ModelOpt = DEFAULT_BACKBONE, weights: _WeightsOpt = None,
    random_init: _RandomInitOpt = False, model_arg: _ModelArgOpt = None, img_size: _ImgSizeOpt = None,
    batch_vpt: _BatchVptOpt = True, protocol_set: ProtocolSetOpt = None, device: DeviceOpt = "auto",
    fmt: _FormatOpt = "rich", out: _OutOpt = None, yes: YesOpt = False, explain: ExplainOpt = False,
    report_path: _ReportOpt = None, plan: _PlanOpt = False,
) -> None:
    """Reproduce the paper's VTAB-1k FT vs VPT tables on your hardware (resumable)."""
    from advisor.render import err_console, print_message
    from advisor.report import write_vtab_report
    from advisor.report.write import check_report_path
    from benchmarks.vtab.reproduce import build_sweep_request, plan_vtab, reproduce_vtab, write_outputs

    if report_path is not None:
        check_report_path(report_path)  # fail before any training
    check_output_dir("--out", out)
    request = build_sweep_request(vtab_root, protocol=protocol, tasks=tasks, methods=methods, sizes=sizes,
                                  backend=backend, scheduler=scheduler, jobs=jobs, db=db, model=model, weights=weights,
                                  random_init=random_init, model_args=model_arg, img_size=img_size, device=device,
                                  batch_vpt=batch_vpt, protocol_set=protocol_set)
    if plan:  # show what would train, and stop
        _render_plan(fmt, plan_vtab(request), explain=explain)
        return
    report, table = reproduce_vtab(request, yes=yes, progress=cli_progress(fmt == "rich"),
                                   on_event=lambda m: print_message(m, target=err_console))
    _render(fmt, report, table, explain=explain)
    if out is not None:
        write_outputs(out, request, table, report)
    if report_path is not None:
        print_message(f"Wrote {write_vtab_report(table, report_path)}", target=err_console)


def _render(fmt: str, report: SweepReport, table: VtabTable, *, explain: bool = False) -> None:
    """``--format rich`` tables on the terminal, or markdown/csv/json on stdout."""
    import sys

    from rich.markup import escape

    from advisor.render import err_console
    from advisor.render.vtab import render_layout, render_table
    from benchmarks.vtab.tables import to_csv, to_json, to_markdown

    if fmt == "rich":
        render_layout(report.layout, explain=explain)
        for line in report.failure_summary:  # identical errors grouped: "12 trials failed: ..."
            err_console.print(f"[red]failed[/red] {escape(line)} (retried by the next run)", soft_wrap=True)
        for task, n in report.skipped.items():
            err_console.print(f"[yellow]skipped[/yellow] {escape(task)}: {n} list entries (see the notes above)")
        render_table(table, db=report.db)
        return
    text = {"markdown": to_markdown, "csv": to_csv}.get(fmt)
    sys.stdout.write(text(table) if text else to_json(
        table, db=report.db, failures=report.failures, failed=report.failed, failure_summary=report.failure_summary,
        warnings=report.warnings, skipped=report.skipped, unusable=[t.model_dump() for t in report.layout.unusable]))


def _render_plan(fmt: str, plan: ProtocolPlan, *, explain: bool) -> None:
    """``--plan``: the rich plan tables, or one row per task, method and grid point as markdown/csv/json."""
    import csv
    import io
    import sys

    from advisor.render import emit_json
    from advisor.render.vtab import render_plan
    from benchmarks.vtab.plan import PLAN_COLUMNS, plan_markdown, plan_rows

    if fmt == "rich":
        render_plan(plan, explain=explain)
    elif fmt == "json":
        emit_json(plan)
    elif fmt == "markdown":
        sys.stdout.write(plan_markdown(plan))
    else:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([list(PLAN_COLUMNS), *plan_rows(plan)])
        sys.stdout.write(buf.getvalue())


def calibrate_command(
    vtab_root: Annotated[Path, typer.Argument(help="VTAB-1k root in the NOAH layout.", show_default=False)],
    *,
    reference: ReferenceOpt = "in21k",
    inception_weights: InceptionWeightsOpt = None,
    device: DeviceOpt = "auto",
    dims: Annotated[int, typer.Option("--dims", help="Inception feature dims of the reference: 64, 192, 768 or "
                                      "2048 (standard FID).")] = 2048,
    output: Annotated[Path | None, typer.Option(
        "--output", help="Calibration file (default: <data home>/calibration.json).", show_default=False)] = None,
    allow_unverified: Annotated[bool, typer.Option(
        "--allow-unverified", help="Fit unverified FIDs too (other Inception weights, a doubtful reference); the "
        "file is marked unverified and 'recommend' refuses it: for inspecting a calibration only.")] = False,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
) -> None:
    """Fit the FID similarity threshold on VTAB-1k (FT-won vs VPT-won low-disparity tasks) for 'recommend'."""
    from advisor.commands._callbacks import stage_progress
    from advisor.render import emit_json
    from advisor.render.vtab import render_calibration
    from benchmarks.vtab.calibrate import CalibrationRequest, run_calibration

    request = CalibrationRequest(root=vtab_root, reference=reference, inception_weights=inception_weights,
                                 device=device, output=output, dims=dims, allow_unverified=allow_unverified)
    with stage_progress("FID per task", enabled=not as_json) as on_progress:
        report = run_calibration(request, on_progress=on_progress)
    if as_json:
        emit_json(report)
    else:
        render_calibration(report, explain=explain)


def register(app: typer.Typer) -> None:
    """Add ``reproduce-vtab`` and ``calibrate`` to ``app``."""
    app.command("reproduce-vtab", epilog=EXAMPLES)(reproduce_vtab_command)
    app.command("calibrate")(calibrate_command)
