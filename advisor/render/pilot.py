"""Rich rendering of ``vpt-advisor pilot``: the plan before it starts, the per-method table after.

The table is fitted to the terminal (``advisor.render.tables.fit_table``: abbreviated headers or a
vertical fold rather than a clipped number); the store path is printed whole; the updated
recommendation is the short view, or the full argument with ``--explain``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from advisor.pilot_verdict import STATUS_WORDS, ensemble_text, verdict_text
from advisor.render import console, err_console, print_message, warn
from advisor.render.tables import Col, fit_table
from advisor.schemas import Recommendation
from advisor.usecases.pilot import plan_needs

if TYPE_CHECKING:
    from engine.train.pilot import PilotPlan, PilotResult

__all__ = ["render_plan", "render_report", "format_bytes", "format_seconds", "plan_lines", "paired_line",
           "methods_table"]


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


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    return grid


def plan_lines(plan: PilotPlan, *, prompts_source: str) -> Table:
    """The plan as a two-column grid that wraps inside 80 columns: images, training, power, time."""
    grid = _grid()
    grids = "; ".join(f"{m} lr {', '.join(f'{lr:g}' for lr in lrs)}" for m, lrs in plan.lr_grid.items())
    grid.add_row("setup", f"{escape(plan.model)} on {escape(plan.device)} ({plan.precision}), {plan.img_size} px, "
                 f"{plan.num_prompts} prompts ({escape(prompts_source)})")
    grid.add_row("images", f"{plan.n_train:,} train · {plan.n_val:,} lr-selection · {plan.n_compare:,} comparison "
                 f"(held out) of {plan.n_labeled:,} labeled, {plan.num_classes} classes")
    grid.add_row("training", f"{plan.epochs} epochs × {len(plan.seeds)} seed(s), batch {plan.batch_size}; {grids} "
                 f"({plan.n_trials} trials)")
    reach = (f"{plan.compare_needed:,} comparison images reach it" if plan.sufficient_labeled is None
             and plan.sufficient_budget_s is None and not plan.seeds_needed else "see verdict")
    grid.add_row("detects", f"VPT-FT differences ≥ {plan.min_detectable:.1f} points (asked ≤ "
                 f"{plan.target_detectable:g}; {reach}). Paired test on the same images, two-sided α "
                 f"{plan.alpha:g}, power {plan.power:.0%}, assuming the methods disagree on "
                 f"{plan.assumed_discordance:.0%} of images and a seed-to-seed SD of {plan.assumed_seed_sd:g} "
                 "points: MDD = (z₁₋α/₂ + z_power) × √(p_d / n + 2c·σ²_seed / seeds) × 100")
    used = "; ".join(f"{t.method} {t.probe_note}" for t in plan.timings)
    probe = (f", timing probe {format_seconds(plan.probe_s)}" if plan.probe_s else ", timings cached") + \
        (f" ({escape(used)})" if used else "")
    cold = any(t.source == "probe" and not t.timed_runs for t in plan.timings)
    grid.add_row("time", f"about {format_seconds(plan.estimated_s)} of a {format_seconds(plan.budget_s)} "
                 f"budget{probe}" + ("; likely an overestimate: only one cold step fitted in the probe's time, and "
                                     "the first steps are the slowest" if cold else ""))
    if not plan.decisive_by_design:
        grid.add_row("[yellow]verdict[/]", "[yellow]not decisive by design[/]: this plan cannot detect "
                     f"{plan.target_detectable:g} points; {escape(plan_needs(plan))}")
    elif plan.indicative_only:
        grid.add_row("[yellow]verdict[/]", "[yellow]indicative only[/]: with 1 seed the seed-to-seed spread cannot "
                     "be measured, so the result cannot decide; --seeds 2 or more can")
    else:
        grid.add_row("verdict", "decisive if the 95 % interval excludes 0 and the power, recomputed with the "
                     f"disagreement and seed spread met, stays within {100 * _slack():.0f} points of "
                     f"{plan.power:.0%} (else underpowered)")
    return grid


def _slack() -> float:
    from engine.train.verdict import POWER_SLACK

    return POWER_SLACK


def render_plan(plan: PilotPlan, *, prompts_source: str) -> None:
    """Print the pilot plan (to stderr, so stdout stays the result)."""
    err_console.print("[bold]Pilot plan[/]")
    err_console.print(plan_lines(plan, prompts_source=prompts_source))


_METHOD_COLS = [Col("method"), Col("lr", "right"),
                Col("select %", "right", short="sel %", meaning="select % (lr pick)"),
                Col("compare %", "right", short="cmp %", meaning="compare % (held out)"), Col("seeds", "right"),
                Col("trained", "right", short="train", meaning="trained % of parameters"), Col("img/s", "right"),
                Col("time", "right")]
_TITLE = "Pilot results (accuracy % at each method's lr, picked on the selection split)"


def methods_table(result: PilotResult, *, width: int) -> RenderableType:
    """The per-method table plus the FT+VPT ensemble row, fitted to ``width`` (nothing clipped)."""
    rows: list[list[str | Text]] = []
    for m in result.methods:
        note = f" ({m.diverged_trials} diverged)" if m.diverged_trials else ""
        done = f"{m.n_seeds}" + (f" of {m.planned_trials}" if m.finished_trials != m.planned_trials else "")
        rows.append([
            Text(m.method + note),
            f"{m.best_lr:g}" if m.best_lr is not None else "-",
            f"{m.mean_acc:.1f}±{m.std_acc:.1f}" if m.n_seeds else "-",
            f"{m.compare_acc:.1f}±{m.compare_std:.1f}" if m.n_seeds and result.plan.n_compare else "-",
            done,
            f"{m.trainable_pct:.2f}%",
            f"{m.images_per_s:.1f}",
            format_seconds(m.wall_s),
        ])
    e = result.ensemble
    if e is not None and e.available and e.members is not None:
        rows.append([Text(f"{e.members[0]}+{e.members[1]} (ensemble{', offered' if e.offered else ''})"), "-", "-",
                     f"{e.accuracy or 0.0:.1f}±{e.accuracy_std or 0.0:.1f}", f"{e.pairs} pairs", "2 backbones",
                     "-", "-"])
    return fit_table(_METHOD_COLS, rows, title=_TITLE, width=width)


def paired_line(result: PilotResult) -> str:
    """The verdict in one or two sentences: status, interval, post-hoc power, and any fix."""
    v = result.verdict
    if v is None:
        return "No paired comparison: the pilot needs full finetuning and a VPT variant, with comparison images."
    return f"Verdict: {STATUS_WORDS[v.status]}. {verdict_text(v)}"


def render_report(result: PilotResult, recommendation: Recommendation | None, *, has_task: bool,
                  random_init: bool = False, explain: bool = False, smoke_test: str | None = None) -> None:
    """Print the per-method table, then the updated recommendation (short, or in full with ``explain``).

    ``smoke_test`` (a --random-init or --quick run) is said right above the numbers."""
    if smoke_test:
        print_message(smoke_test, style="bold yellow")
    console.print(methods_table(result, width=console.width))
    print_message(paired_line(result))
    if result.ensemble is not None:
        print_message(ensemble_text(result.ensemble), style="" if result.ensemble.offered else "dim")
    if result.saved is not None:
        s = result.saved
        print_message(f"Saved the {s.method} trial (lr {s.lr:g}, seed {s.seed}, {s.tensors} tensors) to {s.path}"
                      if s.path else f"Nothing saved (--save): {s.reason}", style="" if s.path else "yellow")
    plan = result.plan
    memory = "; ".join(f"{m.method} {format_bytes(m.peak_memory_bytes)}" for m in result.methods
                       if m.peak_memory_bytes)
    kind = "GPU allocated" if any(m.peak_memory_kind == "cuda-allocated" for m in result.methods) else "RSS"
    stored = (f"Trials are stored in {result.store_dir}" if not result.trials_unsaved else
              f"{result.trials_unsaved} trial(s) could not be saved in {result.store_dir}; a rerun trains them again")
    print_message(
        f"{plan.n_train:,} train / {plan.n_val:,} selection / {plan.n_compare:,} comparison images, "
        f"{plan.epochs} epochs; trials run {result.trials_run}, resumed {result.trials_resumed}; peak memory "
        f"({kind}) {memory or '-'}. The lr is picked on the selection split; the methods are compared only on the "
        f"held-out comparison images. {stored}", style="dim")
    if result.n_skipped_files:
        warn(f"{result.n_skipped_files} image(s) could not be decoded and were skipped")
    if recommendation is not None:
        from advisor.render.recommend import render_recommendation

        render_recommendation(recommendation, explain=explain)
    elif not has_task:
        console.print("Pass --task (or --disparity) to turn these results into a recommendation.")
    elif random_init:
        console.print("--random-init: the backbone was randomly initialised, so these accuracies say nothing about "
                      "finetuning a pretrained model and are not turned into a recommendation.")
