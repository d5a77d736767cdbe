"""Every report figure renders from fixed inputs to a valid, non-blank PNG of the expected size; the
quadrant and data-size charts react to the user's point; the paper-derived chart inputs are right."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from advisor.report import (
    QuadrantInputs,
    SizeSeries,
    UserPoint,
    calibration_points,
    paper_fgvc_points,
    paper_size_trend,
    write_pilot_plot,
    write_quadrant_plot,
    write_size_trend_plot,
)
from advisor.report.figures import DPI, figure_png, quadrant_figure, size_trend_figure
from advisor.report.figures_runs import (
    learning_curves_figure,
    pilot_accuracy_figure,
    vtab_data_size_figure,
    vtab_difference_figure,
)
from advisor.report.paper import catch_up_size, interpolate_gap, paper_size_series
from engine.errors import ConfigError
from tests.advisor import report_cases as cases

FIGURES: dict[str, Callable[[], object]] = {
    "quadrant": lambda: quadrant_figure(cases.quadrant()),
    "quadrant_unmeasured": lambda: quadrant_figure(cases.quadrant(None, "high")),
    "quadrant_calibrated": lambda: quadrant_figure(cases.quadrant(calibrated=True)),
    "size_trend": lambda: size_trend_figure(paper_size_trend("high", user_n=1200)),
    "pilot_accuracy": lambda: pilot_accuracy_figure(cases.methods()),
    "learning_curves": lambda: learning_curves_figure(cases.curves()),
    "vtab_difference": lambda: vtab_difference_figure(cases.vtab_results()),
    "vtab_data_size": lambda: vtab_data_size_figure(cases.data_size_points()),
}


def _render(fig: object) -> np.ndarray:
    return cases.decode_png(figure_png(fig))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_valid_png_of_expected_size_and_not_blank(name: str) -> None:
    fig = FIGURES[name]()
    pixels = _render(fig)
    width, height = (v * DPI for v in fig.get_size_inches())  # type: ignore[attr-defined]
    assert pixels.shape[2] == 3
    assert abs(pixels.shape[0] - height) <= 1 and abs(pixels.shape[1] - width) <= 1  # matplotlib truncates
    assert width >= 800, "figures must be large enough to read at a glance"
    assert cases.is_not_blank(pixels)


def test_figures_have_titles_and_axis_labels() -> None:
    for name, build in FIGURES.items():
        fig = build()
        axes = [ax for ax in fig.axes if ax.axison]  # type: ignore[attr-defined]
        titled = any(ax.get_title() for ax in axes) or fig.get_suptitle()  # type: ignore[attr-defined]
        assert titled, name
        assert any(ax.get_ylabel() for ax in axes), name
        if not name.startswith("quadrant"):  # the quadrant's x axis is categorical, named by its tick labels
            assert any(ax.get_xlabel() for ax in axes), name
        assert fig.legends or any(ax.get_legend() for ax in axes), name  # type: ignore[attr-defined]


def test_quadrant_changes_when_the_user_point_moves() -> None:
    low = _render(quadrant_figure(cases.quadrant(150.0)))
    high = _render(quadrant_figure(cases.quadrant(178.0)))
    unmeasured = _render(quadrant_figure(cases.quadrant(None)))
    assert low.shape == high.shape == unmeasured.shape
    assert not np.array_equal(low, high)
    assert not np.array_equal(low, unmeasured)
    # Only the neighbourhood of the point and its label should change, not the whole chart.
    changed = np.any(low != high, axis=-1).mean()
    assert 0.0005 < changed < 0.2


@pytest.mark.parametrize("disparity", ["low", "high", None])
def test_an_unmeasured_fid_is_placed_nowhere_on_the_fid_axis(disparity: str | None) -> None:
    """Its note sits under its column's name (or under both), never at a height: mid-height is 'VPT preferable'."""
    inputs = cases.quadrant(None, "low")
    inputs = inputs.model_copy(update={"user": UserPoint(disparity=disparity, fid=None)})
    fig = quadrant_figure(inputs)
    ax = fig.axes[0]
    note = f"{inputs.user.label}: {inputs.user.fid_note}"  # type: ignore[union-attr]
    assert not [t.get_text() for t in ax.texts if inputs.user.fid_note in t.get_text()]  # type: ignore[union-attr]
    assert not [line for line in ax.get_lines() if line.get_xdata()[0] in (0.0, 1.0)]  # no line up the column
    from matplotlib.collections import PathCollection

    stars = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_sizes().max(initial=0) >= 300]
    assert not stars  # the user's star (s=320) is drawn only at a measured FID
    placed = [t.get_text() for t in ax.get_xticklabels()] + [ax.get_xlabel()]
    assert sum(note in text for text in placed) == 1
    if disparity is not None:
        assert note in placed[{"low": 0, "high": 1}[disparity]]


def test_quadrant_without_user_and_user_column() -> None:
    base = cases.quadrant(170.0, "low")
    other = base.model_copy(update={"user": UserPoint(disparity="high", fid=170.0)})
    assert not np.array_equal(_render(quadrant_figure(base)), _render(quadrant_figure(other)))
    bare = base.model_copy(update={"user": None})
    assert cases.is_not_blank(_render(quadrant_figure(bare)))


