"""``vpt-advisor calibrate``: an FID similarity threshold fitted on VTAB-1k against a chosen reference.

Han et al. (ICLR 2024, Sec. 4.3, Fig. 3) observe that among *low-disparity* tasks (Natural and
Specialized), a larger FID to the pretraining data favours full finetuning; they print no threshold.
Here each task's FID against the reference (e.g. the user's ImageNet-21k statistics ``in21k``) is
measured on its ``train800val200`` images with ``engine.fid.run``, and :func:`fit_threshold` picks the
threshold that best separates the paper's FT-won tasks (SVHN, Patch Camelyon, Retinopathy) from the
VPT-won ones. The result is written with ``engine.fid.calibration.save_calibration`` and read by
``recommend`` whenever it measures FID against the same reference.

The fitting rule and the check of a fit live in ``engine.fid.calibration`` (one rule for the Table 19
default and every N here). Only verified FIDs are fitted (official Inception weights, a provenanced
reference: ``engine.fid.gates``); a task whose FID is unverified is reported and left out. Every N
level passes the same check (:func:`check_fit`: at least 3 tasks won by each method, a leave-one-task-out
accuracy above the majority rule) or is not written, and the file records the Inception weights
sha256, the reference sha256 and the N of every FID.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from benchmarks.vtab.layout import find_task_folder
from benchmarks.vtab.tasks import TASKS
from engine.config import FrozenModel
from engine.errors import ConfigError
from engine.fid.calibration import (
    MIN_TASKS_PER_SIDE,
    ThresholdFit,
    check_fit,
    fit_threshold,
    leave_one_out,
)
from engine.progress import ProgressCallback
from engine.vocab import FeatureDims, Side

if TYPE_CHECKING:
    from benchmarks.vtab.tasks import TaskSpec
    from engine.config.fid import FidConfig
    from engine.data.index import DatasetIndex
    from engine.fid.calibration import Calibration, CalibrationLevel

__all__ = ["MIN_TASKS_PER_SIDE", "ThresholdFit", "CalibrationRequest", "TaskFid", "CalibrationReport",
           "check_fit", "fit_threshold", "leave_one_out", "paper_low_disparity_winners", "run_calibration"]

log = logging.getLogger(__name__)

METHOD = "max-accuracy threshold on low-disparity VTAB-1k tasks (ties: midpoint of the widest gap)"
CALIBRATION_SIZES = (250, 500, 1000)
"""Our choice: sample sizes N at which each task's FID is stored (1,000 = all of train800val200), so that
``recommend`` compares a dataset of N' images at the largest of these N <= N' (FID depends on N)."""


def paper_low_disparity_winners() -> dict[str, Side]:
    """The paper's winner at 800/200 for every low-disparity task (Tables 1-2)."""
    return {k: t.winner_800 for k, t in TASKS.items() if t.disparity == "low"}


class CalibrationRequest(FrozenModel):
    """A resolved ``calibrate`` request."""

    root: Path = Field(description="VTAB-1k root (NOAH layout).")
    reference: str = Field("in21k", description="Reference statistics name or .npz path.")
    inception_weights: Path | None = Field(None, description="pytorch-fid Inception weights file.")
    device: str = Field("auto", description="Device spec.")
    batch_size: int | None = Field(None, ge=1, description="Inception batch size (None = automatic for the device).")
    dims: FeatureDims = Field(2048, description="Inception feature layer (the reference's dims; "
                                              "2048 = standard FID, what recommend measures).")
    workers: int = Field(0, ge=0, description="Decoding threads.")
    output: Path | None = Field(None, description="Calibration file (None = the default location).")
    list_file: str = Field("train800val200.txt", description="Images of each task the FID is measured on.")
    allow_unverified: bool = Field(False, description=(
        "Fit unverified FIDs too; the file is then marked verified=false and recommend refuses it."))


class TaskFid(FrozenModel):
    """One task's measured FID."""

    task: str = Field(description="Task key.")
    name: str = Field(description="Display name.")
    disparity: str = Field(description="low or high.")
    winner: str = Field(description="Paper winner at 800/200.")
    fid: float | None = Field(None, description=(
        "FID of all n_images images against the reference (None if not measured or unverified)."))
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
    from engine.errors import DatasetError

    problems = "; ".join(f"{r.task}: {r.problem}" for r in rows[:3] if r.problem)
    if any(r.problem and r.problem.startswith("FID unverified") for r in rows):
        raise DatasetError(f"no VTAB-1k task could be measured with a verified FID under {root} ({problems}; ...); "
                           "use pytorch-fid's official Inception weights and a reference with provenance, or "
                           "--allow-unverified to inspect a fit that recommend refuses")
    raise DatasetError(f"no VTAB-1k task could be measured under {root} ({problems}; ...); pass the folder "
                       "that holds the task folders in the NOAH layout")


def _levels(at_n: dict[int, dict[str, float]], smallest: int) -> tuple[list[CalibrationLevel], list[str]]:
    """One level per N below the smallest task size, each passing :func:`check_fit`; the notes say which did not."""
    from engine.fid.calibration import CalibrationLevel

    winners = paper_low_disparity_winners()
    levels, notes = [], []
    for n, level_fids in sorted(at_n.items()):
        if n >= smallest:
            continue
        try:
            lv = check_fit(fit_threshold(level_fids, winners), level_fids, winners)
        except ConfigError as exc:
            notes.append(f"N = {n} not written: {str(exc).replace('; nothing was written', '')}")
            continue
        levels.append(CalibrationLevel(n=n, threshold=lv.threshold, band=lv.band, task_fids=level_fids,
                                       loo_accuracy=lv.loo_accuracy))
    return levels, notes


