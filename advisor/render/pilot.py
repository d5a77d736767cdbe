"""Rich rendering of ``vpt-advisor pilot``: the plan before it starts, the per-method table after."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from advisor.render import console, err_console
from advisor.schemas import Recommendation

if TYPE_CHECKING:
    from engine.train.pilot import PilotPlan, PilotResult

__all__ = ["render_plan", "render_report", "format_bytes", "format_seconds"]


def format_bytes(n: int) -> str:
    """``1.23 GB`` style (decimal units)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def format_seconds(s: float) -> str:
    """``1h 02m``, ``3m 20s`` or ``12.3s``."""
    if s >= 3600:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    if s >= 60:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    return f"{s:.1f}s"


def render_plan(plan: PilotPlan, *, prompts_source: str) -> None:
    """Print the pilot plan (to stderr, so stdout stays the result)."""
    grids = "; ".join(f"{m} lr {', '.join(f'{lr:g}' for lr in lrs)}" for m, lrs in plan.lr_grid.items())
    err_console.print(
        f"[bold]Pilot plan[/] on {escape(plan.device)} ({plan.precision}), {escape(plan.model)}: "
        f"{plan.n_train} train / {plan.n_val} val images ({plan.num_classes} classes), {plan.epochs} epochs, "
        f"{len(plan.seeds)} seed(s), {plan.n_trials} trials; {grids}; {plan.num_prompts} prompts "
        f"({escape(prompts_source)}). Estimated {format_seconds(plan.estimated_s)} "
        f"of a {format_seconds(plan.budget_s)} budget.",
        soft_wrap=True,
    )


def _methods_table(result: PilotResult) -> Table:
    table = Table(title="Pilot results (validation accuracy at each method's best lr)", title_justify="left")
    for col, just in (("method", "left"), ("best lr", "right"), ("val acc %", "right"), ("seeds", "right"),
                      ("trainable params", "right"), ("img/s", "right"), ("peak memory", "right"),
                      ("wall time", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for m in result.methods:
        acc = f"{m.mean_acc:.1f} ± {m.std_acc:.1f}" if m.n_seeds else "-"
        note = f" ({m.diverged_trials} diverged)" if m.diverged_trials else ""
        done = f"{m.n_seeds}" + (f" [{m.finished_trials}/{m.planned_trials} trials]"
                                 if m.finished_trials != m.planned_trials else "")
        mem_kind = "GPU" if m.peak_memory_kind == "cuda-allocated" else "RSS"
        table.add_row(
            m.method + note,
            f"{m.best_lr:g}" if m.best_lr is not None else "-",
            acc,
            done,
            f"{m.trainable_params:,} ({m.trainable_pct:.2f}%)",
            f"{m.images_per_s:.1f}",
            f"{format_bytes(m.peak_memory_bytes)} {mem_kind}" if m.peak_memory_bytes else "-",
            format_seconds(m.wall_s),
        )
    return table


def render_report(result: PilotResult, recommendation: Recommendation | None, *, has_task: bool) -> None:
    """Print the per-method table, then the updated recommendation (if any)."""
    console.print(_methods_table(result))
    plan = result.plan
    console.print(
        f"[dim]{plan.n_train} train / {plan.n_val} val images, {plan.epochs} epochs; trials run "
        f"{result.trials_run}, resumed {result.trials_resumed}; stored in {escape(result.store_dir)}. "
        "Accuracies are on the validation split used to pick the lr, so they compare methods rather than "
        "predict test accuracy.[/]",
        soft_wrap=True,
    )
    if result.n_skipped_files:
        err_console.print(f"[yellow]Warning:[/yellow] {result.n_skipped_files} image(s) could not be decoded and were skipped")
    if recommendation is not None:
        from advisor.render.recommend import render_recommendation

        render_recommendation(recommendation)
    elif not has_task:
        console.print("Pass --task (or --disparity) to turn these results into a recommendation.")
