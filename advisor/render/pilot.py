"""Rich rendering of ``vpt-advisor pilot``: the plan before it starts, the per-method table after."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.text import Text

from advisor.render import console, err_console, print_message, warn
from advisor.render.tables import Col, fit_table, fits_full
from advisor.schemas import Recommendation

__all__ = ["render_plan", "render_report", "methods_tables", "format_bytes", "format_seconds"]


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


def render_plan(plan: Any, *, prompts_source: str) -> None:
    """Print the pilot plan (to stderr, so stdout stays the result)."""
    grids = "; ".join(f"{m} lr {', '.join(f'{lr:g}' for lr in lrs)}" for m, lrs in plan.lr_grid.items())
    print_message(
        f"Pilot plan on {plan.device} ({plan.precision}), {plan.model}: "
        f"{plan.n_train} train / {plan.n_val} val images ({plan.num_classes} classes), {plan.epochs} epochs, "
        f"{len(plan.seeds)} seed(s), {plan.n_trials} trials; {grids}; {plan.num_prompts} prompts "
        f"({prompts_source}). Estimated {format_seconds(plan.estimated_s)} "
        f"of a {format_seconds(plan.budget_s)} budget.",
        target=err_console,
    )


_ACC_COLS = [Col("method"), Col("best lr", "right", short="lr"), Col("val acc %", "right", short="acc %"),
             Col("± sd", "right"), Col("seeds", "right")]
_COST_COLS = [Col("trainable params", "right", short="params"), Col("% trained", "right", short="%"),
              Col("img/s", "right"), Col("peak memory", "right", short="memory"), Col("wall time", "right",
                                                                                        short="time")]
_TITLE = "Pilot: validation accuracy at each method's best lr"


def _rows(result: Any) -> tuple[list[list[str | Text]], list[list[str | Text]]]:
    acc_rows: list[list[str | Text]] = []
    cost_rows: list[list[str | Text]] = []
    for m in result.methods:
        note = f" ({m.diverged_trials} diverged)" if m.diverged_trials else ""
        done = f"{m.n_seeds}" + (f" ({m.finished_trials}/{m.planned_trials} trials)"
                                 if m.finished_trials != m.planned_trials else "")
        mem_kind = "GPU" if m.peak_memory_kind == "cuda-allocated" else "RSS"
        acc_rows.append([Text(m.method + note), f"{m.best_lr:g}" if m.best_lr is not None else "-",
                         f"{m.mean_acc:.1f}" if m.n_seeds else "-", f"{m.std_acc:.1f}" if m.n_seeds else "-", done])
        cost_rows.append([f"{m.trainable_params:,}", f"{m.trainable_pct:.2f}", f"{m.images_per_s:.1f}",
                          f"{format_bytes(m.peak_memory_bytes)} {mem_kind}" if m.peak_memory_bytes else "-",
                          format_seconds(m.wall_s)])
    return acc_rows, cost_rows


def methods_tables(result: Any, *, width: int) -> list[RenderableType]:
    """One table when every column fits ``width``; else accuracy and cost as two tables (nothing clipped)."""
    acc_rows, cost_rows = _rows(result)
    both = [a + c for a, c in zip(acc_rows, cost_rows)]
    if fits_full(_ACC_COLS + _COST_COLS, both, width=width):
        return [fit_table(_ACC_COLS + _COST_COLS, both, title=_TITLE, width=width)]
    names = [row[:1] for row in acc_rows]
    return [fit_table(_ACC_COLS, acc_rows, title=_TITLE, width=width),
            fit_table([Col("method"), *_COST_COLS], [n + c for n, c in zip(names, cost_rows)],
                      title="Cost per method (summed over its trials)", width=width)]


def render_report(result: Any, recommendation: Recommendation | None, *, has_task: bool,
                  explain: bool = False) -> None:
    """Print the per-method table(s), then the updated recommendation (if any): short, or full with ``explain``."""
    for table in methods_tables(result, width=console.width):
        console.print(table)
    plan = result.plan
    print_message(f"{plan.n_train} train / {plan.n_val} val images, {plan.epochs} epochs; trials run "
                  f"{result.trials_run}, resumed {result.trials_resumed}; stored in {result.store_dir}",
                  style="dim")
    print_message("Accuracies are on the validation split used to pick the lr, so they compare methods "
                  "rather than predict test accuracy.", style="dim")
    if result.n_skipped_files:
        warn(f"{result.n_skipped_files} image(s) could not be decoded and were skipped")
    if recommendation is not None:
        from advisor.render.recommend import render_recommendation

        render_recommendation(recommendation, explain=explain)
    elif not has_task:
        console.print("Pass --task (or --disparity) to turn these results into a recommendation.")
