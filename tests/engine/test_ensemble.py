"""The FT+VPT ensemble: mean of probabilities, against an independent computation, and when it is offered."""

from __future__ import annotations

import numpy as np

from engine.train.ensemble import ensemble_result, load_probs, save_probs


def _probs(labels: np.ndarray, right: np.ndarray, confidence: np.ndarray, classes: int = 3) -> np.ndarray:
    """Probabilities that put ``confidence`` on the label where ``right``, else on the next class."""
    out = np.full((len(labels), classes), 0.0, dtype=np.float32)
    pred = np.where(right, labels, (labels + 1) % classes)
    out[np.arange(len(labels)), pred] = confidence
    rest = (1 - confidence) / (classes - 1)
    for c in range(classes):
        out[:, c] = np.where(pred == c, out[:, c], rest)
    return out


def test_methods_that_err_on_different_images_make_a_better_ensemble() -> None:
    rng = np.random.default_rng(0)
    n = 600
    labels = rng.integers(0, 3, n)
    ft_right = rng.random(n) < 0.75
    vpt_right = np.where(ft_right, rng.random(n) < 0.7, True)  # VPT is right where FT is wrong, often
    # each method is confident where it is right and unsure where it is wrong
    ft = [_probs(labels, ft_right, np.where(ft_right, 0.9, 0.45)) for _ in range(3)]
    vpt = [_probs(labels, vpt_right, np.where(vpt_right, 0.9, 0.45)) for _ in range(3)]
    e = ensemble_result(ft, vpt, labels, ft_method="full", vpt_method="vpt-deep", ft_params=(100, 100),
                        vpt_params=(7, 107), assumed_seed_sd=0.5)
    expected = np.mean(((ft[0] + vpt[0]) / 2).argmax(1) == labels) * 100  # independent arithmetic
    assert e.available and e.pairs == 3 and np.isclose(e.accuracy or 0, expected)
    assert e.best_single == "vpt-deep" and e.versus_best is not None and e.versus_best.ci95[0] > 0
    assert e.offered and e.cost is not None and e.cost.params_beyond_ft == 7 and e.cost.params_at_inference == 207


def test_one_pair_or_no_gain_is_not_offered_and_mismatched_stores_are_unavailable() -> None:
    labels = np.arange(90) % 3
    same = _probs(labels, np.arange(90) % 2 == 0, np.full(90, 0.8))
    e = ensemble_result([same], [same], labels, ft_method="full", vpt_method="vpt-deep", ft_params=(1, 1),
                        vpt_params=(1, 1))
    assert e.available and not e.offered and e.versus_best is not None and e.versus_best.difference == 0
    bad = ensemble_result([same[:10]], [same], labels, ft_method="full", vpt_method="vpt-deep", ft_params=(1, 1),
                          vpt_params=(1, 1))
    assert not bad.available and "do not match" in bad.reason


def test_probability_sidecar_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    arr = np.random.default_rng(1).random((5, 4)).astype(np.float32)
    path = tmp_path / "t.probs.npy"
    assert save_probs(path, arr)
    assert np.array_equal(load_probs(path), arr)
    path.write_bytes(b"junk")
    assert load_probs(path) is None and load_probs(tmp_path / "missing.npy") is None
