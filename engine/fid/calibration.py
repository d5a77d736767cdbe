"""FID similarity calibration: the threshold that separates "similar" from "dissimilar" data.

Han et al. (ICLR 2024) state only a qualitative rule: for low-disparity tasks a larger FID to the
pretraining data (ImageNet-21k) tends to favour full finetuning. They print no threshold and no
per-task VTAB FID; the only FIDs they publish are the five FGVC datasets of Table 19.

:func:`fit_threshold` is the one fitting rule (ours): FIDs labelled with their winner give a threshold
and a borderline band; it makes the default (on Table 19, :func:`derive_threshold`) and every level of
``calibrate`` (on VTAB-1k FIDs measured against a reference the user chose), and :func:`check_fit`
refuses a weak fit the same way at every N. The result is stored as a :class:`Calibration` in
``data_home()/calibration.json`` with its provenance (Inception weights and reference sha256, the N of
every FID); :func:`calibration_problem` is the one check of whether a calibration may decide, used by
``recommend`` (it refuses a file without provenance or whose hashes differ from those in use, and
ignores one for another reference).

Pure module: no torch, no printing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from engine.config import FrozenModel
from engine.data.imageio import display_path
from engine.errors import ConfigError, UnknownTaskError
from engine.io import atomic_write_text
from engine.paper import get_vtab_task
from engine.paths import data_home
from engine.vocab import Side

__all__ = [
    "MIN_TASKS_PER_SIDE",
    "Calibration",
    "CalibrationLevel",
    "ThresholdFit",
    "calibration_problem",
    "check_fit",
    "fit_threshold",
    "leave_one_out",
    "similarity_side",
    "small_n_bias",
    "default_calibration_path",
    "derive_threshold",
    "load_calibration",
    "save_calibration",
]

CALIBRATION_FILE = "calibration.json"


def _canonical_fids(value: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, fid in value.items():
        try:
            key = get_vtab_task(name).key
        except UnknownTaskError as exc:  # pydantic turns ValueError into a ValidationError
            raise ValueError(str(exc)) from exc
        if not math.isfinite(float(fid)) or float(fid) < 0:
            raise ValueError(f"task {name!r}: FID {fid!r} is not a finite number >= 0")
        out[key] = float(fid)
    return out


def _check_threshold(threshold: float, band: tuple[float, float]) -> None:
    if not all(math.isfinite(v) for v in (threshold, *band)):
        raise ValueError(f"threshold {threshold!r} and band {band!r} must be finite numbers")
    if not band[0] <= threshold <= band[1]:
        raise ValueError(f"band {band} must contain the threshold {threshold}")


class CalibrationLevel(FrozenModel):
    """Threshold and task FIDs measured at one sample size N (FID depends on N: compare at equal N)."""

    n: int = Field(ge=2, description="Images per task at which these FIDs were measured.")
    threshold: float = Field(description="FID above which data counts as dissimilar, at this N.")
    band: tuple[float, float] = Field(description="Borderline band (low, high) at this N.")
    task_fids: dict[str, float] = Field(default_factory=dict, description="VTAB-1k task key -> FID at this N.")
    loo_accuracy: float | None = Field(default=None, ge=0.0, le=1.0, description=(
        "Leave-one-task-out accuracy of this level's fit (check_fit passed at this N)."))

    @field_validator("task_fids")
    @classmethod
    def _canonical_task_keys(cls, value: dict[str, float]) -> dict[str, float]:
        return _canonical_fids(value)

    @model_validator(mode="after")
    def _band_contains_threshold(self) -> CalibrationLevel:
        _check_threshold(self.threshold, self.band)
        return self


class Calibration(FrozenModel):
    """A similarity threshold on FID, tied to the reference statistics the FIDs were measured against.

    The top-level ``threshold``/``band``/``task_fids`` were measured at ``n`` images per task;
    ``levels`` holds the same at other sample sizes, so a smaller dataset is compared at its own N
    (see :meth:`at_n`). ``n`` is None only in files written before N was recorded.
    """

    reference: str = Field(description="Name of the reference statistics (e.g. 'in21k') the FIDs are against.")
    threshold: float = Field(description="FID above which data counts as dissimilar to the reference.")
    band: tuple[float, float] = Field(
        description="Borderline band (low, high), exclusive: an FID strictly inside it gets 'run a pilot'."
    )
    task_fids: dict[str, float] = Field(
        default_factory=dict, description="VTAB-1k task key -> FID against the same reference."
    )
    method: str = Field(default="", description="How the threshold was derived.")
    created: str = Field(default="", description="ISO-8601 creation time.")
    notes: list[str] = Field(default_factory=list, description="Free-text provenance notes.")
    loo_accuracy: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Leave-one-task-out accuracy of the fit (None: written before 'calibrate' checked its fits; "
        "recommend then ignores the file).",
    )
    majority_accuracy: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Accuracy of always predicting the more common winner."
    )

    n: int | None = Field(default=None, ge=2, description=(
        "Images per task at which task_fids and the threshold were measured (None: not recorded)."))
    levels: list[CalibrationLevel] = Field(default_factory=list, description="The same at other sample sizes N.")
    inception_sha256: str = Field(default="", description=(
        "sha256 of the Inception weights every FID was measured with ('' = not recorded: recommend refuses it)."))
    reference_sha256: str = Field(default="", description=(
        "sha256 of the reference .npz every FID was measured against ('' = not recorded: recommend refuses it)."))
    task_n: dict[str, int] = Field(default_factory=dict, description="VTAB-1k task key -> images its top-level FID "
                                   "was measured on.")
    verified: bool = Field(default=False, description=(
        "True when every FID fitted was verified (official weights, a provenanced reference; engine.fid.gates)."))

    @field_validator("task_fids")
    @classmethod
    def _canonical_task_keys(cls, value: dict[str, float]) -> dict[str, float]:
        return _canonical_fids(value)

    @model_validator(mode="after")
    def _band_contains_threshold(self) -> Calibration:
        _check_threshold(self.threshold, self.band)
        return self

    def sizes(self) -> list[int]:
        """Every N this calibration has a threshold for, ascending."""
        return sorted({lv.n for lv in self.levels} | ({self.n} if self.n else set()))

    def at_n(self, n_available: int) -> Calibration:
        """This calibration with the threshold of the largest N <= ``n_available`` on top.

        A dataset of ``n_available`` images is then compared at that N (its FID averaged over
        subsets of N images). When every recorded N exceeds ``n_available``, the smallest is used
        and the caller must say that the comparison is not at equal N. Without recorded N the
        calibration is returned unchanged.
        """
        if self.n is None:
            return self
        options = [CalibrationLevel(n=self.n, threshold=self.threshold, band=self.band, task_fids=self.task_fids),
                   *self.levels]
        fitting = [lv for lv in options if lv.n <= n_available]
        pick = max(fitting, key=lambda lv: lv.n) if fitting else min(options, key=lambda lv: lv.n)
        return self.model_copy(update={"n": pick.n, "threshold": pick.threshold, "band": pick.band,
                                       "task_fids": dict(pick.task_fids)})


MIN_TASKS_PER_SIDE = 3
"""A calibration needs at least this many FT-won and VPT-won tasks at every N (our rule; the paper has 3 FT-won
low-disparity tasks at 800/200, SVHN, Patch Camelyon and Retinopathy, so every one of them must be measured)."""


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


def fit_threshold(fids: Mapping[str, float], winners: Mapping[str, str]) -> ThresholdFit:
    """The one fitting rule (ours; the paper gives none): predict FT when ``FID > threshold``.

    Candidates are the midpoints between consecutive distinct FIDs; the most accurate wins and ties go
    to the widest gap. The band (where ``recommend`` says "run a pilot") is the hull of that gap and the
    FIDs of the tasks the threshold misclassifies. With separable FIDs (Table 19: NABirds 169.117 VPT <
    Stanford Cars 182.487 FT) it is the midpoint of the unobserved gap, and the band is that gap.

    Args:
        fids: task -> FID (tasks without a winner are ignored).
        winners: task -> ``"FT"`` or ``"VPT"``.

    Raises:
        ConfigError: fewer than one task per winner, or a non-finite FID.
    """
    points = sorted((float(fids[k]), k, winners[k]) for k in fids if k in winners)
    if any(not math.isfinite(f) for f, _, _ in points):
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
    """Refuse a weak fit; return it with its leave-one-out accuracy (the same check at every N).

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


