"""FID maths and stats files: closed forms, pytorch-fid as an oracle, npz interchange, sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

from engine.errors import StatsFileError
from engine.fid.frechet import (
    FeatureStats,
    StatsProvenance,
    compute_feature_stats,
    frechet_distance,
    frechet_distance_from_features,
    load_stats,
    save_stats,
    sidecar_path,
    small_sample_warning,
)


def _feats(rng: np.random.Generator, n: int, d: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return (rng.standard_normal((n, d)) @ mix) * scale + shift


def test_equal_covariances_give_squared_mean_distance(rng: np.random.Generator) -> None:
    d = 16
    a = rng.standard_normal((d, d))
    sigma = a @ a.T + np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(np.sum((mu1 - mu2) ** 2)), rel=1e-9)


def test_diagonal_closed_form(rng: np.random.Generator) -> None:
    # Commuting (diagonal) covariances: Tr sqrt(S1 S2) = sum sqrt(s1_i s2_i).
    s1, s2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    mu = np.zeros(8)
    expected = float(np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2)))
    assert frechet_distance(mu, np.diag(s1), mu, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_self_distance_is_zero_and_symmetric(rng: np.random.Generator) -> None:
    x = compute_feature_stats(_feats(rng, 200, 32))
    y = compute_feature_stats(_feats(rng, 150, 32, shift=0.3, scale=1.5))
    assert abs(frechet_distance(x.mu, x.sigma, x.mu, x.sigma)) < 1e-9
    assert frechet_distance(x.mu, x.sigma, y.mu, y.sigma) == pytest.approx(
        frechet_distance(y.mu, y.sigma, x.mu, x.sigma), rel=1e-10
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid's sqrtm(disp=...) on SciPy 1.17
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
@pytest.mark.parametrize(("n1", "n2", "d"), [(300, 200, 24), (40, 30, 64)])  # full rank and rank deficient
def test_agrees_with_pytorch_fid(rng: np.random.Generator, n1: int, n2: int, d: int) -> None:
    x = compute_feature_stats(_feats(rng, n1, d))
    y = compute_feature_stats(_feats(rng, n2, d, shift=0.2, scale=1.3))
    ours = frechet_distance(x.mu, x.sigma, y.mu, y.sigma)
    try:
        theirs = float(calculate_frechet_distance(x.mu, x.sigma, y.mu, y.sigma))
    except TypeError:  # SciPy >= 1.18 removed sqrtm's disp argument, which pytorch-fid passes
        pytest.skip("pytorch-fid's calculate_frechet_distance does not run with this SciPy")
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_feature_route_equals_stats_route(rng: np.random.Generator) -> None:
    f1, f2 = _feats(rng, 30, 64), _feats(rng, 45, 64, shift=0.5)
    s1, s2 = compute_feature_stats(f1), compute_feature_stats(f2)
    via_stats = frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    assert frechet_distance_from_features(f1, f2) == pytest.approx(via_stats, rel=1e-9)
    assert abs(frechet_distance_from_features(f1, f1)) < 1e-9


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="at least 2"):
        compute_feature_stats(np.zeros((1, 4)))


def test_small_sample_warning() -> None:
    assert "rank deficient" in small_sample_warning(100, 2048, "x")
    assert small_sample_warning(5000, 2048) is None


def test_save_load_roundtrip_with_sidecar(tmp_path: Path, rng: np.random.Generator) -> None:
    stats = compute_feature_stats(_feats(rng, 20, 8))
    prov = StatsProvenance(source="somewhere", n_images=20, extractor="ex", preprocessing="pytorch-fid")
    out = tmp_path / "s.npz"
    save_stats(out, stats, prov)
    loaded, lprov = load_stats(out)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.n == 20 and lprov is not None and lprov.source == "somewhere"
    side = json.loads(sidecar_path(out).read_text())
    import hashlib

    assert side["npz_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    # Replacing the npz behind the sidecar's back: the stale sidecar is ignored.
    np.savez_compressed(out, mu=stats.mu + 1, sigma=stats.sigma)
    again, stale = load_stats(out)
    assert stale is None and again.n == 0


def test_pytorch_fid_style_files_load_both_ways(tmp_path: Path, rng: np.random.Generator) -> None:
    stats = compute_feature_stats(_feats(rng, 20, 8))
    theirs = tmp_path / "theirs.npz"
    np.savez_compressed(theirs, mu=stats.mu, sigma=stats.sigma)  # what pytorch-fid --save-stats writes
    loaded, prov = load_stats(theirs)
    assert prov is None
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    ours = tmp_path / "ours.npz"
    save_stats(ours, stats)
    with np.load(ours) as f:  # how pytorch-fid's compute_statistics_of_path reads .npz files
        m, s = f["mu"][:], f["sigma"][:]
    np.testing.assert_array_equal(m, stats.mu)
    np.testing.assert_array_equal(s, stats.sigma)


def test_stats_file_errors(tmp_path: Path) -> None:
    with pytest.raises(StatsFileError, match="not found"):
        load_stats(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.zeros(3))
    with pytest.raises(StatsFileError, match="no key 'sigma'"):
        load_stats(bad)
    np.savez(bad, mu=np.zeros(3), sigma=np.zeros((3, 4)))
    with pytest.raises(StatsFileError, match="shape"):
        load_stats(bad)
    np.savez(bad, mu=np.array([object()], dtype=object), sigma=np.zeros((1, 1)))
    with pytest.raises(StatsFileError):
        load_stats(bad)  # object arrays need pickle, which is refused
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(StatsFileError, match="not a readable"):
        load_stats(tmp_path / "junk.npz")
    with pytest.raises(StatsFileError, match=".npz"):
        save_stats(tmp_path / "x.txt", FeatureStats(np.zeros(2), np.eye(2), 2))
