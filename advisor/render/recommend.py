"""Rich rendering of ``vpt-advisor recommend``: the answer, its reasons, nearest paper tasks, the trend."""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from advisor.render import console
from advisor.evidence import fmt_acc
from advisor.schemas import NearestTask, Recommendation, RecommendReport

__all__ = ["render_recommendation", "render_report"]

_COLOURS = {"FT": "cyan", "VPT": "green", "pilot": "yellow"}
_LABELS = {"FT": "Full finetuning (FT)", "VPT": "Visual prompt tuning (VPT)", "pilot": "Run a pilot of FT and VPT"}


def _headline(rec: Recommendation) -> Panel:
    colour = _COLOURS[rec.recommendation]
    lines = [f"[bold {colour}]{_LABELS[rec.recommendation]}[/]"
             + (f"  [dim](the priors lean {rec.lean})[/]" if rec.lean else ""),
             f"Confidence: [bold]{rec.confidence}[/]   Quadrant: {escape(rec.quadrant)}",
             f"Disparity: {rec.disparity}   Similarity: {rec.similarity}"]
    return Panel("\n".join(lines), title="Recommendation", border_style=colour, expand=False)


def _inputs(report: RecommendReport) -> Table:
    inp = report.recommendation.inputs
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    if report.dataset is not None:
        d = report.dataset
        skipped = f", {d.n_skipped} skipped" if d.n_skipped else ""
        what = f"{d.source} ({d.layout}, {d.n_used} images{skipped}, {d.num_classes} classes)"
        table.add_row("dataset", escape(what))
    table.add_row("task", escape(report.recommendation.task_line or "-"))
    table.add_row("disparity", escape(f"{inp.disparity} (from {inp.disparity_source})"))
    table.add_row("n_train", escape(f"{inp.n_train:,} ({inp.n_train_source})" if inp.n_train else "unknown"))
    fid = (f"{inp.fid:.2f} ({inp.fid_source}, reference '{inp.reference}')" if inp.fid is not None
           else "unmeasured (see the first reason)")
    table.add_row("FID", escape(fid))
    table.add_row("backbone", inp.backbone)
    return table


def _reasons(rec: Recommendation) -> str:
    lines = ["[bold]Why[/]"]
    for i, r in enumerate(rec.reasons, 1):
        lines.append(f" {i}. {escape(r.sentence)} [magenta]\\[{escape(r.source)}][/]")
    return "\n".join(lines)


def _size(t: NearestTask) -> str:
    return "full" if t.n_train is None else f"{t.n_train:,}"


def _nearest(rec: Recommendation) -> Table:
    vote = rec.vote
    count = (f": VPT {vote.vpt}, FT {vote.ft}" + (f", tie {vote.ties}" if vote.ties else "") + f" of {vote.n_voters}"
             if vote is not None else "")
    table = Table(title=f"The paper's experiments that voted{count}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for col, just in (("Task", "left"), ("Table", "left"), ("n", "right"), ("FT %", "right"), ("VPT %", "right"),
                      ("VPT-FT", "right"), ("Winner", "left"), ("Why", "left")):
        # "Why" gets the spare width and wraps by words, so it stays readable on 80 columns
        table.add_column(col, justify=just, no_wrap=col != "Why",  # type: ignore[arg-type]
                         ratio=1 if col == "Why" else None, min_width=14 if col == "Why" else None)
    for t in rec.nearest_tasks:
        why = t.why + (", one-shot" if t.setting == "one-shot" else "") + (f", FID {t.fid:.1f}" if t.fid is not None
                                                                          else "")
        table.add_row(escape(t.name), escape(t.source), _size(t), fmt_acc(t.ft), fmt_acc(t.vpt),
                      f"{t.gap:+.1f}", t.winner, escape(why))
    return table


def _trend(rec: Recommendation) -> str:
    tr = rec.size_trend
    if tr is None:
        return ""
    curve = "  ".join(f"{n:,}: {g:+.1f}" for n, g in tr.curve.items())
    lines = [
        f"[bold]Data-size trend[/] ({escape(tr.source)}; {escape(tr.grouping)})",
        f"  mean VPT-FT gap at n={tr.n_train:,}{' (assumed)' if tr.n_assumed else ''}: {tr.mean_gap:+.1f} points "
        f"(range {tr.min_gap:+.1f} to {tr.max_gap:+.1f}, VPT ahead on {tr.vpt_ahead}/{len(tr.tasks)} tasks)",
        f"  mean gap at the table sizes: {curve}",
        f"  {escape(tr.catch_up_note)}",
    ]
    if tr.extrapolation_note:
        lines.append(f"  [yellow]extrapolation:[/] {escape(tr.extrapolation_note)}")
    return "\n".join(lines)


def render_recommendation(rec: Recommendation) -> None:
    """Print a recommendation (headline, reasons, nearest tasks, trend, provenance)."""
    console.print(_headline(rec))
    console.print(_reasons(rec))
    if rec.nearest_tasks:
        console.print(_nearest(rec))
    if rec.size_trend is not None:
        console.print(_trend(rec))
    if rec.backbone is not None and rec.backbone.backbone != "in21k":
        b = rec.backbone
        groups = ", ".join(f"{g} {w}/{n}" for g, (w, n) in b.groups.items())
        console.print(f"[bold]Backbone {b.backbone}[/] ({escape(b.source)}): VPT wins per group {groups}")
    p = rec.provenance
    console.print(
        f"[dim]Source: {escape(p.paper)} (arXiv {p.arxiv}); paper data sha256 {p.paper_data_sha256[:12]}; "
        f"FID threshold {p.threshold.value:.1f} ({p.threshold.source}); vpt-advisor {p.advisor_version}.[/]",
        soft_wrap=False,
    )


def render_report(report: RecommendReport) -> None:
    """Print the inputs, then the recommendation."""
    console.print(_inputs(report))
    render_recommendation(report.recommendation)
