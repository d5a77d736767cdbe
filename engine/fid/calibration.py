"""FID similarity calibration: the threshold that separates "similar" from "dissimilar" data.

Han et al. (ICLR 2024) state only a qualitative rule: for low-disparity tasks a larger FID to the
pretraining data (ImageNet-21k) tends to favour full finetuning. They print no threshold and no
per-task VTAB FID; the only FIDs they publish are the five FGVC datasets of Table 19.

:func:`derive_threshold` turns FIDs labelled with their winner into a threshold and a borderline
band, and is used both for the default (on Table 19) and by ``calibrate`` (on VTAB-1k FIDs measured
against a reference the user chose). The result is stored as a :class:`Calibration` in
``data_home()/calibration.json``; ``recommend`` uses it instead of the Table 19 default when its
``reference`` matches the reference the user's FID is measured against.

Pure module: no torch, no printing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator

from engine.config import FrozenModel
from engine.errors import ConfigError, UnknownTaskError
from engine.io import atomic_write_text
from engine.paper import get_vtab_task
from engine.paths import data_home
from engine.vocab import Side

__all__ = [
    "Calibration",
    "CalibrationLevel",
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


def derive_threshold(
    fids: Mapping[str, float], winners: Mapping[str, Side]
) -> tuple[float, tuple[float, float]]:
    """Derive an FID threshold and borderline band from datasets labelled with the winning method.

    The rule is ours (the paper gives none): with ``v`` the highest FID of a dataset VPT won and
    ``f`` the lowest FID of a dataset FT won, the band spans ``[min(v, f), max(v, f)]`` and the
    threshold is its midpoint. When the two groups separate (``v < f``, as in Table 19:
    NABirds 169.117 < Stanford Cars 182.487) the band is the unobserved gap between them; when they
    overlap, the band is the region where both winners occur. Only low-disparity datasets should be
    passed: the paper's FID rule applies to them only.

    Args:
        fids: dataset -> FID.
        winners: dataset -> "FT" or "VPT" (datasets missing from ``fids`` are ignored).

    Returns:
        ``(threshold, (band_low, band_high))``.

    Raises:
        ConfigError: fewer than one dataset won by each method.
    """
    vpt = [fids[k] for k, w in winners.items() if w == "VPT" and k in fids]
    ft = [fids[k] for k, w in winners.items() if w == "FT" and k in fids]
    if not vpt or not ft:
        raise ConfigError(
            f"a threshold needs at least one dataset won by each method (VPT: {len(vpt)}, FT: {len(ft)})"
        )
    v, f = max(vpt), min(ft)
    lo, hi = min(v, f), max(v, f)
    return (lo + hi) / 2.0, (lo, hi)


def default_calibration_path() -> Path:
    """``data_home()/calibration.json`` (``VPT_ADVISOR_HOME`` overrides the data home)."""
    return data_home() / CALIBRATION_FILE


def load_calibration(path: Path | None = None) -> Calibration | None:
    """Read a calibration file; ``None`` when no path is given and the default file does not exist.

    Raises:
        ConfigError: an explicit ``path`` does not exist or is not a file (a typo must not let the
            default threshold decide silently), or the file is not a valid calibration.
    """
    if path is not None and not Path(path).is_file():
        raise ConfigError(
            f"calibration file {path} does not exist or is not a file; check the path, or create one with "
            "'vpt-advisor calibrate VTAB_ROOT --output FILE'"
        )
    path = default_calibration_path() if path is None else Path(path)
    if not path.is_file():
        return None
    try:
        return Calibration.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"{path}: not a valid calibration file ({detail}); delete it or re-run 'vpt-advisor calibrate'"
        ) from exc


def save_calibration(cal: Calibration, path: Path | None = None) -> Path:
    """Write a calibration atomically (temporary file + rename) and return its path."""
    path = default_calibration_path() if path is None else Path(path)
    atomic_write_text(path, json.dumps(cal.model_dump(mode="json"), indent=2) + "\n")
    return path
