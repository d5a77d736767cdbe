"""Chart inputs built from the paper's published numbers (Han et al., ICLR 2024).

Reads the packaged paper data through :mod:`engine.paper` and builds the inputs the charts need:
the five FGVC datasets of Table 19 (the only FIDs against ImageNet-21k the paper prints), VTAB-1k
tasks placed by a calibration's FIDs (winners from Tables 1-2), the VPT-FT gap per task and
training-set size from Tables 5-6, and the paper's accuracies for the reproduction report.

The mean curve of the data-size chart averages only the tasks that have all four sizes
(400 / 800 / 5000 / 10000), so its shape is not an artefact of tasks dropping out at 5000.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping

from advisor.report.inputs import DataSizePoint, Disparity, PaperPoint, SizeSeries, SizeTrendInputs
from advisor.trend import catch_up_size as _trend_catch_up
from advisor.trend import interpolate_gap as _trend_interpolate
from engine.errors import UnknownTaskError
from engine.paper import VTAB_TASKS, data_size_table, fgvc_table, get_vtab_task, vtab1k_results

__all__ = [
    "paper_fgvc_points",
    "calibration_points",
    "paper_size_series",
    "paper_size_trend",
    "paper_vtab_accuracy",
    "paper_data_size_points",
    "interpolate_gap",
    "catch_up_size",
]


def paper_fgvc_points() -> list[PaperPoint]:
    """The five FGVC datasets of Table 19: FID against ImageNet-21k and the winner (FT only on Stanford Cars).

    FGVC tasks are fine-grained classification, i.e. low task disparity.
    """
    return [
        PaperPoint(name=row.name, disparity="low", fid=row.fid, winner=row.winner, source="Table 19")
        for row in fgvc_table()
    ]


def calibration_points(task_fids: Mapping[str, float], *, source: str = "calibration") -> list[PaperPoint]:
    """VTAB-1k tasks placed at the FIDs a calibration measured; winners at 800/200 from Tables 1-2.

    Args:
        task_fids: VTAB task name (key, NOAH folder or alias, e.g. ``"clevr_count"``) to FID.
        source: Label for where the FIDs come from.

    Returns:
        One point per known task; unknown names are ignored.
    """
    points = []
    for name, fid in task_fids.items():
        try:
            task = get_vtab_task(name)
        except UnknownTaskError:
            continue
        points.append(
            PaperPoint(
                name=task.name,
                disparity=task.disparity,
                fid=float(fid),
                winner=task.winner_800,
                source=f"{source}; winner from Tables 1-2",
            )
        )
    return points


def paper_size_series(disparity: Disparity | None = None, *, keys: Collection[str] | None = None) -> list[SizeSeries]:
    """VPT minus FT accuracy per VTAB-1k task and training-set size (Tables 5-6), in paper order.

    Args:
        disparity: Keep only tasks of this disparity; None keeps all 19.
        keys: Keep only these VTAB task keys; None keeps all.
    """
    series = []
    for key, by_size in data_size_table().items():
        task = VTAB_TASKS[key]
        if (disparity is not None and task.disparity != disparity) or (keys is not None and key not in keys):
            continue
        points = [(n, pair.gap) for n, pair in sorted(by_size.items()) if pair.gap is not None]
        if points:
            series.append(
                SizeSeries(
                    name=task.name,
                    key=key,
                    disparity=task.disparity,
                    sizes=[n for n, _ in points],
                    gaps=[round(g, 4) for _, g in points],
                )
            )
    return series


def paper_vtab_accuracy() -> dict[str, tuple[float, float]]:
    """Task key -> (FT, VPT) accuracy (%) at the 800/200 split (Tables 1-2), in paper order."""
    ft, vpt = vtab1k_results("FT"), vtab1k_results("VPT")
    return {key: (ft[key], vpt[key]) for key in VTAB_TASKS}


def paper_data_size_points(keys: Collection[str] | None = None) -> list[DataSizePoint]:
    """The paper's FT and VPT accuracy per task and training size (Tables 5-6) as chart points.

    Args:
        keys: VTAB task keys to include (None: all 19); sizes printed '-' are left out.
    """
    points = []
    for key, by_size in data_size_table().items():
        if keys is not None and key not in keys:
            continue
        name = VTAB_TASKS[key].name
        for n, pair in sorted(by_size.items()):
            if pair.ft is not None:
                points.append(DataSizePoint(task=name, method="FT", n_train=n, accuracy=pair.ft, origin="paper"))
            if pair.vpt is not None:
                points.append(DataSizePoint(task=name, method="VPT", n_train=n, accuracy=pair.vpt, origin="paper"))
    return points


def _mean_curve(series: list[SizeSeries]) -> tuple[list[int], list[float]]:
    all_sizes = sorted({s for item in series for s in item.sizes})
    complete = [item for item in series if item.sizes == all_sizes] or series
    sizes = sorted({s for item in complete for s in item.sizes})
    gaps = []
    for size in sizes:
        values = [g for item in complete for s, g in zip(item.sizes, item.gaps, strict=True) if s == size]
        gaps.append(statistics.fmean(values))
    return sizes, gaps


def interpolate_gap(sizes: list[int], gaps: list[float], n: float) -> tuple[float, bool]:
    """Gap at ``n`` on a curve, by the one trend rule of :func:`advisor.trend.interpolate_gap`.

    Linear in log-size between table sizes; outside them the value at the nearer end is kept (clamped,
    never extended), as the decision does.

    Returns:
        ``(gap, extrapolated)``: ``extrapolated`` is True outside ``[sizes[0], sizes[-1]]``.
    """
    if not sizes:
        raise ValueError("no sizes to interpolate")
    points = dict(zip(sizes, gaps, strict=True))
    clamped = min(max(n, sizes[0]), sizes[-1])
    hit = _trend_interpolate(points, clamped)
    if hit is None:  # pragma: no cover - a clamped n always lies within the points
        raise ValueError(f"cannot interpolate at n={n}")
    return hit[0], n < sizes[0] or n > sizes[-1]


def catch_up_size(sizes: list[int], gaps: list[float]) -> float | None:
    """First size where a positive gap (VPT ahead) falls to zero, by :func:`advisor.trend.catch_up_size`."""
    if not gaps or gaps[0] <= 0:
        return None
    return _trend_catch_up({"curve": dict(zip(sizes, gaps, strict=True))}, sizes=tuple(sizes))


def paper_size_trend(
    disparity: Disparity | None = None,
    *,
    user_n: int | None = None,
    expected_gap: float | None = None,
    catch_up_n: float | None = None,
) -> SizeTrendInputs:
    """Data-size chart inputs from Tables 5-6 for tasks comparable to the user's.

    Args:
        disparity: Comparable tasks' disparity (None: all tasks).
        user_n: The user's training-set size to mark.
        expected_gap: The decision's expected gap at ``user_n``; computed from the mean curve when None.
        catch_up_n: The decision's catch-up size; computed from the mean curve when None.
    """
    series = paper_size_series(disparity)
    mean_sizes, mean_gaps = _mean_curve(series)
    extrapolated = False
    if user_n is not None:
        gap, extrapolated = interpolate_gap(mean_sizes, mean_gaps, user_n)
        if expected_gap is None:
            expected_gap = gap
    if catch_up_n is None:
        catch_up_n = catch_up_size(mean_sizes, mean_gaps)
    comparable = f"{disparity}-disparity VTAB-1k tasks" if disparity else "all VTAB-1k tasks"
    return SizeTrendInputs(
        series=series,
        mean_sizes=mean_sizes,
        mean_gaps=mean_gaps,
        user_n=user_n,
        expected_gap=expected_gap,
        extrapolated=extrapolated,
        catch_up_n=catch_up_n,
        comparable=comparable,
    )
