"""Rich rendering for ``reproduce-vtab`` (layout check, Tables 1-2 comparison) and ``calibrate``."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.markup import escape
from rich.text import Text

from advisor.render import console, err_console, print_message, warn
from advisor.render.tables import Col, fit_table, fits_full

__all__ = ["render_layout", "render_table", "render_calibration"]


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
