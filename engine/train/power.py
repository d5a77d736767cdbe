"""Power and paired noise model of the pilot: FT vs VPT scored on the *same* comparison images.

Two methods evaluated on one set of ``n`` images differ, image by image, by ``d_i`` in {-1, 0, +1}
(per seed). The accuracy difference is the mean of ``d_i``; its variance is ``p_d / n`` where
``p_d`` is the *discordance rate* (share of images on which exactly one method is right) minus a
negligible ``delta^2`` term. This is the normal approximation behind McNemar's test.

Before training, ``p_d`` is unknown and assumed (``ASSUMED_DISCORDANCE``). Averaging ``k`` seeds
only removes the seed-specific part of the disagreement; the image-level part (``image_share`` of
it) stays, so the image part of the variance is ``p_d * (rho + (1 - rho) / k) / n``. We assume
``rho = 1`` by default (no credit for seeds: the conservative choice, since no source gives the split).

A seed also moves a method's accuracy as a whole (one seed's model is a little better on every image
than another's): a seed effect of standard deviation ``sigma`` adds ``sigma^2 / k`` per method, which
no number of comparison images removes. The verdict (``engine.train.verdict``) measures it from the
seeds but never counts it below the assumed ``sigma_0`` (``ASSUMED_SEED_SD``: two or three seeds can
show that the spread is large, not that it is small), so the plan budgets for the expected value of
that maximum, ``c_nu * sigma_0^2`` with ``c_nu = E[max(chi2_nu / nu, 1)]`` and ``nu = 2k - 2`` (the
pooled seed degrees of freedom of both methods). The minimum detectable difference (two-sided test
at ``alpha``, probability ``power`` of detecting it) is

    MDD = (z_{1 - alpha/2} + z_{power}) * sqrt(p_d * (rho + (1 - rho) / k) / n + 2 c_nu sigma_0^2 / k) * 100

(points; ``sigma_0`` as a fraction). With one seed the spread cannot be measured at all: the plan
still states an MDD (with ``c = 1``), but the verdict is only indicative.

After training, :func:`paired_bootstrap` resamples comparison images (jointly for both methods, which
keeps the pairing) and seeds (per method) for a descriptive interval; the verdict's own interval is
``engine.train.verdict.seed_aware_difference``. Statistics run in float64 on the CPU.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from pydantic import Field

from engine.config import FrozenModel

__all__ = [
    "ALPHA",
    "ASSUMED_DISCORDANCE",
    "POWER",
    "IMAGE_SHARE",
    "z_sum",
    "ASSUMED_SEED_SD",
    "UNREACHABLE_IMAGES",
    "BOOTSTRAP_SAMPLES",
    "seed_variance_factor",
    "seeds_needed",
    "PairedComparison",
    "min_detectable_difference",
    "compare_images_needed",
    "paired_bootstrap",
]

ALPHA = 0.05
"""Two-sided significance level of the paired test (the conventional 5 %)."""
POWER = 0.80
"""Probability of detecting a true difference of the MDD (Cohen's conventional 80 %)."""
ASSUMED_DISCORDANCE = 0.20
"""Share of images on which FT and VPT disagree, assumed before training (issue 11's worked example:
20 % disagreement; the pilot reports the rate it actually observes)."""
IMAGE_SHARE = 1.0
"""Share of the disagreement that persists across seeds (1 = seeds do not shrink it; conservative)."""
ASSUMED_SEED_SD = 0.5
"""Seed-to-seed standard deviation (points) of a method's accuracy assumed when planning. Our planning
assumption, not a paper number (the paper prints means of 5 runs, no spreads): the pilot measures the
spread, never counts it below this, and calls itself underpowered when the measured spread costs the
planned power (``engine.train.verdict``)."""
UNREACHABLE_IMAGES = 10**9
"""``compare_images_needed`` when no number of images reaches the difference with the seeds given
(the seed term alone exceeds it): more seeds are needed (:func:`seeds_needed`)."""
BOOTSTRAP_SAMPLES = 2000
"""Bootstrap resamples of the percentile interval (Efron & Tibshirani recommend >= 1000 for 95 % intervals)."""


def z_sum(alpha: float, power: float) -> float:
    """``z_{1-alpha/2} + z_power``: how many standard errors the detectable difference spans."""
    return NormalDist().inv_cdf(1.0 - alpha / 2.0) + NormalDist().inv_cdf(power)


def _variance_factor(discordance: float, seeds: int, image_share: float) -> float:
    return discordance * (image_share + (1.0 - image_share) / max(1, seeds))


def _chi2_sf_even(x: float, df: int) -> float:
    """P(chi2_df > x) for an even ``df``: the Poisson sum ``exp(-x/2) * sum_{j < df/2} (x/2)^j / j!``."""
    term, total = 1.0, 1.0
    for j in range(1, df // 2):
        term *= (x / 2.0) / j
        total += term
    return math.exp(-x / 2.0) * total


def seed_variance_factor(seeds: int) -> float:
    """``c_nu = E[max(chi2_nu / nu, 1)]`` for ``nu = 2 * seeds - 2`` (1 with one seed: nothing is measured).

    ``E[max(X, 1)] = 1 + E[X; X > 1] - P(X > 1)`` and, for ``X = chi2_nu / nu``, ``E[X; X > 1] =
    P(chi2_{nu+2} > nu)``; ``nu`` is even, so both tails are finite Poisson sums.
    """
    nu = 2 * seeds - 2
    if nu < 2:
        return 1.0
    return 1.0 + _chi2_sf_even(nu, nu + 2) - _chi2_sf_even(nu, nu)


def _seed_term(seeds: int, seed_sd: float) -> float:
    """Variance (as a fraction squared) the seed effect adds to the difference of two k-seed means."""
    return seed_variance_factor(seeds) * (seed_sd / 100.0) ** 2 * 2.0 / max(1, seeds)


def min_detectable_difference(
    n_compare: int,
    seeds: int,
    *,
    discordance: float = ASSUMED_DISCORDANCE,
    image_share: float = IMAGE_SHARE,
    seed_sd: float = ASSUMED_SEED_SD,
    alpha: float = ALPHA,
    power: float = POWER,
) -> float:
    """Smallest VPT-FT difference (accuracy points) the paired test detects (formula in the module doc).

    Returns ``inf`` for ``n_compare < 1``.
    """
    if n_compare < 1:
        return math.inf
    var = _variance_factor(discordance, seeds, image_share) / n_compare + _seed_term(seeds, seed_sd)
    return 100.0 * z_sum(alpha, power) * math.sqrt(var)


def seeds_needed(mdd: float, *, seed_sd: float = ASSUMED_SEED_SD, alpha: float = ALPHA, power: float = POWER,
                 max_seeds: int = 5) -> int | None:
    """Fewest seeds for which some number of images detects ``mdd`` points (None: not even ``max_seeds``)."""
    room = (mdd / (100.0 * z_sum(alpha, power))) ** 2
    return next((k for k in range(1, max_seeds + 1) if _seed_term(k, seed_sd) < room), None)


def compare_images_needed(
    mdd: float,
    seeds: int,
    *,
    discordance: float = ASSUMED_DISCORDANCE,
    image_share: float = IMAGE_SHARE,
    seed_sd: float = ASSUMED_SEED_SD,
    alpha: float = ALPHA,
    power: float = POWER,
) -> int:
    """Comparison images for :func:`min_detectable_difference` to reach ``mdd`` points (the inverse).

    ``UNREACHABLE_IMAGES`` when the seed term alone is too large for ``mdd`` with ``seeds`` seeds.
    """
    if mdd <= 0:
        raise ValueError(f"the detectable difference must be positive, got {mdd}")
    room = (mdd / (100.0 * z_sum(alpha, power))) ** 2 - _seed_term(seeds, seed_sd)
    if room <= 0:
        return UNREACHABLE_IMAGES
    n = _variance_factor(discordance, seeds, image_share) / room
    return min(UNREACHABLE_IMAGES, max(1, math.ceil(n * (1 - 1e-12))))


class PairedComparison(FrozenModel):
    """VPT minus FT on the same comparison images, with bootstrap intervals (points)."""

    vpt_method: str = Field(description="The method compared: in the verdict the best VPT-side method on the "
                            "selection split; against the baseline any other method (LoRA, Mixed...).")
    ft_method: str = Field(description="The full-finetuning (FT-side) method it is compared with.")
    difference: float = Field(description="Mean accuracy of vpt_method minus that of ft_method on the comparison "
                              "images.")
    ci95: tuple[float, float] = Field(description="95 % percentile bootstrap interval of the difference.")
    ci99: tuple[float, float] = Field(description="99 % percentile bootstrap interval of the difference.")
    n_compare: int = Field(description="Comparison images (never used for training or lr selection).")
    ft_seeds: int
    vpt_seeds: int
    discordance: float = Field(description="Observed share of (image, seed) pairs where exactly one method is right.")
    bootstrap_samples: int


def _resampled_means(correct: npt.NDArray[np.float64], image_w: npt.NDArray[np.float64],
                     rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Accuracy of one method per bootstrap sample: weighted images, resampled seeds."""
    per_seed = image_w @ correct.T  # (B, k): accuracy of each seed under the resampled images
    k = correct.shape[0]
    seed_w = np.stack([np.bincount(rng.integers(0, k, k), minlength=k) for _ in range(len(image_w))]) / k
    return np.asarray((per_seed * seed_w).sum(axis=1), dtype=np.float64)


def paired_bootstrap(
    ft: npt.ArrayLike,
    vpt: npt.ArrayLike,
    *,
    ft_method: str = "FT",
    vpt_method: str = "VPT",
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Paired difference of per-image correctness ``(seeds, images)`` arrays of 0/1 (same image order).

    ``ft`` is the baseline and ``vpt`` the method compared with it; their names (registered methods, or by
    default the side words) label the result.

    Images are resampled jointly for both methods (the pairing), seeds independently per method
    (FT seed 42 and VPT seed 42 share nothing but the number).
    """
    a = np.atleast_2d(np.asarray(ft, dtype=np.float64))
    b = np.atleast_2d(np.asarray(vpt, dtype=np.float64))
    if a.shape[1] != b.shape[1] or a.shape[1] < 1:
        raise ValueError(f"FT and VPT must be scored on the same images, got {a.shape[1]} and {b.shape[1]}")
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    image_w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)]) / n
    diffs = 100.0 * (_resampled_means(b, image_w, rng) - _resampled_means(a, image_w, rng))
    observed = 100.0 * (b.mean() - a.mean())
    discordance = float(np.abs(a[:, None, :] - b[None, :, :]).mean())  # over every (FT seed, VPT seed) pair
    lo95, hi95, lo99, hi99 = np.percentile(diffs, [2.5, 97.5, 0.5, 99.5])
    return PairedComparison(
        vpt_method=vpt_method, ft_method=ft_method, difference=float(observed), ci95=(float(lo95), float(hi95)),
        ci99=(float(lo99), float(hi99)), n_compare=n, ft_seeds=a.shape[0], vpt_seeds=b.shape[0],
        discordance=discordance, bootstrap_samples=samples,
    )
