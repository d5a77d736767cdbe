"""Charts for the recommendation: the quadrant (task disparity x FID) and the data-size trend.

The quadrant follows Han et al. (ICLR 2024), Fig. 1 / Sec. 4.3: VPT is preferable in three of four
quadrants, FT only for low task disparity with data dissimilar to ImageNet-21k (high FID). The points
are the five FGVC datasets of Table 19 (the only FIDs the paper prints) and, when a calibration
exists, the VTAB-1k tasks at their measured FIDs. The data-size trend plots VPT minus FT accuracy from
Tables 5-6 against training-set size on a log axis.

matplotlib is imported inside the functions (``vpt-advisor --help`` must stay fast) and figures are
built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot's global state.
Colours are the Okabe-Ito colour-blind-safe palette; a method's colour and label are its registry entry's
(``engine.train.methods``), read when the chart is drawn.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from advisor.report.inputs import QuadrantInputs, SizeTrendInputs
from engine.errors import ConfigError, UnknownNameError
from engine.train.methods import get_method

# matplotlib is imported inside the functions that use it: importing this module does not load it.

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "OKABE_ITO",
    "METHOD_COLOURS",
    "DPI",
    "new_figure",
    "method_colour",
    "method_label",
    "log_size_ticks",
    "figure_png",
    "save_figure",
    "check_plot_path",
    "PLOT_SUFFIXES",
    "quadrant_figure",
    "size_trend_figure",
    "write_quadrant_plot",
    "write_size_trend_plot",
]

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
FT_COLOUR = OKABE_ITO["vermillion"]
VPT_COLOUR = OKABE_ITO["blue"]
USER_COLOUR = OKABE_ITO["black"]
METHOD_COLOURS = {"FT": FT_COLOUR, "VPT": VPT_COLOUR}
"""Colours of the two sides; a registered method's colour is its registry entry's."""
DPI = 120
PLOT_SUFFIXES = frozenset({".png", ".svg", ".pdf"})
_X = {"low": 0.0, "high": 1.0}


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free Figure with an Agg canvas and the house font sizes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def method_colour(method: str, index: int = 0) -> str:
    """Colour of a side word or a registered method (its registry colour), else the palette in order."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    try:
        colour = get_method(method).colour
    except UnknownNameError:
        colour = None
    palette = list(OKABE_ITO.values())[1:]
    return colour or palette[index % len(palette)]


def method_label(method: str) -> str:
    """Display name of a registered method (its registry label: ``FT``, ``VPT-deep``, ``LoRA``), else the name."""
    try:
        return get_method(method).display
    except UnknownNameError:
        return method


def figure_png(fig: Figure) -> bytes:
    """Render a figure to RGB PNG bytes at :data:`DPI`.

    Draws once on the Agg canvas and encodes the buffer with Pillow: ``savefig`` would draw twice
    (constrained layout, then print), which doubles the cost of these text-heavy charts.
    """
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buf, format="png")
    return buf.getvalue()


def check_plot_path(path: Path) -> Path:
    """Return ``path`` if its suffix is a supported image format, else raise ConfigError."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(
            f"cannot write a plot to '{path}': unknown image type '{path.suffix}'; "
            f"use one of {', '.join(sorted(PLOT_SUFFIXES))} (e.g. out.png)"
        )
    return path


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG, SVG or PDF chosen by the suffix of ``path``; returns ``path``.

    Raises:
        ConfigError: The suffix is not .png, .svg or .pdf.
    """
    path = check_plot_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=path.suffix.lower().lstrip("."), dpi=DPI, facecolor="white")
    return path


def _spread(n: int, width: float = 0.5) -> list[float]:
    """Deterministic horizontal offsets for n points in one column."""
    if n <= 1:
        return [0.0] * n
    return [-width / 2 + width * i / (n - 1) for i in range(n)]


