"""FID at a chosen sample size N, its bootstrap interval, and FID-infinity, from features extracted once.

FID is biased upwards at small N (Chong & Forsyth, "Effectively Unbiased FID and Inception Score and
where to find them", CVPR 2020: the bias is linear in 1/N), so two FIDs are comparable only at equal
N. Everything here works on the user's already-extracted features: a subset is a choice of rows, and
Inception never runs again.

* :func:`fid_at_n` — the FID at ``n`` images: the FID of all images when ``n`` is the dataset size,
  otherwise the mean over :data:`SUBSETS` random subsets of ``n`` images (seeded). Its interval is a
  bootstrap (resampling images with replacement), see :func:`fid_at_n`.
* :func:`fid_infinity` — Chong & Forsyth's FID-infinity: FIDs at :data:`INFINITY_POINTS` subset sizes,
  a least-squares line of FID against 1/N, and its value at 1/N = 0. It is an *estimate*
  (an extrapolation), reported beside the FID, never instead of it.

Distances are against a :class:`engine.fid.frechet.PreparedReference`; with the features projected
once on the reference's ``Sigma^{1/2}``, one subset's distance costs an ``n x n`` Gram matrix and its
eigenvalues (see :class:`ProjectedFeatures`). Pure numpy, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import Field

from engine.config import FrozenModel
from engine.fid.frechet import PreparedReference, clamp_distance, psd_clip

__all__ = [
    "SUBSETS",
    "BOOTSTRAP_REPLICATES",
    "BOOTSTRAP_MAX_N",
    "INTERVAL_LEVEL",
    "INFINITY_POINTS",
    "FidAtN",
    "FidInfinity",
    "ProjectedFeatures",
    "fid_at_n",
    "fid_infinity",
]

SUBSETS = 5
"""Our choice: random subsets averaged when the dataset has more images than the N compared at."""
BOOTSTRAP_REPLICATES = 20
"""Our choice: bootstrap resamples per interval (seeded)."""
BOOTSTRAP_MAX_N = 500
"""Our choice: resamples are drawn at min(n, 500) images and their spread scaled by sqrt(m / n)
(an m-out-of-n bootstrap, Bickel, Götze & van Zwet 1997), which keeps an interval at N > 2048 cheap."""
INTERVAL_LEVEL = 0.90
"""Two-sided level of the interval: estimate +/- 1.645 standard deviations of the resampled FIDs."""
_Z90 = 1.6448536269514722  # standard normal 95th percentile (two-sided 90 %)
INFINITY_POINTS = 5
"""Chong & Forsyth fit 15 sizes between 5,000 and 50,000 images; we fit 5 sizes (evenly spaced in
1/N) between N/5 and N, capped at :data:`INFINITY_MAX_N`, each the mean of :data:`INFINITY_SUBSETS` subsets."""
INFINITY_SUBSETS = 2
INFINITY_MAX_N = 5000
"""Our cap on the largest fitted size (above it a subset costs a d x d eigendecomposition each)."""
INFINITY_MIN_N = 50
"""Below this many images a line through FIDs at N/5..N is too noisy to extrapolate: no FID-infinity."""
_PROJECT_ALL_MAX_N = 10_000  # project every feature row once when N is at most this (N x d float64: 160 MB at d=2048)

INFINITY_LABEL = ("estimate: FID extrapolated to infinitely many images from a line of FID against 1/N "
                  "(Chong & Forsyth, CVPR 2020)")


class FidAtN(FrozenModel):
    """The FID of a dataset at ``n`` images, with its bootstrap interval."""

    n: int = Field(description="Sample size the FID is measured at.")
    fid: float = Field(description="FID at n images (mean over subsets when the dataset is larger).")
    n_subsets: int = Field(description="Random subsets averaged (1 = all images).")
    interval: tuple[float, float] = Field(description="Bootstrap interval (low, high), clipped at 0.")
    level: float = Field(default=INTERVAL_LEVEL, description="Two-sided level of the interval.")
    n_bootstrap: int = Field(description="Bootstrap resamples.")
    bootstrap_n: int = Field(description="Images per resample (m of the m-out-of-n bootstrap).")
    seed: int = Field(description="Seed of the subsets and resamples.")


class FidInfinity(FrozenModel):
    """Chong & Forsyth's FID-infinity: an extrapolation, labelled as an estimate."""

    value: float = Field(description="Estimated FID at 1/N -> 0 (clipped at 0).")
    sizes: list[int] = Field(description="Subset sizes fitted.")
    fids: list[float] = Field(description="Mean FID at each size.")
    slope: float = Field(description="Fitted slope of FID against 1/N.")
    label: str = Field(default=INFINITY_LABEL, description="What the number is.")


