"""What ``reproduce-vtab --plan`` shows before anything trains: per task and method, every grid point's optimiser.

:func:`build_plan` reads only the request (no data, no weights): the tasks it selects, and per task and
method the batch size, warm-up, epochs and, for every (lr, wd) point of the search grid, the optimiser, weight
decay, momentum and learning rate the trial trains with (:meth:`benchmarks.vtab.protocol.Protocol.grid_points`,
checked against :meth:`~benchmarks.vtab.protocol.Protocol.trial_train`, which builds the trials themselves).
The notes name the source of each choice that differs between the paper's text and its code.
"""

from __future__ import annotations

from pydantic import Field

from benchmarks.vtab.protocol import FT_WARMUP_EPOCHS, GridPoint, MethodName, Protocol
from benchmarks.vtab.run import SweepRequest
from benchmarks.vtab.tasks import resolve_tasks
from engine.config import FrozenModel

__all__ = ["MethodPlan", "TaskPlan", "ProtocolPlan", "build_plan", "plan_rows", "plan_markdown"]


class MethodPlan(FrozenModel):
    """One method of one task: the settings its trials share and its grid."""

    method: MethodName = Field(description="ft or vpt.")
    engine_method: str = Field(description="The engine's transfer method (full, vpt-deep).")
    batch_size: int = Field(description="Images per optimiser step.")
    warmup_epochs: int = Field(description="Linear warm-up epochs before the cosine decay.")
    epochs: int = Field(description="Training epochs.")
    num_prompts: int = Field(description="Prompt tokens per set (0: no prompts).")
    points: list[GridPoint] = Field(description="Every grid point with the run it becomes.")
    search_runs: int = Field(description="Search trials per size (grid points that train the same run merged).")
    final_seeds: tuple[int, ...] = Field(description="Seeds of the final runs (on train+val, tested on test).")


class TaskPlan(FrozenModel):
    """One task of the plan."""

    task: str = Field(description="Task key.")
    name: str = Field(description="Display name.")
    group: str = Field(description="Natural, Specialized or Structured.")
    methods: list[MethodPlan] = Field(description="Per method, in the request's order.")


class ProtocolPlan(FrozenModel):
    """Everything ``reproduce-vtab --plan`` prints (and ``--format json`` emits)."""

    protocol: str = Field(description="Protocol name.")
    optimizer_rule: str = Field(description="original (the original code's optimiser per point) or nominal.")
    sizes: tuple[int, ...] = Field(description="Training-set sizes.")
    lr_scale_batch: bool = Field(description="Grid lr x batch/256.")
    lr_schedule: str = Field(description="per-epoch or per-step warm-up/cosine.")
    precision: str = Field(description="Training precision.")
    tasks: list[TaskPlan] = Field(description="Per selected task.")
    search_trials: int = Field(description="Search trials of the whole plan.")
    final_trials: int = Field(description="Final trials of the whole plan.")
    notes: list[str] = Field(default_factory=list, description="Where a choice comes from, and the other choice.")


def _notes(p: Protocol, methods: tuple[MethodName, ...]) -> list[str]:
    out = []
    if "ft" in methods:
        if p.optimizer_rule == "original":
            out.append("FT optimiser per grid point as the original src/solver/optimizer.py builds it: AdamW with "
                       "weight decay 0.01 for any positive grid wd (the three positive wds of one lr are one run), "
                       "SGD with momentum 0.9 and no weight decay at wd 0; --protocol-set optimizer_rule=nominal "
                       "trains AdamW with the grid's wd everywhere")
        else:
            out.append("FT: AdamW with the grid's nominal wd at every point (optimizer_rule=nominal); the original "
                       "code trained AdamW at wd 0.01 or SGD at wd 0 (optimizer_rule=original)")
        out.append(f"FT warm-up {p.ft_warmup_epochs} epochs (base-finetune.yaml: {FT_WARMUP_EPOCHS}; the paper's "
                   "text: 10 for all models; --protocol-set ft_warmup_epochs=10)")
        out.append(f"FT batch {p.ft_batch_size} (the README's FT commands: 128; the authors' base-finetune.yaml: 224, "
                   "KMnP/vpt's: 384; --protocol-set ft_batch_size=224)")
    return out


def build_plan(request: SweepRequest) -> ProtocolPlan:
    """The plan of ``request`` (pure: reads no data)."""
    p = request.protocol
    tasks = resolve_tasks(request.tasks)
    task_plans = []
    search = final = 0
    for task in tasks:
        prompts = task.prompt_length if p.max_prompts is None else min(task.prompt_length, p.max_prompts)
        methods = []
        for method in request.methods:
            points = p.grid_points(method)
            first = p.trial_train(method, lr=points[0].lr, weight_decay=points[0].weight_decay, seed=p.search_seed,
                                  num_prompts=prompts)
            runs = sum(pt.same_run_as is None for pt in points)
            methods.append(MethodPlan(
                method=method, engine_method=first.method, batch_size=first.batch_size,
                warmup_epochs=first.warmup_epochs, epochs=first.epochs,
                num_prompts=prompts if method == "vpt" else 0, points=points, search_runs=runs,
                final_seeds=p.final_seeds))
            search += runs * len(request.sizes)
            final += len(p.final_seeds) * len(request.sizes)
        task_plans.append(TaskPlan(task=task.key, name=task.name, group=task.group, methods=methods))
    return ProtocolPlan(protocol=p.name, optimizer_rule=p.optimizer_rule, sizes=request.sizes,
                        lr_scale_batch=p.train.lr_scale_batch, lr_schedule=p.train.lr_schedule,
                        precision=p.train.precision, tasks=task_plans, search_trials=search, final_trials=final,
                        notes=_notes(p, request.methods))


PLAN_COLUMNS: tuple[str, ...] = (
    "task", "method", "lr", "wd", "optimizer", "effective_wd", "momentum", "effective_lr", "batch", "warmup_epochs",
    "epochs", "same_run_as")
"""Columns of :func:`plan_rows` (one row per task, method and grid point)."""


def _g(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def plan_rows(plan: ProtocolPlan) -> list[list[str]]:
    """One row per task, method and grid point, columns :data:`PLAN_COLUMNS` (CSV and Markdown)."""
    rows = []
    for t in plan.tasks:
        for m in t.methods:
            for pt in m.points:
                same = "" if pt.same_run_as is None else f"lr {pt.same_run_as[0]:g}, wd {pt.same_run_as[1]:g}"
                rows.append([t.task, m.method, _g(pt.lr), _g(pt.weight_decay), pt.optimizer,
                             _g(pt.effective_weight_decay), _g(pt.momentum), _g(pt.effective_lr), str(m.batch_size),
                             str(m.warmup_epochs), str(m.epochs), same])
    return rows


def plan_markdown(plan: ProtocolPlan) -> str:
    """The plan as a Markdown table (one row per task, method and grid point) and its notes."""
    lines = [f"VTAB-1k plan, protocol {plan.protocol}: {plan.search_trials} search and {plan.final_trials} final "
             f"trials, sizes {', '.join(map(str, plan.sizes))}", "",
             "| " + " | ".join(PLAN_COLUMNS) + " |", "|" + "---|" * len(PLAN_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in plan_rows(plan)]
    lines += [""] + [f"- {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"
