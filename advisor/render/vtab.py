"""Rich rendering for ``reproduce-vtab`` (layout check, Tables 1-2 comparison) and ``calibrate``."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from advisor.render import console, err_console

__all__ = ["render_layout", "render_table", "render_calibration"]


def render_layout(layout: Any) -> None:
    """Summarise the layout check on stderr: notes per task and how many tasks could run.

    The problems of unusable tasks were already printed when the sweep started (``on_event``).
    """
    for check in layout.tasks:
        for note in check.notes:
            err_console.print(f"[dim]note {escape(check.key)}: {escape(note)}[/dim]")
    err_console.print(f"{len(layout.usable)} of {len(layout.tasks)} tasks usable under {escape(layout.root)}")


def _cell(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if std is None else f"{value:.1f}±{std:.1f}"


def _diff(d: float | None, flag: bool) -> str:
    if d is None:
        return "-"
    text = f"{d:+.1f}"
    return f"[bold red]{text}[/bold red]" if flag else text


def render_table(table: Any, *, db: str | None = None) -> None:
    """Tables 1-2 style: ours vs paper per task, then group means and VPT win counts."""
    for note in table.notes:
        err_console.print(f"[yellow]Note:[/yellow] {escape(note)}")
    for n in sorted({r.n_train for r in table.rows}):
        t = Table(title=f"VTAB-1k, {n} training images ({table.protocol} protocol)", header_style="bold")
        for col in ("task", "group", "FT paper", "FT ours", "Δ", "VPT paper", "VPT ours", "Δ", "winner (paper/ours)"):
            t.add_column(col, justify="left" if col in ("task", "group") else "right")
        for r in (r for r in table.rows if r.n_train == n):
            agree = r.winner_paper == r.winner_ours or r.winner_ours is None
            winners = f"{r.winner_paper or '-'}/{r.winner_ours or '-'}"
            t.add_row(escape(r.name), r.group, _cell(r.paper_ft), _cell(r.ours_ft, r.ours_ft_std),
                      _diff(r.diff_ft, r.flag_ft), _cell(r.paper_vpt), _cell(r.ours_vpt, r.ours_vpt_std),
                      _diff(r.diff_vpt, r.flag_vpt), winners if agree else f"[yellow]{winners}[/yellow]")
        console.print(t)
        g = Table(header_style="bold")
        for col in ("group", "tasks", "FT paper", "FT ours", "VPT paper", "VPT ours", "VPT wins paper", "VPT wins ours"):
            g.add_column(col, justify="left" if col == "group" else "right")
        for row in (x for x in table.groups if x.n_train == n):
            g.add_row(row.group, str(row.n_tasks), _cell(row.paper_ft), _cell(row.ours_ft), _cell(row.paper_vpt),
                      _cell(row.ours_vpt), f"{row.paper_vpt_wins}/{row.n_tasks}", f"{row.ours_vpt_wins}/{row.n_tasks}")
        console.print(g)
    if table.compared:
        console.print("[bold red]red[/bold red] Δ = beyond seed noise (benchmarks/vtab/expected.toml)")
    if db:
        console.print(f"[dim]trials stored in {escape(db)} (rerun to resume)[/dim]")


def render_calibration(report: Any) -> None:
    """Per-task FIDs, the fitted threshold and band, and where the calibration was written."""
    t = Table(title=f"FID against {escape(report.reference)}", header_style="bold")
    for col in ("task", "disparity", "FID", "paper winner", "threshold says"):
        t.add_column(col, justify="right" if col == "FID" else "left")
    for r in report.tasks:
        fid = f"{r.fid:.1f}" if r.fid is not None else f"[dim]{escape(r.problem or '-')}[/dim]"
        said = r.predicted or "-"
        if r.predicted and r.predicted != r.winner:
            said = f"[yellow]{said}[/yellow]"
        t.add_row(escape(r.name), r.disparity, fid, r.winner, said)
    console.print(t)
    fit = report.fit
    console.print(f"threshold [bold]{fit.threshold:.1f}[/bold] (FT above), band {fit.band[0]:.1f}-{fit.band[1]:.1f}, "
                  f"separates {fit.accuracy * 100:.0f}% of {fit.n_tasks} low-disparity tasks; leave-one-task-out "
                  f"accuracy {(fit.loo_accuracy or 0.0) * 100:.0f}% against {fit.majority_accuracy * 100:.0f}% for "
                  "the majority rule")
    for w in report.warnings:
        err_console.print(f"[yellow]Warning:[/yellow] {escape(w)}")
    console.print(f"calibration written to {escape(report.path)}")