def derive_threshold(
    fids: Mapping[str, float], winners: Mapping[str, Side]
) -> tuple[float, tuple[float, float]]:
    """``(threshold, band)`` by :func:`fit_threshold` (the default threshold from Table 19 uses this).

    Raises:
        ConfigError: fewer than one dataset won by each method.
    """
    fit = fit_threshold(fids, winners)
    return fit.threshold, fit.band


def calibration_problem(cal: Calibration, reference: str, *, inception_sha256: str = "",
                        reference_sha256: str = "") -> tuple[Literal["ok", "other-reference", "refuse"], str]:
    """The one check of whether a calibration may decide.

    Returns ``("other-reference", why)`` for a calibration measured against another reference (it is
    ignored), ``("refuse", what is missing)`` for one without provenance (leave-one-out accuracy, N,
    Inception weights and reference sha256, verified FIDs) or whose hashes differ from the weights and
    reference in use (given as full or prefix hex digests; '' = not known, not compared), else
    ``("ok", "")``.
    """
    if cal.reference not in (reference, Path(reference).stem):
        return "other-reference", f"the calibration file is for reference '{cal.reference}', not '{reference}'"
    missing = [what for what, ok in (
        ("its leave-one-task-out accuracy", cal.loo_accuracy is not None), ("the N of its FIDs", cal.n is not None),
        ("the Inception weights sha256", bool(cal.inception_sha256)),
        ("the reference sha256", bool(cal.reference_sha256)), ("that its FIDs were verified", cal.verified))
        if not ok]
    if missing:
        return "refuse", (f"the calibration file does not record {', '.join(missing)}: it was not written by this "
                          "version of 'vpt-advisor calibrate'; re-run calibrate, or remove the file")
    if inception_sha256 and not _same_digest(cal.inception_sha256, inception_sha256):
        return "refuse", (f"the calibration was measured with Inception weights sha256 {cal.inception_sha256[:12]}..., "
                          f"not the {inception_sha256[:12]}... in use; re-run calibrate with these weights")
    if reference_sha256 and not _same_digest(cal.reference_sha256, reference_sha256):
        return "refuse", (f"the calibration was measured against reference statistics sha256 "
                          f"{cal.reference_sha256[:12]}..., not the {reference_sha256[:12]}... of '{reference}' "
                          "in use; re-run calibrate against this reference")
    return "ok", ""


