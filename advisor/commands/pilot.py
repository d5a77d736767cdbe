"""``vpt-advisor pilot DATASET --task T --budget 15m``: measured FT vs VPT on the user's own data.

The pilot (``engine.train.pilot``) fits a stratified 4:1 subsample, a small lr grid and ``--seeds`` seeds
into the budget from a measured warm-up, states the plan, and asks for ``--yes`` before a long CPU
run. Finished trials are stored under ``--out`` (rerunning resumes; Ctrl-C keeps them). With
``--task`` (or ``--disparity``) the pilot's accuracies become ``PilotEvidence`` for
``advisor.decide.recommend``, which lets them outrank the paper's priors when the difference
exceeds the seed noise.

Default prompt length: the paper's per-task length (App. E) when ``--task`` names a VTAB-1k task,
otherwise ``engine.config.train.DEFAULT_NUM_PROMPTS`` (10, as VPT's README examples).
"""

from __future__ import annotations

import sys
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field

from advisor.commands._options import DeviceOpt, ExplainOpt, JsonOpt, YesOpt
from advisor.schemas import AdvisorInputs, MethodScore, PilotEvidence, Recommendation

__all__ = [
    "PilotReport", "PilotRequest", "run_pilot_request", "write_pilot_outputs", "LONG_CPU_RUN_S",
    "default_prompt_length", "pilot_evidence", "pilot_command", "register",
]

LONG_CPU_RUN_S = 10 * 60
"""A CPU pilot estimated to take longer than this needs ``--yes`` (or an interactive confirmation)."""

EXAMPLES = (
    "Examples: 'vpt-advisor pilot ./mydata --task counting --budget 15m' · "
    "'vpt-advisor pilot ./mydata --task dtd --methods full,vpt-deep,vpt-shallow --seeds 2 --budget 1h'"
)


class PilotReport(BaseModel):
    """What ``pilot --json`` prints."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Dataset path as given.")
    n_labeled: int = Field(description="Labeled images found in the dataset.")
    task: str | None = Field(description="--task as given.")
    num_prompts: int = Field(description="Prompt tokens per set used by prompt methods.")
    num_prompts_source: str = Field(description="Where the prompt length came from.")
    device: dict[str, str] = Field(description="Device, torch version, GPU name or CPU threads.")
    pilot: Any = Field(description="engine.train.pilot.PilotResult (plan, per-method summaries, trials).")
    evidence: PilotEvidence | None = Field(description="The pilot as decision evidence (None if incomplete).")
    recommendation: Recommendation | None = Field(description="Updated recommendation (needs --task/--disparity).")


def default_prompt_length(task: str | None) -> tuple[int, str]:
    """The paper's prompt length for a VTAB-1k ``task``, else the documented default."""
    from engine.config.train import DEFAULT_NUM_PROMPTS

    from engine.errors import UnknownTaskError
    from engine.paper import get_vtab_task

    if task:
        try:
            vt = get_vtab_task(task)
        except UnknownTaskError:  # a task type such as 'counting', not a VTAB-1k task
            pass
        else:
            return int(vt.prompt_length), f"paper App. E length for VTAB-1k task {vt.key}"
    return DEFAULT_NUM_PROMPTS, "default (no VTAB-1k task named)"


def pilot_evidence(result: Any) -> PilotEvidence | None:
    """Convert an ``engine.train.pilot.PilotResult`` into ``PilotEvidence`` (methods with finished trials only)."""
    scores = [MethodScore(method=m.method, mean=m.mean_acc, std=m.std_acc, n_seeds=m.n_seeds)
              for m in result.methods if m.n_seeds >= 1]
    if not scores or result.plan.n_train < 1 or result.plan.n_val < 1:
        return None
    return PilotEvidence(n_train=result.plan.n_train, n_val=result.plan.n_val, scores=scores)


def _confirm_long_run(plan: Any, device: Any, yes: bool) -> None:
    from engine.errors import BudgetError

    if yes or device.type != "cpu" or plan.estimated_s <= LONG_CPU_RUN_S:
        return
    minutes = plan.estimated_s / 60
    if sys.stdin is not None and sys.stdin.isatty():
        typer.confirm(f"This pilot runs about {minutes:.0f} min on the CPU. Start?", abort=True)
        return
    raise BudgetError(f"this pilot would run about {minutes:.0f} min on the CPU (no GPU found); "
                      "re-run with --yes to start it, or lower --budget")


