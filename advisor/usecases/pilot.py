"""The ``pilot`` use case: measured FT vs VPT on the user's own data, as decision evidence.

The pilot (``engine.train.pilot``) holds out comparison images, sizes training, epochs and the lr grid to
the budget from a short timing probe, and states the plan (``on_plan``) with the smallest difference it
can detect. A plan that cannot detect ``min_detectable`` points is refused before any training unless
``yes`` (it then runs as "not decisive by design" and never changes the answer); a long CPU run asks
``confirm``. Finished trials are stored under ``out`` (rerunning resumes; Ctrl-C keeps them). With a
task (or disparity) the pilot's paired comparison becomes ``PilotEvidence`` for
``advisor.decide.recommend``, which lets it outrank the paper's priors when its 95 % interval excludes 0.

Default prompt length: the paper's per-task length (App. E) when the task is a VTAB-1k task,
otherwise ``engine.config.train.DEFAULT_NUM_PROMPTS`` (10, as VPT's README examples).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from advisor.decide import build_inputs, recommend
from advisor.pilot_verdict import ensemble_text, verdict_text
from advisor.schemas import (
    AdvisorInputs,
    MethodScore,
    PairedDifference,
    PilotEnsemble,
    PilotEvidence,
    Recommendation,
)
from engine.config.train import (
    DEFAULT_BUDGET,
    DEFAULT_MIN_DETECTABLE,
    DEFAULT_NUM_PROMPTS,
    PILOT_TRAIN,
    BackboneSpec,
    PilotConfig,
    TrainConfig,
    parse_budget,
)
from engine.errors import BudgetError, NotDecisiveError, UnknownTaskError
from engine.fid.calibration import load_calibration
from engine.paper import get_vtab_task
from engine.paths import cache_dir, data_home
from engine.progress import StageProgress, no_progress
from engine.train.methods import default_pilot_methods, parse_methods
from engine.vocab import Disparity, PrecisionChoice

if TYPE_CHECKING:
    import torch

    from engine.data.tensors import DecodeMemo
    from engine.device import Precision
    from engine.train.pilot import PilotPlan, PilotResult

__all__ = [
    "PilotReport", "PilotRequest", "run_pilot_request", "LONG_CPU_RUN_S", "default_prompt_length",
    "pilot_evidence", "power_refusal", "PilotRefusal", "budget_flag", "plan_needs",
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
    skipped_by_reason: dict[str, int] = Field(
        default_factory=dict, description="Dataset entries not used, per reason (bad files, duplicate rows...).")
    task: str | None = Field(description="--task as given.")
    num_prompts: int = Field(description="Prompt tokens per set used by prompt methods.")
    num_prompts_source: str = Field(description="Where the prompt length came from.")
    device: dict[str, str] = Field(description="Device, torch version, GPU name or CPU threads.")
    pilot: dict[str, JsonValue] = Field(
        description="engine.train.pilot.PilotResult as JSON (plan, per-method summaries, trials).")
    evidence: PilotEvidence | None = Field(description="The pilot as decision evidence (None if incomplete).")
    recommendation: Recommendation | None = Field(description="Updated recommendation (needs --task/--disparity).")
    random_init: bool = Field(default=False, description=(
        "True with --random-init: the accuracies are meaningless and never feed a recommendation."))
    quick: bool = Field(default=False, description="True with --quick: a smoke test of the pipeline (2 epochs).")
    smoke_test: str | None = Field(default=None, description=(
        "Set for a --random-init or --quick run: says, wherever the numbers are shown, that they are meaningless."))
    init_seed: int | None = Field(default=None, description="Seed of the random-init backbone (None: pretrained).")


class PilotRefusal(BaseModel):
    """What ``pilot --json`` prints when the plan is refused before training (then the error, exit 1)."""

    model_config = ConfigDict(extra="forbid")

    started: bool = Field(default=False, description="Always false: nothing was trained.")
    reason: str = Field(description="Why the plan cannot decide and what would suffice.")
    plan: dict[str, object] = Field(description="engine.train.pilot.PilotPlan as JSON.")


class PilotRequest(BaseModel):
    """What the ``pilot`` command (or ``recommend --pilot``) was asked."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="Labeled dataset (ImageFolder, list file or CSV).")
    root: Path | None = Field(default=None, description="--root: the folder a list file's or CSV's paths are under.")
    task: str | None = Field(default=None, description="--task.")
    disparity: Disparity | None = Field(default=None, description="--disparity.")
    budget: str = Field(default=DEFAULT_BUDGET, description="Time budget for all trials.")
    methods: str = Field(default_factory=lambda: ",".join(default_pilot_methods()),
                         description="Comma-separated methods (default: the registry's pilot defaults).")
    backbone: BackboneSpec = Field(default_factory=BackboneSpec, description="--model, --weights, --random-init.")
    prompts: int | None = Field(default=None, ge=1, description="Prompt tokens per set.")
    seeds: int = Field(default=3, ge=1, le=5, description="Seeds per method and lr.")
    batch_size: int = Field(default=64, ge=1, description="Images per step.")
    img_size: int | None = Field(default=None, ge=8, description="Input size.")
    device: str = Field(default="auto", description="--device.")
    precision: PrecisionChoice = Field(
        default="auto", description="--precision (auto: bf16 on CUDA and on CPUs with native bf16, else fp32).")
    min_detectable: float = Field(default=DEFAULT_MIN_DETECTABLE, gt=0, le=100,
                                  description="Difference (points) the pilot must be able to detect to decide.")
    yes: bool = Field(default=False,
                      description="Start long CPU runs and not-decisive-by-design pilots without asking.")
    quick: bool = Field(default=False, description="Smoke test: 2 epochs, one lr per method (meaningless results).")
    out: Path | None = Field(default=None, description="Trial store (default: <data home>/pilot).")
    save: Path | None = Field(default=None, description="Folder for the winner's trainable weights (safetensors).")


