"""Rich rendering for ``reproduce-vtab`` (layout check, Tables 1-2 comparison) and ``calibrate``."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.markup import escape
from rich.text import Text

from advisor.render import console, err_console, print_message, warn
from advisor.render.tables import Col, fit_table, fits_full

__all__ = ["render_layout", "render_table", "render_plan", "render_calibration"]


def render_layout(layout: Any, *, explain: bool = False) -> None:
    """Summarise the layout check on stderr: notes per task (with ``explain``) and how many tasks could run.

    The problems of unusable tasks were already printed when the sweep started (``on_event``).
    """
    notes = [(check.key, note) for check in layout.tasks for note in check.notes]
    for key, note in notes if explain else []:
        print_message(f"note {key}: {note}", style="dim", target=err_console)
    if notes and not explain:
        err_console.print(f"[dim]{len(notes)} layout note(s) (--explain lists them)[/dim]")
    print_message(f"{len(layout.usable)} of {len(layout.tasks)} tasks usable under {layout.root}", target=err_console)


def _cell(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if std is None else f"{value:.1f}±{std:.1f}"


def _diff(d: float | None, flag: bool) -> str:
    if d is None:
        return "-"
    text = f"{d:+.1f}"
    return f"[bold red]{text}[/bold red]" if flag else text


_TASK_COLS = [Col("task"), Col("group"), Col("FT paper", "right", short="FT p", meaning="FT paper"),
              Col("FT ours", "right", short="FT o", meaning="FT ours (mean±sd over seeds)"),
              Col("ΔFT", "right"), Col("VPT paper", "right", short="VPT p", meaning="VPT paper"),
              Col("VPT ours", "right", short="VPT o", meaning="VPT ours"), Col("ΔVPT", "right"),
              Col("winner (paper/ours)", short="win p/o", meaning="winner paper/ours")]
_GROUP_COLS = [Col("group"), Col("tasks", "right"), Col("FT paper", "right", short="FT p", meaning="FT paper"),
               Col("FT ours", "right", short="FT o", meaning="FT ours (mean±sd over seeds)"),
               Col("VPT paper", "right", short="VPT p", meaning="VPT paper"),
               Col("VPT ours", "right", short="VPT o", meaning="VPT ours"),
               Col("VPT wins paper", "right", short="wins p"),
               Col("VPT wins ours", "right", short="wins o")]


def _task_row(r: Any) -> list[str | Text]:
    agree = r.winner_paper == r.winner_ours or r.winner_ours is None
    winners = f"{r.winner_paper or '-'}/{r.winner_ours or '-'}"
    return [Text(r.name), r.group, _cell(r.paper_ft), _cell(r.ours_ft, r.ours_ft_std), _diff(r.diff_ft, r.flag_ft),
            _cell(r.paper_vpt), _cell(r.ours_vpt, r.ours_vpt_std), _diff(r.diff_vpt, r.flag_vpt),
            winners if agree else f"[yellow]{winners}[/yellow]"]


def _task_tables(rows: list[Any], title: str, width: int, legends: list[str]) -> list[RenderableType]:
    """One table with a group column if it fits whole; else one table per group (no group column)."""
    if fits_full(_TASK_COLS, [_task_row(r) for r in rows], width=width):
        return [fit_table(_TASK_COLS, [_task_row(r) for r in rows], title=title, width=width)]
    cols = [c for c in _TASK_COLS if c.header != "group"]
    out: list[RenderableType] = []
    for group in dict.fromkeys(r.group for r in rows):
        part = [[c for i, c in enumerate(_task_row(r)) if i != 1] for r in rows if r.group == group]
        out.append(fit_table(cols, part, title=f"{title}: {group}", width=width, legends=legends))
    return out


def render_table(table: Any, *, db: str | None = None) -> None:
    """Tables 1-2 style: ours vs paper per task, then group means and VPT win counts."""
    for note in table.notes:
        print_message(note, prefix="[yellow]Note:[/yellow] ", target=err_console)
    width = console.width
    legends: list[str] = []  # abbreviations, explained once under the tables
    for n in sorted({r.n_train for r in table.rows}):
        title = f"VTAB-1k, {n} training images ({table.protocol} protocol)"
        for part in _task_tables([r for r in table.rows if r.n_train == n], title, width, legends):
            console.print(part)
        groups = [[row.group, str(row.n_tasks), _cell(row.paper_ft), _cell(row.ours_ft), _cell(row.paper_vpt),
                   _cell(row.ours_vpt), f"{row.paper_vpt_wins}/{row.n_tasks}", f"{row.ours_vpt_wins}/{row.n_tasks}"]
                  for row in table.groups if row.n_train == n]
        console.print(fit_table(_GROUP_COLS, groups, title=f"Group means, n={n}", width=width, legends=legends))
    for legend in legends:
        console.print(f"[dim]{escape(legend)}[/dim]")
    if table.compared:
        console.print("[bold red]red[/bold red] Δ = beyond seed noise (benchmarks/vtab/expected.toml)")
    if db:
        print_message(f"rerun the same command to resume; trials are stored in {db}", style="dim")


_OPT_NAMES = {"sgd": "SGD", "adamw": "AdamW"}


def _point_cell(pt: Any) -> str:
    """``AdamW 0.01`` (``*``: the same run as an earlier point of the row, trained once)."""
    return f"{_OPT_NAMES[pt.optimizer]} {pt.effective_weight_decay:g}" + ("*" if pt.same_run_as else "")


def _runs(points: list[Any]) -> str:
    """``4 AdamW + 4 SGD``: the distinct runs of a grid per optimiser."""
    counts: dict[str, int] = {}
    for pt in points:
        if pt.same_run_as is None:
            counts[pt.optimizer] = counts.get(pt.optimizer, 0) + 1
    return " + ".join(f"{n} {_OPT_NAMES[k]}" for k, n in counts.items())


def _grid_table(m: Any, title: str, width: int, explain: bool) -> RenderableType:
    """One method's grid: an lr x wd matrix of the optimiser and wd each point trains with (``explain``: a row
    per point with its momentum, effective lr and merged run)."""
    if explain:
        cols = [Col("lr", "right"), Col("wd", "right"), Col("optimizer"), Col("effective wd", "right", short="eff wd"),
                Col("momentum", "right", short="mom"), Col(f"lr x {m.batch_size}/256", "right", short="eff lr"),
                Col("trained as")]
        rows: list[list[str | Text]] = [
            [f"{pt.lr:g}", f"{pt.weight_decay:g}", _OPT_NAMES[pt.optimizer], f"{pt.effective_weight_decay:g}",
             "-" if pt.momentum is None else f"{pt.momentum:g}", f"{pt.effective_lr:.3g}",
             "own run" if pt.same_run_as is None else f"lr {pt.same_run_as[0]:g}, wd {pt.same_run_as[1]:g}"]
            for pt in m.points]
        return fit_table(cols, rows, title=title, width=width)
    wds = list(dict.fromkeys(pt.weight_decay for pt in m.points))
    cols = [Col("lr", "right"), Col(f"lr x {m.batch_size}/256", "right", short="eff lr")] + [
        Col(f"wd {wd:g}") for wd in wds]
    by_lr: dict[float, dict[float, Any]] = {}
    for pt in m.points:
        by_lr.setdefault(pt.lr, {})[pt.weight_decay] = pt
    matrix: list[list[str | Text]] = [
        [f"{lr:g}", f"{next(iter(cells.values())).effective_lr:.3g}", *(_point_cell(cells[wd]) for wd in wds)]
        for lr, cells in by_lr.items()]
    return fit_table(cols, matrix, title=title, width=width)


def render_plan(plan: Any, *, explain: bool = False) -> None:
    """``reproduce-vtab --plan``: each method's grid (once per distinct grid), then per task its batch, warm-up,
    prompts and runs, then where the choices come from. Nothing trains."""
    width = console.width
    sizes = ", ".join(f"{n:,}" for n in plan.sizes)
    print_message(f"VTAB-1k plan, protocol {plan.protocol}: {len(plan.tasks)} task(s) at size(s) {sizes}, "
                  f"{plan.search_trials:,} search and {plan.final_trials:,} final trials; nothing is trained "
                  f"(--plan). Warm-up and cosine stepped {plan.lr_schedule}, {plan.precision}"
                  + (", grid lr x batch/256" if plan.lr_scale_batch else ""))
    grids: dict[tuple[str, str], tuple[Any, list[str]]] = {}
    for t in plan.tasks:
        for m in t.methods:
            key = (m.method, repr([pt.model_dump() for pt in m.points]))
            grids.setdefault(key, (m, []))[1].append(t.name)
    for (method, _), (m, names) in grids.items():
        who = "every task" if len(names) == len(plan.tasks) else ", ".join(names)
        console.print(_grid_table(m, f"{method.upper()} grid ({who}): optimiser and weight decay each point "
                                     "trains with", width, explain))
    if not explain and any(pt.same_run_as for m, _ in grids.values() for pt in m.points):
        console.print("[dim]* the same run as the row's first point with that optimiser and wd: trained once[/dim]")
    momenta = sorted({pt.momentum for m, _ in grids.values() for pt in m.points if pt.momentum is not None})
    if momenta:
        console.print(f"[dim]SGD momentum {', '.join(f'{x:g}' for x in momenta)}"
                      + ("" if explain else "; --explain lists every point with its momentum and learning rate")
                      + "[/dim]")
    methods = [m.method for m in plan.tasks[0].methods] if plan.tasks else []
    cols = [Col("task"), Col("group")]
    for name in methods:
        up = name.upper()
        cols += [Col(f"{up} batch", "right", short=f"{up} b", meaning=f"{up} batch size"),
                 Col(f"{up} warm-up", "right", short=f"{up} wu", meaning=f"{up} warm-up epochs"),
                 Col(f"{up} runs", short=f"{up} r", meaning=f"{up} search runs per size")]
        if name == "vpt":
            cols.insert(len(cols) - 3, Col("prompts", "right", short="p", meaning="VPT prompt tokens"))
    rows: list[list[str | Text]] = []
    for t in plan.tasks:
        row: list[str | Text] = [Text(t.name), t.group]
        for m in t.methods:
            row += ([str(m.num_prompts)] if m.method == "vpt" else []) + [
                str(m.batch_size), str(m.warmup_epochs), _runs(m.points)]
        rows.append(row)
    console.print(fit_table(cols, rows, title="Per task", width=width))
    for line in plan.notes:
        print_message(line, prefix="[dim]source:[/dim] ")


SHORT_PROBLEMS = 3
"""The short view names this many unmeasured tasks' problems; ``--explain`` lists all."""