def _calibration(request: CalibrationRequest, root: Path, fit: ThresholdFit, fids: dict[str, float],
                 at_n: dict[int, dict[str, float]], rows: list[TaskFid], provenance: dict[str, str]
                 ) -> Calibration:
    """The calibration file: the fit on all images (top level, N = the smallest task size) plus one per N."""
    from engine.fid.calibration import Calibration

    measured = [r for r in rows if r.fid is not None]
    sizes = [r.n_images for r in measured]
    levels, level_notes = _levels(at_n, min(sizes))
    uneven = sorted({r.task for r in measured if r.n_images != max(sizes)})
    return Calibration(
        reference=request.reference, threshold=fit.threshold, band=fit.band, task_fids=fids, method=METHOD,
        loo_accuracy=fit.loo_accuracy, majority_accuracy=fit.majority_accuracy,
        n=min(sizes), levels=levels, task_n={r.task: r.n_images for r in measured},
        verified="unverified" not in provenance,
        inception_sha256=provenance["inception_sha256"], reference_sha256=provenance["reference_sha256"],
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        notes=[f"fitted on {fit.n_tasks} low-disparity tasks, accuracy {fit.accuracy:.2f}, leave-one-task-out "
               f"accuracy {fit.loo_accuracy:.2f} (majority rule {fit.majority_accuracy:.2f})",
               f"FID on {request.list_file} of {root}, {request.dims}-d Inception features; smaller N: mean over "
               "random subsets of each task's features"]
        + ([f"misclassified: {', '.join(fit.misclassified)}"] if fit.misclassified else [])
        + ([f"tasks with fewer images than the others (skipped files): {', '.join(uneven)}"] if uneven else [])
        + level_notes
        + ([f"fitted on unverified FIDs (--allow-unverified: {provenance['unverified']}); recommend refuses this "
            "file"] if "unverified" in provenance else []))


def _full_weights_sha256(config: FidConfig) -> str:
    """The full sha256 of the Inception weights file in use ('' when there is no file: the extractor's prefix)."""
    from engine.fid.features import default_weights_path, weights_sha256

    path = Path(config.weights).expanduser() if config.weights is not None else default_weights_path()
    return weights_sha256(path) if path.is_file() else ""


def _task_index(root: Path, task: TaskSpec, list_file: str) -> tuple[DatasetIndex | None, str]:
    """The task's images (its list file under ``root``), or None and why not."""
    from engine.data.index import index_dataset
    from engine.errors import DatasetError

    folder = find_task_folder(root, task)
    list_path = folder / list_file if folder is not None else None
    if list_path is None or not list_path.is_file():
        return None, f"no {task.folder}/{list_file} under {root}"
    try:
        return index_dataset(list_path), ""
    except DatasetError as exc:
        return None, str(exc)


def run_calibration(request: CalibrationRequest, *,
                    on_progress: ProgressCallback | None = None) -> CalibrationReport:
    """Measure every task's FID against the reference, fit the threshold and save the calibration.

    Raises:
        DatasetError: the root is not a folder, or no task under it could be measured.
        ReferenceNotFoundError / WeightsNotFoundError: from ``engine.fid.run`` (messages say what to do).
        ConfigError: too few low-disparity tasks measured, or a fit no better than the majority rule
            (:func:`check_fit`); nothing is written then.
    """
    from engine.config.fid import FidConfig
    from engine.errors import DatasetError
    from engine.fid.calibration import save_calibration
    from engine.fid.gates import weights_digest
    from engine.fid.run import measure_fid_against_reference
    from engine.progress import report

    root = Path(request.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"VTAB-1k root {root} is not a folder; pass the folder holding the task folders")
    config = FidConfig(batch_size=request.batch_size, workers=request.workers, weights=request.inception_weights,
                       dims=request.dims)
    rows: list[TaskFid] = []
    warnings: list[str] = []
    fids: dict[str, float] = {}
    provenance: dict[str, str] = {}
    at_n: dict[int, dict[str, float]] = {n: {} for n in CALIBRATION_SIZES}
    for i, task in enumerate(TASKS.values()):
        row = dict(task=task.key, name=task.name, disparity=task.disparity, winner=task.winner_800)
        index, problem = _task_index(root, task, request.list_file)
        if index is None:
            rows.append(TaskFid(**row, problem=problem))
            continue
        m = measure_fid_against_reference(index, request.reference, config=config, device=request.device,
                                          at_n=CALIBRATION_SIZES)
        if m.status != "verified" and not request.allow_unverified:  # only verified FIDs are fitted (gates)
            rows.append(TaskFid(**row, fid=None, n_images=m.n_images, problem=(
                "FID unverified, not fitted: " + "; ".join(m.unverified_reasons))))
            continue
        if m.status != "verified":
            provenance["unverified"] = "; ".join(m.unverified_reasons)
        provenance.setdefault("inception_sha256", weights_digest(m.extractor))
        provenance.setdefault("reference_sha256", m.reference.npz_sha256)
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
    provenance["inception_sha256"] = _full_weights_sha256(config) or provenance.get("inception_sha256", "")
    cal = _calibration(request, root, fit, fids, at_n, rows, provenance)
    path = save_calibration(cal, request.output)
    return CalibrationReport(reference=request.reference, path=str(path), fit=fit, tasks=rows,
                             warnings=sorted(set(warnings)))