class PilotRequest(BaseModel):
    """What the ``pilot`` command (or ``recommend --pilot``) was asked."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="Labeled dataset (ImageFolder, list file or CSV).")
    task: str | None = Field(default=None, description="--task.")
    disparity: Literal["low", "high"] | None = Field(default=None, description="--disparity.")
    budget: str = Field(default="15m", description="Time budget for all trials.")
    methods: str = Field(default="full,vpt-deep", description="Comma-separated methods.")
    model: str = Field(default="vit_base_patch16_224.orig_in21k", description="timm ViT name.")
    weights: Path | None = Field(default=None, description="Local backbone weights.")
    random_init: bool = Field(default=False, description="Allow a random backbone (smoke tests).")
    prompts: int | None = Field(default=None, ge=1, description="Prompt tokens per set.")
    seeds: int = Field(default=3, ge=1, le=5, description="Seeds per method and lr.")
    batch_size: int = Field(default=64, ge=1, description="Images per step.")
    img_size: int | None = Field(default=None, ge=8, description="Input size.")
    device: str = Field(default="auto", description="--device.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(default="auto", description="--precision.")
    yes: bool = Field(default=False, description="Start long CPU runs without asking.")
    out: Path | None = Field(default=None, description="Trial store (default: <data home>/pilot).")


def run_pilot_request(
    req: PilotRequest,
    *,
    show_progress: bool = False,
    on_plan: Callable[[Any, str], None] | None = None,
    prior: AdvisorInputs | None = None,
) -> tuple[PilotReport, Any]:
    """Plan and run the pilot, then update the recommendation with its evidence.

    Args:
        req: the request.
        show_progress: draw a progress bar on stderr.
        on_plan: called with ``(plan, prompts_source)`` before training starts (the CLI prints it).
        prior: decision inputs already gathered (``recommend --pilot`` passes its FID and size); else they
            are built from ``--task``/``--disparity`` and the dataset size.

    Returns:
        The JSON-able report and the ``engine.train.pilot.PilotResult`` (for ``--report``).
    """
    from advisor.render import progress_bar
    from engine.config.train import PilotConfig, parse_budget
    from engine.data.index import index_dataset
    from engine.device import describe_device, resolve_device
    from engine.train.methods import parse_methods
    from engine.paths import data_home
    from engine.train.pilot import check_pilot_data, load_pilot_backbone, plan_pilot, run_pilot

    method_list = parse_methods(req.methods)
    budget_s = parse_budget(req.budget)
    has_task = req.task is not None or req.disparity is not None or prior is not None
    if req.task is not None or req.disparity is not None:
        from advisor.decide import reconcile_disparity

        reconcile_disparity(req.task, req.disparity)  # fail fast on a bad --task, before loading anything
    num_prompts, prompts_source = (
        (req.prompts, "--prompts") if req.prompts is not None else default_prompt_length(req.task))
    dev = resolve_device(req.device)
    prec = ("bf16" if dev.type == "cuda" else "fp32") if req.precision == "auto" else req.precision
    config = PilotConfig(methods=method_list, model=req.model, weights=req.weights, random_init=req.random_init,
                         num_prompts=num_prompts, seeds=req.seeds, budget_s=budget_s, precision=prec,
                         batch_size=req.batch_size, img_size=req.img_size)
    store = req.out if req.out is not None else data_home() / "pilot"
    index = index_dataset(req.dataset)
    check_pilot_data(index)
    backbone = load_pilot_backbone(config)  # one backbone for the warm-up and the trials
    plan = plan_pilot(index, config, device=dev, store_dir=store, backbone=backbone)
    if on_plan is not None:
        on_plan(plan, prompts_source)
    _confirm_long_run(plan, dev, req.yes)
    with progress_bar("Pilot (epochs)", enabled=show_progress) as on_progress:
        result = run_pilot(index, config, store_dir=store, device=dev, plan=plan, backbone=backbone,
                           on_progress=on_progress)
    evidence = pilot_evidence(result)
    recommendation = None
    if evidence is not None and has_task:
        from advisor.decide import build_inputs, recommend
        from engine.fid.calibration import load_calibration

        inputs = prior or build_inputs(
            task=req.task, disparity=req.disparity, n_train=len(index.samples),
            n_train_source="labeled images in the dataset", calibration=load_calibration(),
            fid_unmeasured_reason="the pilot does not measure FID; 'vpt-advisor recommend DATASET' does",
        )
        recommendation = recommend(inputs, evidence)
    report = PilotReport(dataset=str(req.dataset), n_labeled=len(index.samples), task=req.task,
                         num_prompts=num_prompts, num_prompts_source=prompts_source, device=describe_device(dev),
                         pilot=result.model_dump(mode="json"), evidence=evidence, recommendation=recommendation)
    return report, result


def write_pilot_outputs(report: PilotReport, result: Any, path: Path | None) -> Path | None:
    """Write ``--report`` (HTML or Markdown) for a finished pilot; returns the path written."""
    if path is None:
        return None
    from advisor.report import from_pilot, write_pilot_report

    inputs = from_pilot(result, recommendation=report.recommendation, dataset=report.dataset)
    return write_pilot_report(inputs, path)


_PrecisionOpt = Annotated[
    Literal["auto", "fp32", "bf16", "fp16"],
    typer.Option("--precision", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16 (CUDA only)."),
]
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
        "--methods", help="Comma-separated: full, linear, vpt-shallow, vpt-deep, mixed, ft-then-pt.")] = "full,vpt-deep",
    model: Annotated[str, typer.Option("--model", help="timm ViT name.")] = "vit_base_patch16_224.orig_in21k",
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
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    explain: ExplainOpt = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where trials are stored (default: <data home>/pilot); rerunning resumes.",
        show_default=False)] = None,
    report: ReportOpt = None,
) -> None:
    """Run short FT and VPT trainings on your data within a time budget, then update the recommendation."""
    from advisor.render import emit_json, err_console
    from advisor.render.pilot import render_plan, render_report
    from advisor.report.write import check_report_path

    if report is not None:
        check_report_path(report)  # fail before any training
    req = PilotRequest(dataset=dataset, task=task, disparity=disparity, budget=budget, methods=methods, model=model,
                       weights=weights, random_init=random_init, prompts=prompts, seeds=seeds, batch_size=batch_size,
                       img_size=img_size, device=device, precision=precision, yes=yes, out=out)
    on_plan = None if as_json else (lambda plan, source: render_plan(plan, prompts_source=source))
    result, pilot = run_pilot_request(req, show_progress=not as_json and err_console.is_terminal, on_plan=on_plan)
    if as_json:
        emit_json(result)
    else:
        render_report(pilot, result.recommendation, has_task=task is not None or disparity is not None,
                      explain=explain)
    written = write_pilot_outputs(result, pilot, report)
    if written is not None:
        err_console.print(f"Wrote {written}")


def register(app: typer.Typer) -> None:
    """Add the ``pilot`` command to ``app``."""
    app.command("pilot", epilog=EXAMPLES)(pilot_command)