def default_prompt_length(task: str | None) -> tuple[int, str]:
    """The paper's prompt length for a VTAB-1k ``task``, else the documented default."""
    if task:
        try:
            vt = get_vtab_task(task)
        except UnknownTaskError:  # a task type such as 'counting', not a VTAB-1k task
            pass
        else:
            return int(vt.prompt_length), f"paper App. E length for VTAB-1k task {vt.key}"
    return DEFAULT_NUM_PROMPTS, "default (no VTAB-1k task named)"


def smoke_test_label(*, random_init: bool, quick: bool) -> str | None:
    """'SMOKE TEST (...): these accuracies are meaningless' for a --random-init or --quick run, else None."""
    from engine.config.train import QUICK_EPOCHS

    why = ([] if not random_init else ["random-init backbone, not pretrained"]) + (
        [] if not quick else [f"--quick, {QUICK_EPOCHS} epochs and one lr per method"])
    if not why:
        return None
    return f"SMOKE TEST ({'; '.join(why)}): these accuracies are meaningless"


def pilot_evidence(result: PilotResult, *, random_init: bool = False) -> PilotEvidence | None:
    """Convert an ``engine.train.pilot.PilotResult`` into ``PilotEvidence`` (methods with finished trials only).

    Scores are comparison-set accuracies where the plan held out comparison images, else selection ones.
    ``random_init`` marks a pilot on a randomly initialised backbone: the decision ignores such evidence.
    """
    plan = result.plan
    scores = [MethodScore(method=m.method, mean=m.compare_acc if plan.n_compare else m.mean_acc,
                          std=m.compare_std if plan.n_compare else m.std_acc, n_seeds=m.n_seeds)
              for m in result.methods if m.n_seeds >= 1]
    if not scores or plan.n_train < 1 or plan.n_val < 1:
        return None
    p, v = result.paired, result.verdict
    c = v.compared if v is not None else None
    paired = None
    if c is not None:  # the verdict's seed-aware interval: the one that decides
        paired = PairedDifference(vpt_method=c.other, ft_method=c.baseline, difference=c.difference, ci95=c.ci95,
                                  ci99=c.ci99, n_compare=c.n_images, discordance=c.discordance)
    elif p is not None:
        paired = PairedDifference(vpt_method=p.vpt_method, ft_method=p.ft_method, difference=p.difference,
                                  ci95=p.ci95, ci99=p.ci99, n_compare=p.n_compare, discordance=p.discordance)
    return PilotEvidence(n_train=plan.n_train, n_val=plan.n_val, scores=scores, paired=paired,
                         decisive_by_design=plan.decisive_by_design, min_detectable=plan.min_detectable,
                         target_detectable=plan.target_detectable, random_init=random_init,
                         status=v.status if v is not None else None, verdict=verdict_text(v) if v is not None else "",
                         posthoc_power=v.posthoc_power if v is not None else None,
                         ensemble=_ensemble(result))


