"""``vpt-advisor calibrate``: an FID similarity threshold fitted on VTAB-1k against a chosen reference.

Han et al. (ICLR 2024, Sec. 4.3, Fig. 3) observe that among *low-disparity* tasks (Natural and
Specialized), a larger FID to the pretraining data favours full finetuning; they print no threshold.
Here each task's FID against the reference (e.g. the user's ImageNet-21k statistics ``in21k``) is
measured on its ``train800val200`` images with ``engine.fid.run``, and :func:`fit_threshold` picks the
threshold that best separates the paper's FT-won tasks (SVHN, Patch Camelyon, Retinopathy) from the
VPT-won ones. The result is written with ``engine.fid.calibration.save_calibration`` and read by
``recommend`` whenever it measures FID against the same reference.

The fitting rule is ours: predict FT when ``FID > threshold``; candidates are the midpoints between
consecutive distinct FIDs; the most accurate candidate wins and ties go to the midpoint of the widest
gap. The *band* (where ``recommend`` says "run a pilot") is the hull of that gap and the FIDs of the
tasks the threshold misclassifies, i.e. the interval where the evidence is ambiguous.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from benchmarks.vtab.layout import find_task_folder
from benchmarks.vtab.tasks import TASKS
from engine.config import FrozenModel
from engine.config.fid import FidConfig
from engine.data.index import index_dataset
from engine.errors import ConfigError, DatasetError
from engine.fid.calibration import Calibration, CalibrationLevel, save_calibration
from engine.progress import ProgressCallback, report
from engine.vocab import FeatureDims, Side

__all__ = ["MIN_TASKS_PER_SIDE", "ThresholdFit", "CalibrationRequest", "TaskFid", "CalibrationReport",
           "check_fit", "fit_threshold", "leave_one_out", "paper_low_disparity_winners", "run_calibration"]

log = logging.getLogger(__name__)

MIN_TASKS_PER_SIDE = 3
"""A fit needs at least this many FT-won and VPT-won tasks (our rule; the paper has 3 FT-won low-disparity
tasks at 800/200, SVHN, Patch Camelyon and Retinopathy, so every one of them must be measured)."""

METHOD = "max-accuracy threshold on low-disparity VTAB-1k tasks (ties: midpoint of the widest gap)"
CALIBRATION_SIZES = (250, 500, 1000)
"""Our choice: sample sizes N at which each task's FID is stored (1,000 = all of train800val200), so that
``recommend`` compares a dataset of N' images at the largest of these N <= N' (FID depends on N)."""


class ThresholdFit(FrozenModel):
    """A fitted threshold and how well it separates the given tasks."""

    threshold: float = Field(description="Predict FT when FID > threshold.")
    band: tuple[float, float] = Field(description="Ambiguous interval (contains the threshold).")
    accuracy: float = Field(description="Fraction of tasks the threshold classifies correctly.")
    n_tasks: int = Field(description="Tasks used.")
    misclassified: list[str] = Field(default_factory=list, description="Tasks on the wrong side.")
    loo_accuracy: float | None = Field(default=None, description=(
        "Leave-one-task-out accuracy: each task predicted by a threshold fitted on the others (None when not "
        "computed)."))
    majority_accuracy: float = Field(default=0.0, description="Accuracy of always predicting the more common "
                                     "winner.")
    n_ft: int = Field(default=0, description="FT-won tasks used.")
    n_vpt: int = Field(default=0, description="VPT-won tasks used.")


def paper_low_disparity_winners() -> dict[str, Side]:
    """The paper's winner at 800/200 for every low-disparity task (Tables 1-2)."""
    return {k: t.winner_800 for k, t in TASKS.items() if t.disparity == "low"}


def fit_threshold(fids: Mapping[str, float], winners: Mapping[str, str]) -> ThresholdFit:
    """Fit the FID threshold that best separates FT-won (above) from VPT-won (below) tasks.

    Args:
        fids: task -> FID (tasks without a winner are ignored).
        winners: task -> ``"FT"`` or ``"VPT"``.

    Returns:
        The :class:`ThresholdFit`.

    Raises:
        ConfigError: fewer than one task per winner, or a non-finite FID.
    """
    points = sorted((float(fids[k]), k, winners[k]) for k in fids if k in winners)
    if any(not (f == f and abs(f) != float("inf")) for f, _, _ in points):
        raise ConfigError("every FID must be a finite number")
    n_ft = sum(w == "FT" for _, _, w in points)
    if n_ft == 0 or n_ft == len(points):
        raise ConfigError(f"a threshold needs tasks won by each method with an FID (FT: {n_ft}, "
                          f"VPT: {len(points) - n_ft}); measure more low-disparity tasks")
    values = sorted({f for f, _, _ in points})
    best: tuple[float, float, float, float] | None = None  # (accuracy, gap, lo, hi)
    for lo, hi in zip(values, values[1:], strict=False):
        t = (lo + hi) / 2.0
        acc = sum((f > t) == (w == "FT") for f, _, w in points) / len(points)
        cand = (acc, hi - lo, lo, hi)
        if best is None or cand[:2] > best[:2]:
            best = cand
    if best is None:
        raise ConfigError("every task has the same FID; a threshold cannot separate them")
    acc, _gap, lo, hi = best
    threshold = (lo + hi) / 2.0
    wrong = [(f, k) for f, k, w in points if (f > threshold) != (w == "FT")]
    band_lo = min([lo] + [f for f, _ in wrong])
    band_hi = max([hi] + [f for f, _ in wrong])
    return ThresholdFit(threshold=threshold, band=(band_lo, band_hi), accuracy=acc, n_tasks=len(points),
                        misclassified=[k for _, k in wrong], majority_accuracy=max(n_ft, len(points) - n_ft)
                        / len(points), n_ft=n_ft, n_vpt=len(points) - n_ft)