def render_calibration(report: Any, *, explain: bool = False) -> None:
    """Per-task FIDs (problems listed under the table), the fitted threshold and band, and the file written."""
    cols = [Col("task"), Col("disparity"), Col("FID", "right"), Col("paper winner", short="paper"),
            Col("threshold says", short="says")]
    rows: list[list[str | Text]] = []
    for r in report.tasks:
        said = r.predicted or "-"
        if r.predicted and r.predicted != r.winner:
            said = f"[yellow]{said}[/yellow]"
        rows.append([Text(r.name), r.disparity, f"{r.fid:.1f}" if r.fid is not None else "-", r.winner, said])
    console.print(fit_table(cols, rows, title=f"FID against {report.reference}", width=console.width))
    problems = [r for r in report.tasks if r.fid is None and r.problem]
    for r in problems if explain else problems[:SHORT_PROBLEMS]:
        print_message(f"{r.name} not measured: {r.problem}", style="dim")
    if not explain and len(problems) > SHORT_PROBLEMS:
        console.print(f"[dim]... and {len(problems) - SHORT_PROBLEMS} more tasks not measured (--explain lists "
                      "them)[/dim]")
    fit = report.fit
    console.print(f"threshold [bold]{fit.threshold:.1f}[/bold] (FT above), band {fit.band[0]:.1f}-{fit.band[1]:.1f}, "
                  f"separates {fit.accuracy * 100:.0f}% of {fit.n_tasks} low-disparity tasks; leave-one-task-out "
                  f"accuracy {(fit.loo_accuracy or 0.0) * 100:.0f}% against {fit.majority_accuracy * 100:.0f}% for "
                  "the majority rule")
    for w in report.warnings:
        warn(w)
    print_message(f"calibration written to {report.path}")