class ProjectedFeatures:
    """A dataset's features against one prepared reference; the FID of any subset of rows.

    ``Z = X R`` with ``R = Sigma_ref^{1/2}``. For rows ``S`` with ``n = |S|``: ``Sigma_S`` is the
    covariance of ``X[S]`` and ``R Sigma_S R`` the covariance of ``Z[S]``; its non-zero eigenvalues
    are those of the ``n x n`` Gram matrix of the centred ``Z[S]`` divided by ``n - 1``. So
    ``FID(S) = |mu_S - mu_ref|^2 + Tr Sigma_S + Tr Sigma_ref - 2 sum sqrt(eig)``, with the
    eigendecomposition on the smaller of ``n x n`` and ``d x d``. Rows may repeat (bootstrap).
    """

    def __init__(self, features: npt.ArrayLike, reference: PreparedReference) -> None:
        self.x = np.asarray(features)  # kept in its dtype (float32 features: half the memory); rows cast per use
        if self.x.ndim != 2 or self.x.shape[1] != reference.dims:
            raise ValueError(f"features must be (n, {reference.dims}); got {self.x.shape}")
        self.ref = reference
        small = self.x.shape[0] <= _PROJECT_ALL_MAX_N
        self._z = self.x.astype(np.float64) @ reference.sqrt if small else None

    @property
    def n(self) -> int:
        """Number of feature rows."""
        return int(self.x.shape[0])

    def fid(self, rows: npt.NDArray[np.intp] | None = None) -> float:
        """FID of the selected rows (all rows when None) against the reference."""
        x = (self.x if rows is None else self.x[rows]).astype(np.float64)
        n, d = x.shape
        if n < 2:
            raise ValueError(f"need at least 2 images for an FID; got {n}")
        if self._z is not None:
            z = self._z if rows is None else self._z[rows]
        else:
            z = x @ self.ref.sqrt
        mu = x.mean(axis=0)
        xc = x - mu
        zc = z - z.mean(axis=0)
        tr = float(np.einsum("ij,ij->", xc, xc)) / (n - 1)
        gram = (zc @ zc.T) if n <= d else (zc.T @ zc)
        ev = np.linalg.eigvalsh(0.5 * (gram + gram.T)) / (n - 1)
        diff = mu - self.ref.mu
        scale = float(diff @ diff) + tr + self.ref.trace
        return clamp_distance(scale - 2.0 * float(np.sqrt(psd_clip(ev)).sum()), scale, "FID of a subset")


def _subset_mean(proj: ProjectedFeatures, n: int, count: int, rng: np.random.Generator) -> float:
    return float(np.mean([proj.fid(rng.choice(proj.n, size=n, replace=False)) for _ in range(count)]))


def fid_at_n(proj: ProjectedFeatures, n: int, *, seed: int = 0, full: float | None = None) -> FidAtN:
    """FID at ``n`` images with a bootstrap interval (both seeded).

    The point estimate is the FID of all images when ``n >= proj.n`` (then ``n = proj.n``; pass the
    already-computed value as ``full``), otherwise the mean over :data:`SUBSETS` random subsets of
    ``n`` images without replacement. The interval: :data:`BOOTSTRAP_REPLICATES` resamples of
    ``m = min(n, BOOTSTRAP_MAX_N)`` images drawn with replacement; their standard deviation, scaled
    by ``sqrt(m / n)``, gives ``estimate +/- 1.645 sd``. The interval is centred on the estimate
    because duplicated images in a resample bias its FID upwards; it says how much an FID at ``n``
    images of this data varies, not how far the FID is from the population value.
    """
    rng = np.random.default_rng(seed)
    n = min(int(n), proj.n)
    if n >= proj.n:
        estimate, subsets = (proj.fid() if full is None else float(full)), 1
    else:
        estimate, subsets = _subset_mean(proj, n, SUBSETS, rng), SUBSETS
    m = min(n, BOOTSTRAP_MAX_N)
    boots = [proj.fid(rng.integers(0, proj.n, size=m)) for _ in range(BOOTSTRAP_REPLICATES)]
    half = _Z90 * float(np.std(boots, ddof=1)) * math.sqrt(m / n)
    return FidAtN(n=n, fid=estimate, n_subsets=subsets, interval=(max(0.0, estimate - half), estimate + half),
                  n_bootstrap=BOOTSTRAP_REPLICATES, bootstrap_n=m, seed=seed)


def infinity_sizes(n_total: int) -> list[int]:
    """Subset sizes of the FID-infinity fit: evenly spaced in 1/N between N/5 and min(N, cap)."""
    top = min(n_total, INFINITY_MAX_N)
    low = max(2, top // 5)
    inv = np.linspace(1.0 / top, 1.0 / low, INFINITY_POINTS)
    return sorted({int(round(1.0 / v)) for v in inv})


def fit_infinity(sizes: Sequence[int], fids: Sequence[float]) -> tuple[float, float]:
    """Least-squares line of FID against 1/N; returns ``(intercept, slope)``."""
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes, np.float64), np.asarray(fids, np.float64), 1)
    return float(intercept), float(slope)


def fid_infinity(proj: ProjectedFeatures, *, seed: int = 0, full: float | None = None) -> FidInfinity | None:
    """FID-infinity of the dataset (None below :data:`INFINITY_MIN_N` images)."""
    if proj.n < INFINITY_MIN_N:
        return None
    rng = np.random.default_rng(seed + 1)
    sizes = infinity_sizes(proj.n)
    fids = []
    for size in sizes:
        if size >= proj.n:
            fids.append(proj.fid() if full is None else float(full))
        else:
            fids.append(_subset_mean(proj, size, INFINITY_SUBSETS, rng))
    intercept, slope = fit_infinity(sizes, fids)
    return FidInfinity(value=max(0.0, intercept), sizes=sizes, fids=fids, slope=slope)