def leave_one_out(fids: Mapping[str, float], winners: Mapping[str, str]) -> float:
    """Leave-one-task-out accuracy: predict each task with a threshold fitted on the other tasks.

    A task whose removal leaves no task of one winner cannot be predicted and counts as a miss.
    """
    keys = [k for k in fids if k in winners]
    right = 0
    for held in keys:
        rest = {k: fids[k] for k in keys if k != held}
        try:
            fit = fit_threshold(rest, winners)
        except ConfigError:
            continue
        right += (fids[held] > fit.threshold) == (winners[held] == "FT")
    return right / len(keys) if keys else 0.0


def check_fit(fit: ThresholdFit, fids: Mapping[str, float], winners: Mapping[str, str]) -> ThresholdFit:
    """Refuse a weak fit; return it with its leave-one-out accuracy.

    Raises:
        ConfigError: fewer than 3 tasks won by either method, or a leave-one-task-out accuracy not above
            the majority rule (always predicting the more common winner).
    """
    if min(fit.n_ft, fit.n_vpt) < MIN_TASKS_PER_SIDE:
        raise ConfigError(
            f"calibration refused: it needs at least {MIN_TASKS_PER_SIDE} measured low-disparity tasks won by each "
            f"method (FT: {fit.n_ft}, VPT: {fit.n_vpt}); measure more tasks (the FT-won ones are svhn, "
            "patch_camelyon and retinopathy); nothing was written")
    loo = leave_one_out(fids, winners)
    if loo <= fit.majority_accuracy:
        raise ConfigError(
            f"calibration refused: leave-one-task-out accuracy {loo:.2f} is not above the "
            f"{fit.majority_accuracy:.2f} of always predicting the more common winner, so these FIDs do not "
            "separate FT-won from VPT-won tasks; nothing was written")
    return fit.model_copy(update={"loo_accuracy": loo})


class CalibrationRequest(FrozenModel):
    """A resolved ``calibrate`` request."""

    root: Path = Field(description="VTAB-1k root (NOAH layout).")
    reference: str = Field("in21k", description="Reference statistics name or .npz path.")
    inception_weights: Path | None = Field(None, description="pytorch-fid Inception weights file.")
    device: str = Field("auto", description="Device spec.")
    batch_size: int = Field(50, ge=1, description="Inception batch size.")
    dims: FeatureDims = Field(2048, description="Inception feature layer (the reference's dims; "
                                              "2048 = standard FID, what recommend measures).")
    workers: int = Field(0, ge=0, description="Decoding threads.")
    output: Path | None = Field(None, description="Calibration file (None = the default location).")
    list_file: str = Field("train800val200.txt", description="Images of each task the FID is measured on.")


class TaskFid(FrozenModel):
    """One task's measured FID."""

    task: str = Field(description="Task key.")
    name: str = Field(description="Display name.")
    disparity: str = Field(description="low or high.")
    winner: str = Field(description="Paper winner at 800/200.")
    fid: float | None = Field(None,
                              description="FID of all n_images images against the reference (None if not measured).")
    n_images: int = Field(0, description="Images used.")
    fid_at_n: dict[int, float] = Field(default_factory=dict, description="N -> FID at N images (subset mean).")
    problem: str | None = Field(None, description="Why the task was not measured.")
    predicted: str | None = Field(None, description="FT/VPT by the fitted threshold (low disparity only).")


class CalibrationReport(FrozenModel):
    """What ``calibrate`` prints and where the calibration went."""

    reference: str = Field(description="Reference used.")
    path: str = Field(description="Calibration file written.")
    fit: ThresholdFit = Field(description="The fitted threshold.")
    tasks: list[TaskFid] = Field(description="Per-task FIDs in paper order.")
    warnings: list[str] = Field(default_factory=list, description="FID warnings (preprocessing, extractor).")


