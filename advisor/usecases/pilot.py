"""The ``pilot`` use case: measured FT vs VPT on the user's own data, as decision evidence.

The pilot (``engine.train.pilot``) fits a stratified 4:1 subsample, a small lr grid and ``seeds`` seeds
into the budget from a measured warm-up, states the plan (``on_plan``), and asks ``confirm`` before a
long CPU run. Finished trials are stored under ``out`` (rerunning resumes; Ctrl-C keeps them). With a
task (or disparity) the pilot's accuracies become ``PilotEvidence`` for ``advisor.decide.recommend``,
which lets them outrank the paper's priors when the difference exceeds the seed noise.

Default prompt length: the paper's per-task length (App. E) when the task is a VTAB-1k task,
otherwise ``engine.config.train.DEFAULT_NUM_PROMPTS`` (10, as VPT's README examples).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from engine.config.train import DEFAULT_BACKBONE
from advisor.schemas import AdvisorInputs, MethodScore, PilotEvidence, Recommendation
from engine.progress import StageProgress, no_progress

if TYPE_CHECKING:
    import torch

    from engine.config.train import PilotConfig
    from engine.train.pilot import PilotPlan, PilotResult

__all__ = [
    "PilotReport", "PilotRequest", "run_pilot_request", "LONG_CPU_RUN_S", "default_prompt_length",
    "pilot_evidence",
]

LONG_CPU_RUN_S = 10 * 60
"""A CPU pilot estimated to take longer than this needs ``--yes`` (or an interactive confirmation)."""

Confirm = Callable[[str], bool]
"""``confirm(question)`` asks the user; ``False`` (or raising) stops the use case."""

PlanCallback = Callable[["PilotPlan", str], None]
"""``on_plan(plan, prompts_source)``: called once the plan is known, before training starts."""


class PilotReport(BaseModel):
    """What ``pilot --json`` prints."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Dataset path as given.")
    n_labeled: int = Field(description="Labeled images found in the dataset.")
    task: str | None = Field(description="--task as given.")
    num_prompts: int = Field(description="Prompt tokens per set used by prompt methods.")
    num_prompts_source: str = Field(description="Where the prompt length came from.")
    device: dict[str, str] = Field(description="Device, torch version, GPU name or CPU threads.")
    pilot: dict[str, JsonValue] = Field(
        description="engine.train.pilot.PilotResult as JSON (plan, per-method summaries, trials).")
    evidence: PilotEvidence | None = Field(description="The pilot as decision evidence (None if incomplete).")
    recommendation: Recommendation | None = Field(description="Updated recommendation (needs --task/--disparity).")


