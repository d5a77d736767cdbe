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

import functools
import math
from collections.abc import Iterable, Mapping

from advisor.schemas import SizeTrend, TaskGap
from engine.paper import DATA_SIZES, data_size_table, paper_claims

__all__ = ["catch_up_note", "catch_up_size", "interpolate_gap", "mean_gap", "size_trend", "task_gaps"]

_LOW, _HIGH = DATA_SIZES[0], DATA_SIZES[-1]
_DIGITS = 2
"""Gaps are differences of accuracies printed with one or two decimals: report them at two at most."""


def catch_up_note(gaps: Mapping[str, Mapping[int, float]]) -> str:
    """Where FT catches up, as a range of table sizes with its basis (the vote of the tasks measured there)."""
    previous: int | None = None
    for size in DATA_SIZES:
        at = [p[size] for p in gaps.values() if size in p]
        if not at:
            continue
        ft_ahead = sum(g < 0 for g in at)
        if 2 * ft_ahead > len(at):
            basis = f"FT wins {ft_ahead} of the {len(at)} comparable tasks measured at {size:,} (Tables 5-6)"
            if previous is None:
                return f"FT is already ahead at {size:,} training samples: {basis}."
            return f"FT catches up between {previous:,} and {size:,} training samples: {basis}."
        previous = size
    return (f"FT does not catch up within the sizes the paper measures (up to {_HIGH:,}): at every size most "
            "comparable tasks favour VPT or split evenly (Tables 5-6).")


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


def catch_up_size(gaps: Mapping[str, Mapping[int, float]], sizes: tuple[int, ...] = DATA_SIZES) -> float | None:
    """Smallest ``n`` in [400, 10000] where the mean gap (as :func:`mean_gap` defines it) is <= 0.

    Between two table sizes the mean runs over a fixed set of tasks, so it is linear in log-size and
    the crossing is solved exactly; at a table size the set can change (tasks printed only up to 800).
    """
    for i, lo in enumerate(sizes):
        at = mean_gap(gaps, lo)
        if at is not None and at[0] <= 0:
            return float(lo)
        if i + 1 == len(sizes):
            break
        hi = sizes[i + 1]
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
    return _size_trend(tuple(keys), n_train, grouping).model_copy()


@functools.lru_cache(maxsize=256)
def _size_trend(keys: tuple[str, ...], n_train: int | None, grouping: str) -> SizeTrend:
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
                "not extrapolated (the answer uses the one-shot Tables 3-4 and the 400-sample cells)")
    elif n > _HIGH:
        note = (f"{n:,} is above the largest size in Tables 5-6 ({_HIGH:,}); the gaps shown are those at "
                f"{_HIGH:,}, not extrapolated")
    crossing = catch_up_size(gaps)
    cu_note = catch_up_note(gaps)
    claims = paper_claims()
    return SizeTrend(
        n_train=n,
        n_assumed=n_assumed,
        grouping=grouping,
        tasks=[r.model_copy(update={"gap": round(r.gap, _DIGITS)}) for r in rows],
        mean_gap=round(mean, _DIGITS),
        min_gap=round(min(r.gap for r in rows), _DIGITS),
        max_gap=round(max(r.gap for r in rows), _DIGITS),
        vpt_ahead=sum(1 for r in rows if r.gap > 0),
        curve={s: round(g, _DIGITS) for s, g in curve.items()},
        extrapolated=note is not None,
        extrapolation_note=note,
        catch_up_n=None if crossing is None else float(round(crossing, -2)),
        catch_up_note=cu_note,
        paper_claim=(claims[0] if claims else "")
        + " At 5,000-10,000 training samples FT often matches or beats VPT (Tables 5-6).",
    )
