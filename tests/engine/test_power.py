"""The pilot's power calculation and paired bootstrap, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.train.power import compare_images_needed, min_detectable_difference, paired_bootstrap

Z_975, Z_80 = 1.959963984540054, 0.8416212335729143  # standard normal quantiles (tables)


def test_mdd_closed_form_and_inverse() -> None:
    # 200 images, 20 % disagreement: SE = sqrt(0.2 / 200) = 3.16 points (issue 11's example), without a seed effect
    assert min_detectable_difference(200, 3, seed_sd=0.0) == pytest.approx(
        (Z_975 + Z_80) * math.sqrt(0.2 / 200) * 100)
    # a seed SD of 0.5 points adds c * 0.005^2 * 2 / 3, c = E[max(chi2_4 / 4, 1)] = 1 + P(chi2_6 > 4) - P(chi2_4 > 4)
    c = 1 + 5 * math.exp(-2) - 3 * math.exp(-2)
    assert min_detectable_difference(200, 3, seed_sd=0.5) == pytest.approx(
        (Z_975 + Z_80) * math.sqrt(0.2 / 200 + c * 0.005**2 * 2 / 3) * 100)
    n = compare_images_needed(3.0, 3)
    assert min_detectable_difference(n, 3) <= 3.0 < min_detectable_difference(n - 1, 3)
    # seeds only help with the seed-specific share of the disagreement
    assert min_detectable_difference(200, 1, image_share=0.5) > min_detectable_difference(200, 4, image_share=0.5)
    assert min_detectable_difference(200, 1, seed_sd=0.0) == min_detectable_difference(200, 4, seed_sd=0.0)
    assert min_detectable_difference(0, 3) == math.inf
    with pytest.raises(ValueError):
        compare_images_needed(0.0, 1)


def test_bootstrap_identical_predictions_have_a_zero_interval() -> None:
    same = np.repeat(np.random.default_rng(0).random((1, 300)) < 0.6, 3, axis=0)
    p = paired_bootstrap(same, same)
    assert p.difference == 0 and p.ci95 == (0.0, 0.0) and p.discordance == 0.0


def test_bootstrap_interval_matches_the_paired_normal_approximation() -> None:
    rng = np.random.default_rng(1)
    n = 1500
    ft = rng.random(n) < 0.70
    vpt = np.where(rng.random(n) < 0.85, ft, ~ft)  # 15 % of images flip: a paired design
    p = paired_bootstrap(ft[None], vpt[None], samples=3000, seed=3)
    d = vpt.astype(float) - ft.astype(float)
    half = 100 * 1.96 * d.std(ddof=1) / math.sqrt(n)
    assert p.difference == pytest.approx(100 * d.mean())
    assert (p.ci95[1] - p.ci95[0]) / 2 == pytest.approx(half, rel=0.1)
    assert p.ci99[0] < p.ci95[0] < p.difference < p.ci95[1] < p.ci99[1]


def test_planted_difference_is_decisive_and_shapes_are_checked() -> None:
    rng = np.random.default_rng(2)
    ft = rng.random((2, 400)) < 0.5
    vpt = rng.random((2, 400)) < 0.8
    p = paired_bootstrap(ft, vpt)
    assert p.ci95[0] > 0 and p.ft_seeds == p.vpt_seeds == 2 and p.n_compare == 400
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(ft, vpt[:, :10])