def quadrant_figure(inputs: QuadrantInputs) -> Figure:
    """The quadrant chart: task disparity (two columns) against FID to ImageNet-21k.

    Low-disparity column: FT region above the borderline band, VPT region below it, the band
    shaded as "run a pilot". High-disparity column: VPT whatever the FID (the paper's rule).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = new_figure(9.0, 6.0)
    ax = fig.add_subplot()
    lo, hi = inputs.band
    fids = [p.fid for p in inputs.points] + [lo, hi, inputs.threshold]
    if inputs.user is not None and inputs.user.fid is not None:
        fids.append(inputs.user.fid)
    pad = max(10.0, 0.12 * (max(fids) - min(fids)))
    ymin, ymax = max(0.0, min(fids) - pad), max(fids) + pad
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylim(ymin, ymax)

    # Regions: what the paper's rule advises in each part of the chart.
    ax.fill_between([-0.5, 0.5], hi, ymax, color=FT_COLOUR, alpha=0.10, linewidth=0)
    ax.fill_between([-0.5, 0.5], ymin, lo, color=VPT_COLOUR, alpha=0.08, linewidth=0)
    ax.fill_between([-0.5, 0.5], lo, hi, facecolor="#BBBBBB", alpha=0.35, hatch="//", edgecolor="#888888", lw=0)
    ax.fill_between([0.5, 1.5], ymin, ymax, color=VPT_COLOUR, alpha=0.08, linewidth=0)
    ax.axvline(0.5, color="#555555", lw=1)
    ax.hlines(inputs.threshold, -0.5, 0.5, colors="#333333", linestyles="--", lw=1.6)
    ax.text(-0.48, ymax - pad * 0.25, "FT preferable", color=FT_COLOUR, fontsize=11, weight="bold", va="top")
    ax.text(-0.48, ymin + pad * 0.25, "VPT preferable", color=VPT_COLOUR, fontsize=11, weight="bold", va="bottom")
    ax.text(
        0.52,
        ymax - pad * 0.25,
        "VPT preferable (FID does not matter)",
        color=VPT_COLOUR,
        fontsize=11,
        weight="bold",
        va="top",
    )
    ax.text(
        -0.48,
        inputs.threshold,
        f"threshold {inputs.threshold:.1f} ({inputs.threshold_label})",
        fontsize=8,
        ha="left",
        va="bottom",
        color="#333333",
    )

    for disparity in ("low", "high"):
        column = sorted((p for p in inputs.points if p.disparity == disparity), key=lambda p: p.fid)
        offsets = _spread(len(column))
        for i, point in enumerate(column):
            x = _X[disparity] + offsets[i]
            # A close neighbour just above: put this label below its point so the two do not collide.
            crowded = i + 1 < len(column) and column[i + 1].fid - point.fid < 0.04 * (ymax - ymin)
            colour = FT_COLOUR if point.winner == "FT" else VPT_COLOUR
            marker = "o" if point.source.startswith("Table") else "s"
            ax.scatter([x], [point.fid], s=70, color=colour, marker=marker, edgecolors="white", linewidths=1, zorder=3)
            ax.annotate(
                point.name,
                (x, point.fid),
                xytext=(6, -12 if crowded else 3),
                textcoords="offset points",
                fontsize=8,
                zorder=4,
            )
    if not any(p.disparity == "high" for p in inputs.points):
        ax.text(
            1.0,
            ymin + 0.2 * (ymax - ymin),
            "no FIDs for VTAB tasks yet\n(`vpt-advisor calibrate` adds them)",
            ha="center",
            va="center",
            fontsize=9,
            color="#555555",
            style="italic",
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "none", "alpha": 0.85},
        )

    user = inputs.user
    if user is not None:
        x = _X[user.disparity] if user.disparity else 0.5
        if user.fid is not None:
            ax.scatter(
                [x], [user.fid], s=320, marker="*", color=USER_COLOUR, edgecolors="white", linewidths=1.2, zorder=5
            )
            ax.annotate(
                f"{user.label}\nFID {user.fid:.1f}",
                (x, user.fid),
                xytext=(12, -4),
                textcoords="offset points",
                fontsize=10,
                weight="bold",
                zorder=6,
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": USER_COLOUR, "alpha": 0.9},
            )
    ticks = [
        "Low task disparity\n(natural, specialized, FGVC: classification-like)",
        "High task disparity\n(structured: counting, distance, orientation, ...)",
    ]
    # An unmeasured FID has no height: placing its note anywhere on the FID axis would put it inside a region (at
    # mid-height, "VPT preferable") that the answer may contradict. It goes under its column's name instead.
    unplaced = f"{user.label}: {user.fid_note}" if user is not None and user.fid is None else None
    if unplaced is not None and user is not None and user.disparity:
        ticks[int(_X[user.disparity])] += f"\n\n{unplaced}"
    ax.set_xticks([0, 1], ticks)
    if unplaced is not None and user is not None and not user.disparity:  # no column either: under both
        ax.set_xlabel(unplaced, color=USER_COLOUR, weight="bold")
    ax.set_ylabel("FID to ImageNet-21k (lower = more similar)")
    ax.set_title(inputs.title, fontsize=12, weight="bold")
    handles = [
        Line2D([], [], marker="o", ls="", color=FT_COLOUR, markersize=8, label="FT won in the paper"),
        Line2D([], [], marker="o", ls="", color=VPT_COLOUR, markersize=8, label="VPT won in the paper"),
        Line2D([], [], ls="--", color="#333333", label="similarity threshold"),
        Patch(facecolor="#BBBBBB", hatch="//", edgecolor="#888888", label="borderline band: run a pilot"),
    ]
    if user is not None and user.fid is not None:  # the star is drawn only for a measured FID
        handles.insert(2, Line2D([], [], marker="*", ls="", color=USER_COLOUR, markersize=14, label=user.label))
    if any(not p.source.startswith("Table") for p in inputs.points):
        handles.insert(
            2, Line2D([], [], marker="s", ls="", color="#666666", markersize=7, label="VTAB-1k (calibration)")
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    return fig


def log_size_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Plain-number ticks (400, 800, 5,000, ...) on a log training-size axis between lo and hi."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = [t for t in (100, 200, 400, 800, 2000, 5000, 10000, 20000, 50000, 100000) if lo <= t <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def size_trend_figure(inputs: SizeTrendInputs) -> Figure:
    """VPT-FT gap (points) against training-set size: per-task thin lines, the mean thick, user's N marked."""
    from matplotlib.lines import Line2D

    fig = new_figure(9.0, 5.6)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    sizes: list[float] = [*(s for item in inputs.series for s in item.sizes), *inputs.mean_sizes]
    gaps = [g for item in inputs.series for g in item.gaps] + list(inputs.mean_gaps)
    if inputs.user_n is not None:
        sizes.append(inputs.user_n)
    if inputs.catch_up_n is not None:
        sizes.append(inputs.catch_up_n)
    if inputs.expected_gap is not None:
        gaps.append(inputs.expected_gap)
    sizes = sizes or [400, 10000]
    gaps = gaps or [0.0]
    xlo, xhi = min(sizes) / 1.5, max(sizes) * 1.5
    span = max(gaps + [0.0]) - min(gaps + [0.0])
    ylo, yhi = min(gaps + [0.0]) - 0.1 * span - 1, max(gaps + [0.0]) + 0.12 * span + 1
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)
    ax.axhspan(0, yhi, color=VPT_COLOUR, alpha=0.07, lw=0)
    ax.axhspan(ylo, 0, color=FT_COLOUR, alpha=0.07, lw=0)
    ax.axhline(0, color="#333333", lw=1.2)
    ax.text(xlo * 1.05, yhi - 0.03 * span, "VPT better", color=VPT_COLOUR, weight="bold", va="top")
    ax.text(xlo * 1.05, ylo + 0.03 * span, "FT better", color=FT_COLOUR, weight="bold", va="bottom")

    for item in inputs.series:
        ax.plot(item.sizes, item.gaps, color="#8C8C8C", lw=1, alpha=0.8, marker=".", ms=5, zorder=2)
    if inputs.mean_sizes:
        ax.plot(inputs.mean_sizes, inputs.mean_gaps, color=USER_COLOUR, lw=3.2, marker="o", ms=7, zorder=4)

    if inputs.catch_up_n is not None:
        ax.scatter([inputs.catch_up_n], [0], s=110, marker="D", color=OKABE_ITO["orange"], edgecolors="black", zorder=6)
        left = math.log(inputs.catch_up_n) > (math.log(xlo) + math.log(xhi)) / 2
        ax.annotate(
            f"FT catches up at about {inputs.catch_up_n:,.0f}",
            (inputs.catch_up_n, 0),
            xytext=(-8 if left else 8, -16),
            textcoords="offset points",
            ha="right" if left else "left",
            fontsize=9,
            weight="bold",
            color="#7A5200",
        )
    if inputs.user_n is not None:
        colour = OKABE_ITO["reddish_purple"]
        ax.axvline(inputs.user_n, color=colour, lw=2.2, ls="--", zorder=5)
        lines = [f"{inputs.user_n_label} = {inputs.user_n:,}"]
        if inputs.expected_gap is not None:
            lines.append(f"expected gap {inputs.expected_gap:+.1f} pts")
        if inputs.extrapolated:
            lines.append("(extrapolated beyond the paper's sizes)")
        y = inputs.expected_gap if inputs.expected_gap is not None else (ylo + yhi) / 2
        if inputs.expected_gap is not None:
            ax.scatter([inputs.user_n], [inputs.expected_gap], s=90, color=colour, edgecolors="black", zorder=7)
        right = math.log(inputs.user_n) < (math.log(xlo) + math.log(xhi)) / 2
        ax.annotate(
            "\n".join(lines),
            (inputs.user_n, y),
            xytext=(10 if right else -10, 12),
            textcoords="offset points",
            ha="left" if right else "right",
            fontsize=9,
            weight="bold",
            zorder=8,
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": colour, "alpha": 0.95},
        )

    log_size_ticks(ax, xlo, xhi)
    ax.set_xlabel("training-set size (images, log scale)")
    ax.set_ylabel("VPT minus FT accuracy (percentage points)")
    ax.set_title(inputs.title, fontsize=12, weight="bold")
    ax.grid(True, which="major", alpha=0.3)
    handles = [
        Line2D([], [], color="#8C8C8C", lw=1, marker=".", label=f"one task ({inputs.comparable}; Tables 5-6)"),
        Line2D([], [], color=USER_COLOUR, lw=3.2, marker="o", label=inputs.mean_label),
    ]
    if inputs.user_n is not None:
        handles.append(
            Line2D(
                [],
                [],
                color=OKABE_ITO["reddish_purple"],
                lw=2.2,
                ls="--",
                label=f"{inputs.user_n_label} (training-set size)",
            )
        )
    if inputs.catch_up_n is not None:
        handles.append(
            Line2D(
                [], [], marker="D", ls="", color=OKABE_ITO["orange"], markeredgecolor="black", label="FT catch-up size"
            )
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return fig


def write_quadrant_plot(inputs: QuadrantInputs, path: Path) -> Path:
    """Render the quadrant chart to ``path`` (.png, .svg or .pdf; ``recommend --plot``); returns the path."""
    return save_figure(quadrant_figure(inputs), check_plot_path(path))


def write_size_trend_plot(inputs: SizeTrendInputs, path: Path) -> Path:
    """Render the data-size trend to ``path`` (.png, .svg or .pdf); returns the path written."""
    return save_figure(size_trend_figure(inputs), check_plot_path(path))
