"""FID at equal N, bootstrap intervals, FID-infinity, prepared references and the verification gates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.fid.equal_n import (
    SUBSETS,
    ProjectedFeatures,
    fid_at_n,
    fid_infinity,
    fit_infinity,
    infinity_sizes,
)
from engine.fid.frechet import (
    FeatureStats,
    StatsProvenance,
    compute_feature_stats,
    frechet_distance,
    load_prepared_reference,
    prepare_reference,
    save_stats,
)
from engine.fid.gates import MIN_REFERENCE_IMAGES, implausible_fid_warning, verify_fid
from engine.fid.reference import ReferenceInfo

D = 24


def _ref(rng: np.random.Generator, n: int = 400) -> FeatureStats:
    return compute_feature_stats(rng.standard_normal((n, D)) @ (rng.standard_normal((D, D)) / np.sqrt(D)))


def test_projected_fid_equals_the_covariance_route_for_every_subset(rng: np.random.Generator) -> None:
    ref = _ref(rng)
    x = rng.standard_normal((60, D)) * 1.3 + 0.2
    proj = ProjectedFeatures(x, prepare_reference(ref))
    for rows in (None, np.arange(10), rng.integers(0, 60, size=40), np.arange(60)):  # n < d, n > d, repeats
        sub = x if rows is None else x[rows]
        s = compute_feature_stats(sub)
        assert proj.fid(rows) == pytest.approx(frechet_distance(s.mu, s.sigma, ref.mu, ref.sigma), rel=1e-9)


def test_fid_at_n_is_a_seeded_subset_mean_with_an_interval(rng: np.random.Generator) -> None:
    ref = _ref(rng)
    x = rng.standard_normal((200, D)) + 0.3
    proj = ProjectedFeatures(x, prepare_reference(ref))
    at = fid_at_n(proj, 50, seed=3)
    again = fid_at_n(proj, 50, seed=3)
    assert at == again and at.n == 50 and at.n_subsets == SUBSETS
    pick = np.random.default_rng(3)
    expected = np.mean([proj.fid(pick.choice(200, size=50, replace=False)) for _ in range(SUBSETS)])
    assert at.fid == pytest.approx(expected, rel=1e-12)
    lo, hi = at.interval
    assert lo < at.fid < hi
    full = fid_at_n(proj, 10_000)  # more than the dataset: all images, one "subset"
    assert full.n == 200 and full.n_subsets == 1 and full.fid == pytest.approx(proj.fid(), rel=1e-12)
    assert at.fid > full.fid  # FID is biased upwards at small N: that is why N must match


def test_fid_infinity_recovers_a_line_in_one_over_n() -> None:
    sizes = [100, 125, 167, 250, 500]
    intercept, slope = fit_infinity(sizes, [7.0 + 3000.0 / n for n in sizes])
    assert intercept == pytest.approx(7.0) and slope == pytest.approx(3000.0)
    assert infinity_sizes(1000) == [200, 250, 333, 500, 1000]
    assert max(infinity_sizes(50_000)) == 5000


def test_fid_infinity_is_closer_to_the_population_than_the_plain_fid() -> None:
    gen = np.random.default_rng(5)
    d = 64
    ref = FeatureStats(mu=np.zeros(d), sigma=np.eye(d), n=0)  # exact population statistics
    x = gen.standard_normal((400, d)) * 1.5 + 0.1
    true = frechet_distance(np.full(d, 0.1), np.eye(d) * 2.25, ref.mu, ref.sigma)
    proj = ProjectedFeatures(x, prepare_reference(ref))
    est = fid_infinity(proj, seed=1)
    assert est is not None and "estimate" in est.label
    assert abs(est.value - true) < abs(proj.fid() - true)
    assert fid_infinity(ProjectedFeatures(x[:20], prepare_reference(ref))) is None  # too few images to fit


def test_prepared_reference_is_cached_by_content_and_heals(tmp_path: Path, rng: np.random.Generator) -> None:
    ref = _ref(rng)
    npz = tmp_path / "ref.npz"
    save_stats(npz, ref, StatsProvenance(source="x", n_images=400))
    cache = tmp_path / "cache"
    _, _, cold = load_prepared_reference(npz, cache)
    files = list(cache.glob("frechet-*.npz"))
    assert len(files) == 1
    _, _, warm = load_prepared_reference(npz, cache)
    np.testing.assert_array_equal(cold.sqrt, warm.sqrt)
    np.testing.assert_allclose(warm.sqrt @ warm.sqrt, ref.sigma, atol=1e-10)
    files[0].write_bytes(b"junk")  # a damaged cache costs a recomputation, never a result
    _, _, healed = load_prepared_reference(npz, cache)
    np.testing.assert_allclose(healed.sqrt, cold.sqrt, atol=1e-12)


OFFICIAL = "pytorch-fid-inception-v3:dims=2048:weights=6726825d1234abcd"
OTHER = "pytorch-fid-inception-v3:dims=2048:weights=deadbeef00000000"


def _info(**kw: object) -> ReferenceInfo:
    base = dict(name="in21k", path="/x/in21k.npz", n_images=50_000, source="/data", extractor=OFFICIAL,
                preprocessing="pil-bicubic-299")
    base.update(kw)
    return ReferenceInfo(**base)  # type: ignore[arg-type]


def test_gates() -> None:
    assert verify_fid(_info(), OFFICIAL, "pil-bicubic-299").status == "verified"
    weights = verify_fid(_info(extractor=OTHER), OTHER, "pil-bicubic-299", trust_reference=True)
    assert weights.status == "unverified" and "non-standard weights" in weights.reasons[0]
    cases = {
        "no provenance": _info(n_images=0, extractor="", preprocessing=""),
        "another feature extractor": _info(extractor=OTHER),
        "preprocessing": _info(preprocessing="pytorch-fid"),
        f"< {MIN_REFERENCE_IMAGES:,}": _info(n_images=125),
    }
    for needle, info in cases.items():
        v = verify_fid(info, OFFICIAL, "pil-bicubic-299")
        assert v.status == "unverified" and any(needle in r for r in v.reasons), (needle, v.reasons)
        trusted = verify_fid(info, OFFICIAL, "pil-bicubic-299", trust_reference=True)
        assert trusted.status == "verified" and trusted.trusted == v.reasons


def test_implausible_fid_warning_names_the_cause() -> None:
    ok = verify_fid(_info(), OFFICIAL, "pil-bicubic-299")
    assert implausible_fid_warning(182.0, 5000, ok) is None
    msg = implausible_fid_warning(468142.0, 5000, verify_fid(_info(extractor=OTHER), OTHER, "pil-bicubic-299"))
    assert msg is not None and "143.8-182.5" in msg and "Table 19" in msg and "non-standard Inception weights" in msg
    small = implausible_fid_warning(900.0, 5000, verify_fid(_info(n_images=125), OFFICIAL, "pil-bicubic-299"))
    assert small is not None and "125 images" in small
