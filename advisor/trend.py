"""The data-size trend of Han et al. (ICLR 2024), Tables 5-6: the VPT-FT gap against training-set size.

For a set of comparable VTAB-1k tasks, each task's gap (VPT minus FT accuracy, points) is known at up
to four sizes (400, 800, 5000, 10000; some datasets are too small for the two larger ones). The gap at
the user's size ``n`` is interpolated linearly in ``log(n)`` between the two table sizes around it.
A task enters the mean at ``n`` only if it was measured on both sides of ``n``; outside the table
range (below 400 or above 10,000) the gap at the nearest table size is used unchanged (not
extrapolated) and the result is flagged. The catch-up size is the smallest ``n`` where that mean
gap reaches 0. Pure functions, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from advisor.schemas import SizeTrend, TaskGap
from engine.paper import DATA_SIZES, data_size_table, paper_claims

__all__ = ["catch_up_size", "interpolate_gap", "mean_gap", "size_trend", "task_gaps"]

_LOW, _HIGH = DATA_SIZES[0], DATA_SIZES[-1]


def task_gaps(keys: Iterable[str]) -> dict[str, dict[int, float]]:
    """VPT-FT gap per task and table size, only where both numbers are printed (Tables 5-6)."""
    table = data_size_table()
    return {k: {n: p.gap for n, p in table[k].items() if p.gap is not None} for k in keys}


def interpolate_gap(points: Mapping[int, float], n: float) -> tuple[float, tuple[int, int]] | None:
    """Gap at ``n`` from one task's ``size -> gap`` points, linear in log-size.

    Returns ``(gap, (lower size, upper size))``, exact at table sizes (both sizes equal). Below 400 or
    above 10,000 the value at that end is returned (clamped). ``None`` when the task was not measured
    on both sides of ``n`` (e.g. ``n = 2000`` for a task printed only at 400 and 800).
    """
    sizes = sorted(points)
    if not sizes:
        return None
    if n in points:
        size = int(n)
        return points[size], (size, size)
    if n < sizes[0]:
        return (points[sizes[0]], (sizes[0], sizes[0])) if sizes[0] == _LOW else None
    if n > sizes[-1]:
        return (points[sizes[-1]], (sizes[-1], sizes[-1])) if sizes[-1] == _HIGH else None
    for lo, hi in zip(sizes, sizes[1:], strict=False):
        if lo < n < hi:
            t = (math.log(n) - math.log(lo)) / (math.log(hi) - math.log(lo))
            return points[lo] + t * (points[hi] - points[lo]), (lo, hi)
    return None  # unreachable: n lies in [sizes[0], sizes[-1]]


def mean_gap(gaps: Mapping[str, Mapping[int, float]], n: float) -> tuple[float, list[TaskGap]] | None:
    """Mean interpolated gap at ``n`` over the tasks measured on both sides of it, and the per-task gaps."""
    rows = []
    for key, points in gaps.items():
        hit = interpolate_gap(points, n)
        if hit is not None:
            rows.append(TaskGap(key=key, gap=hit[0], sizes=hit[1]))
    if not rows:
        return None
    return sum(r.gap for r in rows) / len(rows), rows


def catch_up_size(gaps: Mapping[str, Mapping[int, float]]) -> float | None:
    """Smallest ``n`` in [400, 10000] where the mean gap (as :func:`mean_gap` defines it) is <= 0.

    Between two table sizes the mean runs over a fixed set of tasks, so it is linear in log-size and
    the crossing is solved exactly; at a table size the set can change (tasks printed only up to 800).
    """
    for i, lo in enumerate(DATA_SIZES):
        at = mean_gap(gaps, lo)
        if at is not None and at[0] <= 0:
            return float(lo)
        if i + 1 == len(DATA_SIZES):
            break
        hi = DATA_SIZES[i + 1]
        inside = [k for k, p in gaps.items() if lo in p and hi in p]
        if not inside:
            continue
        a = sum(gaps[k][lo] for k in inside) / len(inside)
        b = sum(gaps[k][hi] for k in inside) / len(inside)
        if a <= 0:  # the set just above `lo` is already level or behind
            return float(lo)
        if b <= 0:
            t = a / (a - b)
            return math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
    return None


def size_trend(keys: list[str], n_train: int | None, *, grouping: str) -> SizeTrend:
    """The Tables 5-6 trend for the comparable tasks ``keys`` at ``n_train`` (800 assumed when None).

    Raises:
        ValueError: none of ``keys`` has data at that size (cannot happen for a whole disparity group).
    """
    n_assumed = n_train is None
    n = 800 if n_train is None else n_train
    gaps = task_gaps(keys)
    hit = mean_gap(gaps, n) if gaps else None
    if hit is None:
        raise ValueError(f"no comparable task has Tables 5-6 data around n={n}")
    mean, rows = hit
    curve = {s: m[0] for s in DATA_SIZES if (m := mean_gap(gaps, s)) is not None}
    note = None
    if n < _LOW:
        note = (f"{n:,} is below the smallest size in Tables 5-6 ({_LOW}); the gaps shown are those at {_LOW}, "
                "not extrapolated (the paper reports VPT's edge growing as data shrinks)")
    elif n > _HIGH:
        note = (f"{n:,} is above the largest size in Tables 5-6 ({_HIGH:,}); the gaps shown are those at "
                f"{_HIGH:,}, not extrapolated")
    crossing = catch_up_size(gaps)
    if crossing is None:
        cu_note = "not within the paper's range (400-10,000): the mean gap stays in VPT's favour"
    elif crossing == DATA_SIZES[0]:
        cu_note = f"FT is already level or ahead on average at {DATA_SIZES[0]} samples"
    else:
        cu_note = f"about {crossing:,.0f} training samples (mean gap reaches 0, log-linear between table sizes)"
    claims = paper_claims()
    return SizeTrend(
        n_train=n,
        n_assumed=n_assumed,
        grouping=grouping,
        tasks=rows,
        mean_gap=mean,
        min_gap=min(r.gap for r in rows),
        max_gap=max(r.gap for r in rows),
        vpt_ahead=sum(1 for r in rows if r.gap > 0),
        curve=curve,
        extrapolated=note is not None,
        extrapolation_note=note,
        catch_up_n=crossing,
        catch_up_note=cu_note,
        paper_claim=(claims[0] if claims else "")
        + " At 5,000-10,000 training samples FT often matches or beats VPT (Tables 5-6).",
    )