def _ensemble(result: PilotResult) -> PilotEnsemble | None:
    e = result.ensemble
    if e is None or not e.available or e.versus_best is None or e.members is None:
        return None
    d = e.versus_best
    return PilotEnsemble(members=e.members, accuracy=e.accuracy or 0.0, best_single=e.best_single or "",
                         difference=d.difference, ci95=d.ci95, offered=e.offered, sentence=ensemble_text(e))


def budget_flag(seconds: float) -> str:
    """``--budget`` value covering ``seconds``, rounded up to whole minutes (``48m``, ``1h05m``)."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def plan_needs(plan: PilotPlan) -> str:
    """What would let ``plan`` reach its target: more seeds, a budget and/or labeled images."""
    from engine.train.power import UNREACHABLE_IMAGES

    if plan.compare_needed >= UNREACHABLE_IMAGES:
        more = f"--seeds {plan.seeds_needed}" if plan.seeds_needed else "a larger --min-detectable"
        return (f"no number of comparison images reaches {plan.target_detectable:g} points with {len(plan.seeds)} "
                f"seed(s) (the seed-to-seed spread alone is too large): {more} would")
    need = []
    if plan.sufficient_budget_s is not None:
        need.append(f"--budget {budget_flag(plan.sufficient_budget_s)}")
    if plan.sufficient_labeled is not None:
        need.append(f"about {plan.sufficient_labeled:,} labeled images (you have {plan.n_labeled:,})")
    return f"{plan.compare_needed:,} comparison images would be needed, i.e. {' and '.join(need) or 'more data'}"


def power_refusal(plan: PilotPlan) -> str:
    """Why ``plan`` cannot decide, and what would: the budget and the labeled images that would suffice."""
    return (f"this pilot cannot decide: with {plan.n_compare} held-out comparison images and {len(plan.seeds)} "
            f"seed(s) it detects only differences of {plan.min_detectable:.1f} points or more, not the "
            f"{plan.target_detectable:g} asked (--min-detectable; paired test, assuming the methods disagree on "
            f"{100 * plan.assumed_discordance:.0f} % of images and a seed-to-seed SD of {plan.assumed_seed_sd:g} "
            f"points); {plan_needs(plan)}. Re-run with more budget or data, or with "
            "--yes to run it anyway as 'not decisive by design' (it will not change the answer)")


def _confirm_long_run(plan: PilotPlan, device: torch.device, yes: bool, confirm: Confirm | None) -> None:
    """Ask before a long CPU run; without a way to ask (no terminal), require ``--yes``."""
    if yes or device.type != "cpu" or plan.estimated_s <= LONG_CPU_RUN_S:
        return
    minutes = plan.estimated_s / 60
    if confirm is not None and confirm(f"This pilot runs about {minutes:.0f} min on the CPU. Start?"):
        return
    raise BudgetError(f"this pilot would run about {minutes:.0f} min on the CPU (no GPU found); "
                      "re-run with --yes to start it, or lower --budget")


def _recommend(req: PilotRequest, evidence: PilotEvidence, n_labeled: int,
               prior: AdvisorInputs | None) -> Recommendation:
    inputs = prior or build_inputs(
        task=req.task, disparity=req.disparity, n_train=n_labeled,
        n_train_source="labeled images in the dataset", calibration=load_calibration(),
        fid_unmeasured_reason="the pilot does not measure FID; 'vpt-advisor recommend DATASET' does",
    )
    return recommend(inputs, evidence)


def _pilot_config(req: PilotRequest, num_prompts: int, precision: Precision) -> PilotConfig:
    """The engine's pilot configuration for ``req``."""
    train = TrainConfig.model_validate({**PILOT_TRAIN.model_dump(), "num_prompts": num_prompts,
                                        "precision": precision, "batch_size": req.batch_size})
    return PilotConfig(methods=parse_methods(req.methods), backbone=req.backbone, train=train,
                       seeds=req.seeds, budget_s=parse_budget(req.budget), img_size=req.img_size,
                       min_detectable=req.min_detectable, quick=req.quick)