def _check_measured(fids: dict[str, float], rows: list[TaskFid], root: Path) -> None:
    """Every task failed: say why, instead of "too few tasks won by each method"."""
    if fids:
        return

    problems = "; ".join(f"{r.task}: {r.problem}" for r in rows[:3] if r.problem)
    raise DatasetError(f"no VTAB-1k task could be measured under {root} ({problems}; ...); pass the folder "
                       "that holds the task folders in the NOAH layout")


def _calibration(request: CalibrationRequest, root: Path, fit: ThresholdFit, fids: dict[str, float],
                 at_n: dict[int, dict[str, float]], rows: list[TaskFid]) -> Calibration:
    """The calibration file: the fit on all images (top level, N = the smallest task size) plus one per N."""
    sizes = [r.n_images for r in rows if r.fid is not None]
    levels = []
    for n, level_fids in sorted(at_n.items()):
        if sizes and n < min(sizes):
            lv = fit_threshold(level_fids, paper_low_disparity_winners())
            levels.append(CalibrationLevel(n=n, threshold=lv.threshold, band=lv.band, task_fids=level_fids))
    uneven = sorted({r.task for r in rows if r.fid is not None and r.n_images != max(sizes)}) if sizes else []
    return Calibration(
        reference=request.reference, threshold=fit.threshold, band=fit.band, task_fids=fids, method=METHOD,
        loo_accuracy=fit.loo_accuracy, majority_accuracy=fit.majority_accuracy,
        n=min(sizes) if sizes else None, levels=levels,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        notes=[f"fitted on {fit.n_tasks} low-disparity tasks, accuracy {fit.accuracy:.2f}, leave-one-task-out "
               f"accuracy {fit.loo_accuracy:.2f} (majority rule {fit.majority_accuracy:.2f})",
               f"FID on {request.list_file} of {root}, {request.dims}-d Inception features; smaller N: mean over "
               "random subsets of each task's features"]
        + ([f"misclassified: {', '.join(fit.misclassified)}"] if fit.misclassified else [])
        + ([f"tasks with fewer images than the others (skipped files): {', '.join(uneven)}"] if uneven else []))


def run_calibration(request: CalibrationRequest, *,
                    on_progress: ProgressCallback | None = None) -> CalibrationReport:
    """Measure every task's FID against the reference, fit the threshold and save the calibration.

    Raises:
        DatasetError: the root is not a folder, or no task under it could be measured.
        ReferenceNotFoundError / WeightsNotFoundError: from ``engine.fid.run`` (messages say what to do).
        ConfigError: too few low-disparity tasks measured, or a fit no better than the majority rule
            (:func:`check_fit`); nothing is written then.
    """
    from engine.fid.run import measure_fid_against_reference

    root = Path(request.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"VTAB-1k root {root} is not a folder; pass the folder holding the task folders")
    config = FidConfig(batch_size=request.batch_size, workers=request.workers, weights=request.inception_weights,
                       dims=request.dims)
    rows: list[TaskFid] = []
    warnings: list[str] = []
    fids: dict[str, float] = {}
    at_n: dict[int, dict[str, float]] = {n: {} for n in CALIBRATION_SIZES}
    for i, task in enumerate(TASKS.values()):
        row = dict(task=task.key, name=task.name, disparity=task.disparity, winner=task.winner_800)
        folder = find_task_folder(root, task)
        list_path = folder / request.list_file if folder is not None else None
        if list_path is None or not list_path.is_file():
            rows.append(TaskFid(**row, problem=f"no {task.folder}/{request.list_file} under {root}"))
            continue
        try:
            index = index_dataset(list_path)
        except DatasetError as exc:
            rows.append(TaskFid(**row, problem=str(exc)))
            continue
        m = measure_fid_against_reference(index, request.reference, config=config, device=request.device,
                                          at_n=CALIBRATION_SIZES)
        fids[task.key] = m.fid
        for n in CALIBRATION_SIZES:
            at_n[n][task.key] = m.estimate(n).fid
        warnings += [f"{task.key}: {w}" for w in m.warnings]
        rows.append(TaskFid(**row, fid=m.fid, n_images=m.n_images,
                            fid_at_n={n: m.estimate(n).fid for n in CALIBRATION_SIZES}))
        report(on_progress, i + 1, len(TASKS))
    _check_measured(fids, rows, root)
    winners = paper_low_disparity_winners()
    fit = check_fit(fit_threshold(fids, winners), fids, winners)
    rows = [r.model_copy(update={"predicted": ("FT" if r.fid > fit.threshold else "VPT")})
            if r.fid is not None and r.disparity == "low" else r for r in rows]
    cal = _calibration(request, root, fit, fids, at_n, rows)
    path = save_calibration(cal, request.output)
    return CalibrationReport(reference=request.reference, path=str(path), fit=fit, tasks=rows,
                             warnings=sorted(set(warnings)))
