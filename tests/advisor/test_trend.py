"""advisor.trend: the Tables 5-6 data-size trend (log-linear interpolation, catch-up size)."""

from __future__ import annotations

import math

import pytest

from advisor.trend import catch_up_size, interpolate_gap, mean_gap, size_trend, task_gaps
from engine.paper import DATA_SIZES, VTAB_TASKS, paper_data


def _raw_gaps() -> dict[str, dict[int, float]]:
    """Gaps straight from the JSON, independent of engine.paper's accessors."""
    per_task = paper_data()["data_size_trend"]["per_task"]
    return {k: {int(n): c["VPT"] - c["FT"] for n, c in v.items() if c["FT"] is not None and c["VPT"] is not None}
            for k, v in per_task.items()}


def _group(disparity: str) -> list[str]:
    return [k for k, t in VTAB_TASKS.items() if t.disparity == disparity]


def test_exact_at_table_sizes() -> None:
    raw = _raw_gaps()
    gaps = task_gaps(VTAB_TASKS)
    for key, points in raw.items():
        for n, gap in points.items():
            value, sizes = interpolate_gap(gaps[key], n)  # type: ignore[misc]
            assert value == pytest.approx(gap) and sizes == (n, n)


def test_log_linear_and_monotone_between_sizes() -> None:
    gaps = task_gaps(VTAB_TASKS)
    for key, points in gaps.items():
        sizes = sorted(points)
        for lo, hi in zip(sizes, sizes[1:], strict=False):
            mid = math.sqrt(lo * hi)  # halfway in log-size
            assert interpolate_gap(points, mid)[0] == pytest.approx((points[lo] + points[hi]) / 2)  # type: ignore[index]
            samples = [interpolate_gap(points, lo * (hi / lo) ** (i / 10))[0] for i in range(11)]  # type: ignore[index]
            diffs = [b - a for a, b in zip(samples, samples[1:], strict=False)]
            assert all(d >= -1e-9 for d in diffs) or all(d <= 1e-9 for d in diffs), key


def test_tasks_without_large_splits_drop_out() -> None:
    gaps = task_gaps(["caltech101", "cifar100"])
    _, rows = mean_gap(gaps, 2000)  # type: ignore[misc]
    assert [r.key for r in rows] == ["cifar100"]  # Caltech101 has no 5000/10000 split ('-')
    assert interpolate_gap(gaps["caltech101"], 100) is not None  # below 400 every task clamps


@pytest.mark.parametrize(("n", "flagged"), [(100, True), (400, False), (3000, False), (10000, False), (50000, True)])
def test_extrapolation_is_flagged(n: int, flagged: bool) -> None:
    trend = size_trend(_group("high"), n, grouping="test")
    assert trend.extrapolated is flagged
    assert (trend.extrapolation_note is not None) is flagged
    if n > DATA_SIZES[-1]:
        assert trend.mean_gap == pytest.approx(size_trend(_group("high"), DATA_SIZES[-1], grouping="t").mean_gap)


@pytest.mark.parametrize("disparity", ["low", "high"])
def test_catch_up_size_is_where_the_mean_gap_reaches_zero(disparity: str) -> None:
    raw = {k: v for k, v in _raw_gaps().items() if k in _group(disparity)}
    table_mean = {n: sum(p[n] for p in raw.values() if n in p) / sum(1 for p in raw.values() if n in p)
                  for n in DATA_SIZES}
    pairs = zip(DATA_SIZES, DATA_SIZES[1:], strict=False)
    sign_change = [(a, b) for a, b in pairs if table_mean[a] > 0 >= table_mean[b]]
    assert sign_change, "the paper's means change sign in both groups"
    crossing = catch_up_size(task_gaps(_group(disparity)))
    assert crossing is not None and sign_change[0][0] < crossing < sign_change[0][1]
    gaps = task_gaps(_group(disparity))
    assert mean_gap(gaps, crossing)[0] == pytest.approx(0.0, abs=1e-9)  # type: ignore[index]
    assert mean_gap(gaps, crossing * 0.95)[0] > 0 > mean_gap(gaps, crossing * 1.05)[0]  # type: ignore[index]
    trend = size_trend(_group(disparity), 800, grouping="t")
    assert trend.catch_up_n == round(crossing, -2)  # rounded: the paper measures only four sizes
    assert "between 800 and 5,000" in trend.catch_up_note and "(Tables 5-6)" in trend.catch_up_note
    assert "5,000-10,000" in trend.paper_claim


def test_catch_up_edge_cases() -> None:
    assert catch_up_size(task_gaps(["patch_camelyon"])) == DATA_SIZES[0]  # FT ahead already at 400 (Table 5)
    assert catch_up_size(task_gaps(["sun397"])) is None  # VPT ahead at every size (Table 5)
    assert "does not catch up within the sizes" in size_trend(["sun397"], 800, grouping="t").catch_up_note


def test_unknown_size_assumes_800() -> None:
    trend = size_trend(_group("low"), None, grouping="t")
    assert trend.n_assumed and trend.n_train == 800
    assert trend.vpt_ahead == sum(1 for k in _group("low") if VTAB_TASKS[k].winner_800 == "VPT")
