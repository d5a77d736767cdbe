"""Charts for measured runs: the pilot (accuracy per method with seed spread, learning curves) and the
VTAB-1k reproduction (ours minus the paper per task, and data-size curves like Han et al.'s Figure 4).

The paper numbers are Tables 1-2 (800/200 split, mean of 5 runs) and Tables 5-6 (400 / 800 / 5000 /
10000 training images). matplotlib is imported lazily; see :mod:`advisor.report.figures`.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.report.figures import (
    FT_COLOUR,
    VPT_COLOUR,
    check_plot_path,
    log_size_ticks,
    method_colour,
    method_label,
    new_figure,
    save_figure,
)
from advisor.report.inputs import DataSizePoint, LearningCurve, MethodSeeds, VtabTaskResult

# matplotlib is imported inside the functions that use it: importing this module does not load it.

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "pilot_accuracy_figure",
    "learning_curves_figure",
    "vtab_difference_figure",
    "vtab_data_size_figure",
    "write_pilot_plot",
]


def pilot_accuracy_figure(
    methods: list[MethodSeeds], *, title: str = "Pilot: accuracy per method (held-out comparison images)"
) -> Figure:
    """Mean accuracy per method (wide tick), seed std (error bar) and every seed (dots)."""
    from matplotlib.lines import Line2D

    fig = new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=12, weight="bold")
    if not methods:
        ax.text(0.5, 0.5, "no finished pilot trials", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    for i, item in enumerate(methods):
        colour = method_colour(item.method, i)
        n = len(item.accuracies)
        jitter = [0.0] if n == 1 else [-0.15 + 0.3 * k / (n - 1) for k in range(n)]
        ax.scatter(
            [i + j for j in jitter], item.accuracies, s=36, color=colour, alpha=0.65, edgecolors="white", zorder=3
        )
        ax.errorbar([i], [item.mean], yerr=[item.std], fmt="none", ecolor="black", elinewidth=1.8, capsize=10, zorder=4)
        ax.hlines(item.mean, i - 0.28, i + 0.28, colors=colour, lw=4, zorder=5)
        label = f"{item.mean:.1f} ± {item.std:.1f}"
        ax.annotate(
            label,
            (i, max(item.accuracies + [item.mean + item.std])),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontsize=10,
            weight="bold",
        )
    values = (
        [a for m in methods for a in m.accuracies]
        + [m.mean + m.std for m in methods]
        + [m.mean - m.std for m in methods]
    )
    span = max(values) - min(values)
    ax.set_ylim(max(0.0, min(values) - 0.15 * span - 2), min(100.0, max(values) + 0.2 * span + 3) + 2)
    labels = [
        method_label(m.method)
        + (f"\n({m.trainable_percent:.3g}% trainable)" if m.trainable_percent is not None else "")
        for m in methods
    ]
    ax.set_xticks(range(len(methods)), labels)
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_xlabel("method")
    ax.set_ylabel("best validation accuracy (%)")
    ax.set_title(title, fontsize=12, weight="bold")
    ax.grid(True, axis="y", alpha=0.3)
    handles = [
        Line2D([], [], color="#444444", lw=4, label="mean over seeds"),
        Line2D([], [], color="black", marker="_", ms=14, lw=1.8, label="± 1 std over seeds"),
        Line2D([], [], color="#777777", marker="o", ls="", alpha=0.65, label="one seed"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    return fig


def learning_curves_figure(curves: list[LearningCurve], *, title: str = "Pilot: learning curves") -> Figure:
    """Validation accuracy against epoch: one thin line per seed, the seed mean thick, per method."""
    fig = new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    by_method: dict[str, list[LearningCurve]] = defaultdict(list)
    for curve in curves:
        by_method[curve.method].append(curve)
    for i, (method, runs) in enumerate(by_method.items()):
        colour = method_colour(method, i)
        for run in runs:
            ax.plot(run.epochs, run.val_acc, color=colour, lw=1, alpha=0.45)
        if all(run.epochs == runs[0].epochs for run in runs):
            mean = [statistics.fmean(vals) for vals in zip(*(run.val_acc for run in runs), strict=True)]
            ax.plot(
                runs[0].epochs,
                mean,
                color=colour,
                lw=2.8,
                marker="o" if len(mean) <= 30 else None,
                ms=4,
                label=f"{method_label(method)} (mean of {len(runs)} seed{'s' if len(runs) > 1 else ''})",
            )
        else:
            ax.plot([], [], color=colour, lw=2.8, label=f"{method_label(method)} ({len(runs)} runs)")
    if not curves:
        ax.text(0.5, 0.5, "no learning curves recorded", ha="center", va="center", transform=ax.transAxes)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=12, weight="bold")
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize=9)
    return fig


def vtab_difference_figure(results: list[VtabTaskResult], *, title: str = "Ours minus the paper per task") -> Figure:
    """Horizontal bars: our accuracy minus the paper's (Tables 1-2) per task, FT and VPT, seed std as error bars."""
    from matplotlib.patches import Patch

    rows = [
        r
        for r in results
        if (r.ours_ft is not None and r.paper_ft is not None) or (r.ours_vpt is not None and r.paper_vpt is not None)
    ]
    fig = new_figure(8.5, 1.6 + 0.38 * max(len(rows), 1))
    ax = fig.add_subplot()
    if not rows:
        ax.text(
            0.5, 0.5, "no task has both our result and the paper's", ha="center", va="center", transform=ax.transAxes
        )
        ax.set_axis_off()
        ax.set_title(title, fontsize=12, weight="bold")
        return fig
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        for ours, std, paper, colour, dy in (
            (row.ours_ft, row.ours_ft_std, row.paper_ft, FT_COLOUR, 0.18),
            (row.ours_vpt, row.ours_vpt_std, row.paper_vpt, VPT_COLOUR, -0.18),
        ):
            if ours is None or paper is None:
                continue
            ax.barh(
                y + dy,
                ours - paper,
                height=0.34,
                color=colour,
                xerr=std or None,
                error_kw={"ecolor": "#333333", "capsize": 3, "elinewidth": 1},
            )
    ax.axvline(0, color="black", lw=1.2)
    ax.set_yticks(
        [len(rows) - 1 - i for i in range(len(rows))],
        [f"{r.task}" + (f"  [{r.group}]" if r.group else "") for r in rows],
        fontsize=9,
    )
    # Separate the paper's groups (Natural / Specialized / Structured) with a line.
    for i in range(1, len(rows)):
        if rows[i].group != rows[i - 1].group:
            ax.axhline(len(rows) - 0.5 - i, color="#999999", lw=0.8, ls=":")
    ax.set_xlabel("our accuracy minus the paper's (percentage points)")
    ax.set_ylabel("VTAB-1k task [group]")
    ax.set_title(title, fontsize=12, weight="bold")
    ax.grid(True, axis="x", alpha=0.3)
    handles = [
        Patch(color=FT_COLOUR, label="FT: ours - Tables 1-2"),
        Patch(color=VPT_COLOUR, label="VPT: ours - Tables 1-2"),
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=2, fontsize=9, frameon=False, title="error bars: our seed std"
    )
    return fig


