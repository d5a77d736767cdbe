"""The FT+VPT ensemble on the pilot's comparison images.

Mai et al. (2024, "Lessons learned from a unifying empirical study of parameter-efficient transfer
learning in visual recognition") find that methods reaching similar accuracy make different mistakes,
so an ensemble of them can beat each. The pilot already scores both methods on the same held-out
images, so it can measure that for the user's data at no extra training.

Ensemble member ``j`` averages the softmax probabilities of FT's and VPT's ``j``-th seed (in seed order)
on every comparison image; its prediction is the argmax. It is compared with the *better* single
method (higher comparison accuracy; picking the better one on the same images favours the single
method, so the comparison is conservative for the ensemble) with the verdict's seed-aware interval
(``engine.train.verdict.seed_aware_difference``). An ensemble member shares its seed with one
single-method run, which the interval treats as independent: that overstates the variance, again
against the ensemble. It is offered only when its 95 % interval lies above zero with at least two
members (the verdict's rule: one seed cannot measure the seed spread).

Cost: two forward passes per image and two backbones at inference (the finetuned one, and the frozen
pretrained one VPT's prompts and head run on); when the FT model is kept anyway, the ensemble stores
only VPT's prompts and head besides it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from engine.config import FrozenModel
from engine.train.power import ASSUMED_SEED_SD
from engine.train.verdict import SeedAwareDifference, seed_aware_difference

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["EnsembleCost", "EnsembleResult", "ensemble_result", "unavailable", "save_probs", "load_probs",
           "PROBS_SUFFIX"]

logger = logging.getLogger(__name__)

PROBS_SUFFIX = ".probs.npy"
"""Per-trial sidecar of the trial's JSON in the pilot store: float32 ``(comparison images, classes)``."""


class EnsembleCost(FrozenModel):
    """What the ensemble costs compared with one model."""

    forward_passes: int = Field(2, description="Forward passes per image (one per member).")
    backbones: int = Field(2, description="Backbones in memory at inference (finetuned + frozen pretrained).")
    params_at_inference: int = Field(description="Parameters both members hold together.")
    params_beyond_ft: int = Field(description="Parameters stored besides the FT model: VPT's prompts and head "
                                  "(its backbone is the pretrained one, which is not retrained).")


class EnsembleResult(FrozenModel):
    """FT+VPT ensemble (mean of the two methods' probabilities) on the comparison images."""

    available: bool = Field(description="False when the probabilities it needs are missing (reason says why).")
    reason: str = Field("", description="Why the ensemble is unavailable.")
    members: tuple[str, str] | None = Field(None, description="(FT method, VPT method).")
    pairs: int = Field(0, description="Ensemble members: seed pairs of the two methods.")
    accuracy: float | None = Field(None, description="Mean accuracy (%) of the ensemble over seed pairs.")
    accuracy_std: float | None = Field(None, description="Sample std (%) over seed pairs (0 with one).")
    pair_accuracies: list[float] = Field(default_factory=list, description="Accuracy (%) of each ensemble member.")
    best_single: str | None = Field(None, description="The single method with the higher comparison accuracy.")
    best_single_accuracy: float | None = None
    versus_best: SeedAwareDifference | None = Field(None, description="Ensemble minus the better single method.")
    offered: bool = Field(False, description="True when the 95 % interval lies above 0 with at least 2 pairs.")
    cost: EnsembleCost | None = None


def unavailable(reason: str) -> EnsembleResult:
    """An ensemble that could not be computed, and why."""
    return EnsembleResult(available=False, reason=reason)


def _correct(probs: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    import numpy as np

    return np.asarray(probs.argmax(axis=1) == labels)


def ensemble_result(ft_probs: list[npt.NDArray[np.float32]], vpt_probs: list[npt.NDArray[np.float32]],
                    labels: npt.ArrayLike, *, ft_method: str, vpt_method: str, ft_params: tuple[int, int],
                    vpt_params: tuple[int, int], assumed_seed_sd: float = ASSUMED_SEED_SD) -> EnsembleResult:
    """The ensemble of seed-paired probabilities ``(images, classes)`` against the better single method.

    Args:
        ft_probs: FT's softmax probabilities per seed (seed order), each ``(n, classes)``.
        vpt_probs: VPT's, the same way.
        labels: the comparison images' labels ``(n,)``.
        ft_method: FT's method name.
        vpt_method: VPT's method name.
        ft_params: FT's (trainable, total) parameters.
        vpt_params: VPT's (trainable, total) parameters.
        assumed_seed_sd: the seed SD floor of the interval (the plan's).
    """
    import numpy as np

    y = np.asarray(labels, dtype=np.int64)
    pairs = min(len(ft_probs), len(vpt_probs))
    if pairs < 1 or len(y) < 1:
        return unavailable("the pilot has no scored comparison images for both methods")
    if any(p.shape != (len(y), ft_probs[0].shape[1]) for p in [*ft_probs, *vpt_probs]):
        return unavailable("the stored probabilities do not match the comparison images (a changed store)")
    ft = np.stack([_correct(p, y) for p in ft_probs])
    vpt = np.stack([_correct(p, y) for p in vpt_probs])
    ens = np.stack([_correct(((ft_probs[j] + vpt_probs[j]) / 2).astype(np.float32), y)
                    for j in range(pairs)])
    best_name, best = (ft_method, ft) if ft.mean() >= vpt.mean() else (vpt_method, vpt)
    versus = seed_aware_difference(best, ens, baseline_name=best_name, other_name=f"{ft_method}+{vpt_method}",
                                   assumed_seed_sd=assumed_seed_sd)
    accs = 100.0 * ens.mean(axis=1)
    cost = EnsembleCost(params_at_inference=ft_params[1] + vpt_params[1], params_beyond_ft=vpt_params[0])
    return EnsembleResult(
        available=True, members=(ft_method, vpt_method), pairs=pairs, accuracy=float(accs.mean()),
        accuracy_std=float(accs.std(ddof=1)) if pairs > 1 else 0.0, pair_accuracies=[float(a) for a in accs],
        best_single=best_name,
        best_single_accuracy=float(100.0 * best.mean()), versus_best=versus,
        offered=pairs >= 2 and versus.ci95[0] > 0, cost=cost)


def save_probs(path: Path, probs: npt.NDArray[np.float32]) -> bool:
    """Write a trial's probabilities next to its JSON (atomic); False when the disk refuses."""
    import io

    import numpy as np

    from engine.io import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.asarray(probs, dtype=np.float32), allow_pickle=False)
    try:
        atomic_write_bytes(path, buf.getvalue())
        return True
    except OSError as exc:
        logger.warning("cannot save comparison probabilities %s (%s): a rerun has no ensemble for this trial",
                       path.name, exc.strerror or exc)
        return False


def load_probs(path: Path) -> npt.NDArray[np.float32] | None:
    """A trial's stored probabilities, or None (absent: a store from before they were kept; or unreadable)."""
    import numpy as np

    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable probabilities %s (%s)", path.name, exc)
        return None
    return np.asarray(arr, dtype=np.float32) if arr.ndim == 2 else None