class PilotRequest(BaseModel):
    """What the ``pilot`` command (or ``recommend --pilot``) was asked."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="Labeled dataset (ImageFolder, list file or CSV).")
    task: str | None = Field(default=None, description="--task.")
    disparity: Literal["low", "high"] | None = Field(default=None, description="--disparity.")
    budget: str = Field(default="15m", description="Time budget for all trials.")
    methods: str = Field(default="full,vpt-deep", description="Comma-separated methods.")
    model: str = Field(default=DEFAULT_BACKBONE, description="timm ViT name.")
    weights: Path | None = Field(default=None, description="Local backbone weights.")
    random_init: bool = Field(default=False, description="Allow a random backbone (smoke tests).")
    prompts: int | None = Field(default=None, ge=1, description="Prompt tokens per set.")
    seeds: int = Field(default=3, ge=1, le=5, description="Seeds per method and lr.")
    batch_size: int = Field(default=64, ge=1, description="Images per step.")
    img_size: int | None = Field(default=None, ge=8, description="Input size.")
    device: str = Field(default="auto", description="--device.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(default="auto", description="--precision.")
    yes: bool = Field(default=False, description="Start long CPU runs without asking.")
    quick: bool = Field(default=False, description="Smoke test: 2 epochs, one lr per method (meaningless results).")
    out: Path | None = Field(default=None, description="Trial store (default: <data home>/pilot).")


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


def pilot_evidence(result: PilotResult) -> PilotEvidence | None:
    """Convert an ``engine.train.pilot.PilotResult`` into ``PilotEvidence`` (methods with finished trials only)."""
    scores = [MethodScore(method=m.method, mean=m.mean_acc, std=m.std_acc, n_seeds=m.n_seeds)
              for m in result.methods if m.n_seeds >= 1]
    if not scores or result.plan.n_train < 1 or result.plan.n_val < 1:
        return None
    return PilotEvidence(n_train=result.plan.n_train, n_val=result.plan.n_val, scores=scores)


def _confirm_long_run(plan: PilotPlan, device: torch.device, yes: bool, confirm: Confirm | None) -> None:
    """Ask before a long CPU run; without a way to ask (no terminal), require ``--yes``."""
    from engine.errors import BudgetError

    if yes or device.type != "cpu" or plan.estimated_s <= LONG_CPU_RUN_S:
        return
    minutes = plan.estimated_s / 60
    if confirm is not None and confirm(f"This pilot runs about {minutes:.0f} min on the CPU. Start?"):
        return
    raise BudgetError(f"this pilot would run about {minutes:.0f} min on the CPU (no GPU found); "
                      "re-run with --yes to start it, or lower --budget")


def _recommend(req: PilotRequest, evidence: PilotEvidence, n_labeled: int,
               prior: AdvisorInputs | None) -> Recommendation:
    from advisor.decide import build_inputs, recommend
    from engine.fid.calibration import load_calibration

    inputs = prior or build_inputs(
        task=req.task, disparity=req.disparity, n_train=n_labeled,
        n_train_source="labeled images in the dataset", calibration=load_calibration(),
        fid_unmeasured_reason="the pilot does not measure FID; 'vpt-advisor recommend DATASET' does",
    )
    return recommend(inputs, evidence)


def _pilot_config(req: PilotRequest, methods: tuple[str, ...], budget_s: float, num_prompts: int, *,
                  cuda: bool) -> PilotConfig:
    """The engine's pilot configuration for ``req`` (``auto`` precision: bf16 on CUDA, fp32 elsewhere)."""
    from engine.config.train import BackboneSpec, PilotConfig

    prec = ("bf16" if cuda else "fp32") if req.precision == "auto" else req.precision
    return PilotConfig(methods=methods, backbone=BackboneSpec(model=req.model, weights=req.weights,
                                                              random_init=req.random_init),
                       num_prompts=num_prompts, seeds=req.seeds, budget_s=budget_s, precision=prec,
                       batch_size=req.batch_size, img_size=req.img_size, quick=req.quick)


def run_pilot_request(
    req: PilotRequest,
    *,
    progress: StageProgress = no_progress,
    on_plan: PlanCallback | None = None,
    confirm: Confirm | None = None,
    prior: AdvisorInputs | None = None,
) -> tuple[PilotReport, PilotResult]:
    """Plan and run the pilot, then update the recommendation with its evidence.

    Args:
        req: the request.
        progress: opens the "Pilot (epochs)" progress stage.
        on_plan: called with ``(plan, prompts_source)`` before training starts (the CLI prints it).
        confirm: asks before a long CPU run without ``yes``; ``None`` (no terminal) refuses such a run.
        prior: decision inputs already gathered (``recommend --pilot`` passes its FID and size); else they
            are built from ``task``/``disparity`` and the dataset size.

    Returns:
        The JSON-able report and the ``engine.train.pilot.PilotResult`` (for ``--report``).
    """
    from engine.config.train import parse_budget
    from engine.data.index import index_dataset
    from engine.device import describe_device, resolve_device
    from engine.paths import data_home
    from engine.train.methods import parse_methods
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
    config = _pilot_config(req, method_list, budget_s, num_prompts, cuda=dev.type == "cuda")
    store = req.out if req.out is not None else data_home() / "pilot"
    index = index_dataset(req.dataset)
    check_pilot_data(index)
    backbone = load_pilot_backbone(config)  # one backbone for the warm-up and the trials
    plan = plan_pilot(index, config, device=dev, store_dir=store, backbone=backbone)
    if on_plan is not None:
        on_plan(plan, prompts_source)
    _confirm_long_run(plan, dev, req.yes, confirm)
    with progress("Pilot (epochs)") as on_progress:
        result = run_pilot(index, config, store_dir=store, device=dev, plan=plan, backbone=backbone,
                           on_progress=on_progress)
    evidence = pilot_evidence(result)
    recommendation = (_recommend(req, evidence, len(index.samples), prior)
                      if evidence is not None and has_task else None)
    report = PilotReport(dataset=str(req.dataset), n_labeled=len(index.samples), task=req.task,
                         num_prompts=num_prompts, num_prompts_source=prompts_source, device=describe_device(dev),
                         pilot=result.model_dump(mode="json"), evidence=evidence, recommendation=recommendation)
    return report, result