def test_size_trend_marks_the_users_n() -> None:
    a = _render(size_trend_figure(paper_size_trend("low", user_n=500)))
    b = _render(size_trend_figure(paper_size_trend("low", user_n=3000)))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_write_plot_functions_pick_format_by_suffix(tmp_path: Path) -> None:
    png = write_quadrant_plot(cases.quadrant(), tmp_path / "sub" / "q.png")
    assert png.read_bytes()[:8] == cases.PNG_SIGNATURE
    svg = write_size_trend_plot(paper_size_trend("low", user_n=900), tmp_path / "t.svg")
    assert svg.read_text(encoding="utf-8").lstrip().startswith(("<?xml", "<svg"))
    pdf = write_pilot_plot(cases.methods(), tmp_path / "p.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ConfigError, match=r"unknown image type '\.jpg'.*\.png"):
        write_quadrant_plot(cases.quadrant(), tmp_path / "q.jpg")
    assert not (tmp_path / "q.jpg").exists()


def test_empty_run_charts_still_render() -> None:
    for fig in (vtab_difference_figure([]), vtab_data_size_figure([]), learning_curves_figure([])):
        assert _render(fig).size > 0


# ------------------------------------------------------------------------------ paper-derived inputs
def test_fgvc_points_follow_table_19() -> None:
    points = {p.name: p for p in paper_fgvc_points()}
    assert len(points) == 5
    assert {n for n, p in points.items() if p.winner == "FT"} == {"Stanford Cars"}
    assert points["Stanford Cars"].fid == pytest.approx(182.487)
    assert min(p.fid for p in points.values()) == pytest.approx(143.84)
    assert all(p.disparity == "low" for p in points.values())


def test_calibration_points_use_the_paper_winners() -> None:
    points = {p.name: p for p in calibration_points({"svhn": 200.0, "clevr_count": 240.0, "no_such_task": 1.0})}
    assert len(points) == 2  # the unknown key is ignored
    by_fid = {p.fid: p for p in points.values()}
    assert by_fid[200.0].winner == "FT" and by_fid[200.0].disparity == "low"  # Table 1: SVHN FT 87.3 > VPT 82.5
    assert by_fid[240.0].winner == "VPT" and by_fid[240.0].disparity == "high"


def test_size_series_are_vpt_minus_ft_from_tables_5_6() -> None:
    series = {s.key: s for s in paper_size_series()}
    assert len(series) == 19
    cifar = series["cifar100"]
    assert cifar.sizes == [400, 800, 5000, 10000]
    assert cifar.gaps[0] == pytest.approx(70.6 - 51.1)
    assert series["kitti_distance"].sizes == [400, 800]  # 5000/10000 are '-' in Table 6
    assert {s.disparity for s in paper_size_series("high")} == {"high"}
    assert {s.key for s in paper_size_series(keys={"svhn", "dmlab"})} == {"svhn", "dmlab"}


def test_mean_curve_uses_only_tasks_with_all_sizes() -> None:
    trend = paper_size_trend("high")
    complete = [s for s in trend.series if len(s.sizes) == 4]
    assert len(complete) == 7  # KITTI/distance lacks 5000 and 10000
    assert trend.mean_sizes == [400, 800, 5000, 10000]
    assert trend.mean_gaps[0] == pytest.approx(sum(s.gaps[0] for s in complete) / 7)


def test_interpolation_is_linear_in_log_size() -> None:
    sizes, gaps = [400, 800, 5000], [4.0, 2.0, -1.0]
    assert interpolate_gap(sizes, gaps, 800) == (pytest.approx(2.0), False)
    mid, extrapolated = interpolate_gap(sizes, gaps, math.sqrt(400 * 800))
    assert mid == pytest.approx(3.0) and not extrapolated
    below, flagged = interpolate_gap(sizes, gaps, 200)
    assert below == pytest.approx(4.0) and flagged  # below 400 the 400 value is kept, as the decision does
    assert catch_up_size([400, 800], [2.0, -2.0]) == pytest.approx(math.sqrt(400 * 800))
    assert catch_up_size([400, 800], [2.0, 1.0]) is None


def test_trend_user_n_gap_and_extrapolation_flag() -> None:
    inside = paper_size_trend("low", user_n=800)
    assert inside.expected_gap == pytest.approx(inside.mean_gaps[1]) and not inside.extrapolated
    outside = paper_size_trend("low", user_n=50_000)
    assert outside.extrapolated
    given = paper_size_trend("low", user_n=800, expected_gap=1.25, catch_up_n=4321.0)
    assert (given.expected_gap, given.catch_up_n) == (1.25, 4321.0)


def test_input_models_reject_inconsistent_values() -> None:
    with pytest.raises(ValidationError, match="must contain the threshold"):
        QuadrantInputs(threshold=190.0, band=(165.0, 180.0))
    with pytest.raises(ValidationError, match="strictly increasing"):
        SizeSeries(name="x", disparity="low", sizes=[800, 400], gaps=[1.0, 2.0])
    with pytest.raises(ValidationError, match="extra"):
        UserPoint(fid=1.0, colour="red")  # type: ignore[call-arg]


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, advisor.report; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