def _device(spec: str) -> torch.device:
    """The device; on a CPU also the thread count, before the probe, so probe and trials run alike."""
    from engine.device import fit_cpu_threads, resolve_device

    dev = resolve_device(spec)
    if dev.type == "cpu":
        fit_cpu_threads()  # one thread when the load already fills every core (engine.device.threads_for_load)
    return dev


def _check_before_loading(req: PilotRequest) -> None:
    """A bad --task, and backbone weights out of reach, fail in about a second: before torch is imported
    (``engine.device``), a dataset read or a model built."""
    from engine.train.availability import check_backbone_available

    if req.task is not None or req.disparity is not None:
        from advisor.decide import reconcile_disparity

        reconcile_disparity(req.task, req.disparity)
    check_backbone_available(req.backbone.model, weights=req.backbone.weights, random_init=req.backbone.random_init)


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
        prior: decision inputs already gathered (``recommend --pilot``'s FID and size), else built from the task.

    Returns: the JSON-able report and the ``engine.train.pilot.PilotResult`` (for ``--report``).
    """
    _check_before_loading(req)
    has_task = req.task is not None or req.disparity is not None or prior is not None
    from engine.data.index import index_dataset  # deferred: Pillow and the shard code, not needed by --help
    from engine.device import describe_device, resolve_precision
    from engine.train.pilot import check_pilot_data, load_pilot_backbone, plan_pilot, run_pilot
    from engine.train.pilot_checks import check_some_converged

    num_prompts, prompts_source = (
        (req.prompts, "--prompts") if req.prompts is not None else default_prompt_length(req.task))
    dev = _device(req.device)
    config = _pilot_config(req, num_prompts, resolve_precision(dev, req.precision))
    store = req.out if req.out is not None else data_home() / "pilot"
    index = index_dataset(req.dataset, req.root)
    check_pilot_data(index, config)  # before any weights load: splits, backbone, image size
    backbone = load_pilot_backbone(config)  # one backbone for the warm-up and the trials
    memo: DecodeMemo = {}  # the images the plan's decode probe reads, handed on to the run
    plan = plan_pilot(index, config, device=dev, store_dir=store, backbone=backbone,
                      timing_cache=cache_dir() / "pilot_timing.json", memo=memo)
    if on_plan is not None:
        on_plan(plan, prompts_source)
    if not plan.decisive_by_design and not req.yes:  # refused up front: only the timing probe has run
        raise NotDecisiveError(power_refusal(plan), plan=plan.model_dump(mode="json"))
    _confirm_long_run(plan, dev, req.yes, confirm)
    with progress("Pilot (epochs)") as on_progress:
        result = run_pilot(index, config, store_dir=store, device=dev, plan=plan, backbone=backbone, save_dir=req.save,
                           on_progress=on_progress, timing_cache=cache_dir() / "pilot_timing.json",
                           memo=memo)
    check_some_converged(result.trials)  # every trial diverged: an error, never "0.0 vs 0.0" advice
    evidence = pilot_evidence(result, random_init=req.backbone.random_init)
    recommendation = (_recommend(req, evidence, len(index.samples), prior)  # a random backbone never advises
                      if evidence is not None and has_task and not req.backbone.random_init else None)
    bb = req.backbone
    report = PilotReport(dataset=str(req.dataset), n_labeled=len(index.samples), task=req.task,
                         skipped_by_reason=dict(sorted(Counter(s.reason for s in index.skipped).items())),
                         random_init=bb.random_init, init_seed=bb.init_seed if bb.random_init else None,
                         quick=req.quick, smoke_test=smoke_test_label(random_init=bb.random_init, quick=req.quick),
                         num_prompts=num_prompts, num_prompts_source=prompts_source, device=describe_device(dev),
                         pilot=result.model_dump(mode="json"), evidence=evidence, recommendation=recommendation)
    return report, result