def _same_digest(a: str, b: str) -> bool:
    n = min(len(a), len(b))
    return n > 0 and a[:n].lower() == b[:n].lower()


MAX_CALIBRATION_BYTES = 16 * 2**20
"""A calibration is a few KiB of JSON; anything this large is another file given by mistake (not read)."""


def default_calibration_path() -> Path:
    """``data_home()/calibration.json`` (``VPT_ADVISOR_HOME`` overrides the data home)."""
    return data_home() / CALIBRATION_FILE


def load_calibration(path: Path | None = None) -> Calibration | None:
    """Read a calibration file; ``None`` when no path is given and the default file does not exist.

    Raises:
        ConfigError: an explicit ``path`` does not exist or is not a file (a typo must not let the
            default threshold decide silently), or the file is not a valid calibration.
    """
    named = path is not None
    if path is not None and not Path(path).is_file():
        raise ConfigError(
            f"calibration file {display_path(path)} does not exist or is not a file; check the path, or create one "
            "with 'vpt-advisor calibrate VTAB_ROOT --output FILE'"
        )
    path = default_calibration_path() if path is None else Path(path)
    if not path.is_file():
        return None
    # a file the user named is their input: never advise deleting it; only our own default file may be replaced
    fix = ("pass a file written by 'vpt-advisor calibrate VTAB_ROOT --output FILE'" if named
           else "re-run 'vpt-advisor calibrate' to replace it (or move it away)")
    try:
        if path.stat().st_size > MAX_CALIBRATION_BYTES:
            raise ValueError(f"larger than {MAX_CALIBRATION_BYTES // 2**20} MiB")
        return Calibration.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError, UnicodeDecodeError, OSError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{display_path(path)}: not a valid calibration file ({detail}); {fix}") from exc


def save_calibration(cal: Calibration, path: Path | None = None) -> Path:
    """Write a calibration atomically (temporary file + rename) and return its path."""
    path = default_calibration_path() if path is None else Path(path)
    atomic_write_text(path, json.dumps(cal.model_dump(mode="json"), indent=2) + "\n")
    return path


SMALL_N_BIAS_FACTOR = 2.0
"""Ours: the small-N bias of an FID of N images is taken as twice FID(N/2) - FID(N). Under FID_N = FID_inf + c/N
the bias at N equals that difference; on 2048-d features at N <= 2,000 the bias decays slower than 1/N (on
Gaussian features with a 1/i spectrum it is 14.7 / 9.0 / 4.0 points at N = 500 / 1,000 / 2,000 while the
difference stays near 5-6), so it is doubled (``benchmarks.perf.fid_small_n`` shows the effect)."""


def small_n_bias(fid_n: float, fid_half: float) -> float:
    """Estimated upward bias of an FID of N images, from the same features' FID at N/2 (subset mean); >= 0."""
    return max(0.0, SMALL_N_BIAS_FACTOR * (fid_half - fid_n))


def similarity_side(fid: float, threshold: float, band: tuple[float, float], *,
                    interval: tuple[float, float] | None = None,
                    bias: float = 0.0) -> Literal["similar", "dissimilar", "borderline"]:
    """Which side of the threshold an FID is on (the one rule, used by ``recommend`` and the benchmark).

    ``borderline`` strictly inside the band (exclusive, so the datasets it was derived from keep their
    side), or when the bootstrap ``interval`` straddles the threshold. FID is biased upwards at small N,
    so where the threshold has no N (Table 19, ``--fid-threshold``) the caller passes the estimated bias
    (:func:`small_n_bias`): the data is then dissimilar only when ``fid - bias`` is still beyond the band
    (the band's upper end is widened by the bias); similar stays ``fid <= threshold``, which the bias
    only makes safer.
    """
    lo, hi = band
    if lo < fid < hi or (interval is not None and interval[0] < threshold < interval[1]):
        return "borderline"
    if fid <= threshold:
        return "similar"
    if fid - bias >= hi and fid - bias > threshold:
        return "dissimilar"
    return "borderline"