def vtab_data_size_figure(points: list[DataSizePoint], *, title: str = "Accuracy against training-set size") -> Figure:
    """Small multiples like the paper's Figure 4: per task, FT and VPT accuracy against training size (log axis);
    the paper's points dashed with open markers, ours solid with filled markers and seed std."""
    from matplotlib.lines import Line2D

    tasks = list(dict.fromkeys(p.task for p in points))
    ncols = min(4, max(1, len(tasks)))
    nrows = max(1, math.ceil(len(tasks) / ncols))
    fig = new_figure(max(8.0, 3.1 * ncols + 0.4), 2.6 * nrows + 1.2)
    fig.suptitle(title, fontsize=12, weight="bold")
    if not tasks:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no data-size points", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, task in enumerate(tasks):
        ax = axes[k // ncols][k % ncols]
        ax.set_xscale("log")
        sizes = [p.n_train for p in points if p.task == task]
        for method, colour in (("FT", FT_COLOUR), ("VPT", VPT_COLOUR)):
            for origin, style, face in (("paper", "--", "white"), ("ours", "-", colour)):
                pts = sorted(
                    (p for p in points if p.task == task and p.method == method and p.origin == origin),
                    key=lambda p: p.n_train,
                )
                if not pts:
                    continue
                ax.errorbar(
                    [p.n_train for p in pts],
                    [p.accuracy for p in pts],
                    yerr=[p.std or 0.0 for p in pts] if origin == "ours" else None,
                    color=colour,
                    ls=style,
                    marker="o",
                    ms=5,
                    mfc=face,
                    mec=colour,
                    capsize=2,
                    lw=1.6,
                )
        log_size_ticks(ax, min(sizes) / 1.4, max(sizes) * 1.4)
        ax.set_xlim(min(sizes) / 1.4, max(sizes) * 1.4)
        ax.tick_params(labelsize=7)
        ax.set_title(task, fontsize=10)
        ax.grid(True, alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("accuracy (%)", fontsize=9)
        if k // ncols == nrows - 1 or k + ncols >= len(tasks):
            ax.set_xlabel("training images (log)", fontsize=8)
    for k in range(len(tasks), nrows * ncols):
        axes[k // ncols][k % ncols].set_axis_off()
    handles = [
        Line2D([], [], color=FT_COLOUR, marker="o", label="FT, ours"),
        Line2D([], [], color=FT_COLOUR, ls="--", marker="o", mfc="white", label="FT, paper (Tables 5-6)"),
        Line2D([], [], color=VPT_COLOUR, marker="o", label="VPT, ours"),
        Line2D([], [], color=VPT_COLOUR, ls="--", marker="o", mfc="white", label="VPT, paper (Tables 5-6)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=9, frameon=False)
    return fig


def write_pilot_plot(methods: list[MethodSeeds], path: Path) -> Path:
    """Render the pilot accuracy chart to ``path`` (.png, .svg or .pdf; ``pilot --plot``); returns the path."""
    return save_figure(pilot_accuracy_figure(methods), check_plot_path(path))
