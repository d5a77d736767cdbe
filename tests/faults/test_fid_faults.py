"""FID faults: invalid statistics, impossible distances, identical inputs, non-finite numbers at entry.

Each case ends in the right result, or exit 1 with one ``Error:`` line and no "internal error".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from advisor.cli import main
from engine.errors import StatsFileError
from engine.fid.frechet import (
    PSD_RTOL,
    SYMMETRY_RTOL,
    compute_feature_stats,
    frechet_distance,
    frechet_distance_from_features,
    load_stats,
    validate_stats,
)
from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor, fake_extractors, fake_weights  # noqa: F401 - fixtures


def _one_error_line(err: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("Error:"), err
    assert "internal error" not in err.lower() and "Traceback" not in err


def _npz(path: Path, mu: np.ndarray, sigma: np.ndarray) -> Path:
    np.savez(path, mu=mu, sigma=sigma)
    return path


def _folder(root: Path, n: int, seed: int) -> Path:
    gen = np.random.default_rng(seed)
    for i in range(n):
        write_png(root / f"{i}.png", gen.integers(0, 256, (16, 16, 3)).astype(np.uint8))
    return root


def _bad_stats() -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    d = 4
    not_psd = np.eye(d)
    not_psd[0, 0] = -80.0  # the FID of identical inputs came out -80 on main
    asym = np.eye(d)
    asym[0, 1] = 0.5
    inf = np.eye(d)
    inf[1, 1] = np.inf
    return {
        "not-psd": (np.zeros(d), not_psd, "not positive semi-definite"),
        "asymmetric": (np.zeros(d), asym, "not symmetric"),
        "zero-dim": (np.zeros(0), np.zeros((0, 0)), "non-empty"),
        "nan": (np.array([np.nan, 0, 0, 0]), np.eye(d), "NaN"),
        "inf-sigma": (np.zeros(d), inf, "NaN or infinite"),
        "shape": (np.zeros(d), np.eye(d + 1), "expected"),
    }


@pytest.mark.parametrize("kind", list(_bad_stats()))
def test_invalid_stats_files_are_refused_by_the_one_validator(kind: str, tmp_path: Path) -> None:
    mu, sigma, needle = _bad_stats()[kind]
    path = _npz(tmp_path / f"{kind}.npz", mu, sigma)
    with pytest.raises(StatsFileError, match=needle):
        load_stats(path)
    with pytest.raises(ValueError, match=needle):
        frechet_distance(mu, sigma, mu, sigma)


@pytest.mark.parametrize("kind", ["not-psd", "asymmetric", "zero-dim"])
def test_fid_command_with_invalid_stats_is_one_error_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mu, sigma, needle = _bad_stats()[kind]
    path = _npz(tmp_path / f"{kind}.npz", mu, sigma)
    assert main(["fid", str(path), str(path)]) == 1
    err = capsys.readouterr().err
    _one_error_line(err)
    assert needle in " ".join(err.split()) and path.name in err


def test_tolerances_accept_float32_round_trips(rng: np.random.Generator) -> None:
    x = rng.standard_normal((300, 64))
    s = compute_feature_stats(x)
    sigma32 = s.sigma.astype(np.float32)  # what a float32 stats writer leaves
    mu, sigma = validate_stats(s.mu.astype(np.float32), sigma32)
    assert np.array_equal(sigma, sigma.T)
    rank_deficient = compute_feature_stats(rng.standard_normal((10, 64)))  # N < d: eigenvalues ~ -1e-16
    validate_stats(rank_deficient.mu, rank_deficient.sigma)
    assert SYMMETRY_RTOL <= 1e-6 and PSD_RTOL <= 1e-5  # the stated tolerances (README, docstrings)


def test_frechet_distance_is_never_negative_or_nan(rng: np.random.Generator, caplog: pytest.LogCaptureFixture) -> None:
    x = rng.standard_normal((50, 200))  # N < d, where round-off gave -3.5e-10 on main
    s = compute_feature_stats(x)
    with caplog.at_level(logging.WARNING):
        assert frechet_distance_from_features(x, x) == 0.0
        assert frechet_distance(s.mu, s.sigma, s.mu, s.sigma) == 0.0
    assert not caplog.records  # round-off is clamped silently
    for _ in range(5):
        y = x + rng.standard_normal(x.shape) * 1e-9
        assert frechet_distance_from_features(x, y) >= 0.0


def test_same_folder_as_dataset_and_reference_gives_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    folder = _folder(tmp_path / "data", 6, 0)
    w = ["--inception-weights", str(fake_weights)]
    assert main(["fid", str(folder), str(folder), "--json", *w]) == 0
    assert json.loads(capsys.readouterr().out)["fid"] == 0.0
    ref = tmp_path / "ref.npz"
    assert main(["fid", str(folder), "--save-stats", str(ref), *w]) == 0
    capsys.readouterr()
    code = main(["recommend", str(folder), "--task", "dtd", "--reference", str(ref), "--json", *w])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["fid_measurement"]["fid"] == 0.0 and report["recommendation"]["inputs"]["fid"] == 0.0
    assert any("FID is 0" in x for x in report["warnings"])


@pytest.mark.parametrize("argv", [
    ["--fid", "inf"], ["--fid", "nan"], ["--fid-threshold", "inf"], ["--fid-threshold", "nan"],
    ["--fid", "Infinity"],
])
def test_non_finite_numbers_are_refused_at_entry(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--disparity", "low", "--n-train", "800", *argv]) == 2  # a usage error
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "finite" in errors[0] and argv[0] in errors[0], err
    assert "internal error" not in err.lower() and "Traceback" not in err


@pytest.mark.parametrize("patch", [
    {"threshold": "Infinity"}, {"task_fids": {"dtd": "NaN"}}, {"band": [100.0, "Infinity"]},
])
def test_non_finite_calibration_values_are_refused(
    patch: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cal = {"reference": "in21k", "threshold": 150.0, "band": [140.0, 160.0], "task_fids": {"dtd": 120.0}, "n": 1000}
    cal.update(patch)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(cal).replace('"Infinity"', "Infinity").replace('"NaN"', "NaN"))
    code = main(["recommend", "--disparity", "low", "--fid", "150", "--calibration", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    _one_error_line(err)
    assert "cal.json" in err


def test_a_missing_calibration_file_is_an_error_not_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recommend", "--disparity", "low", "--fid", "150", "--calibration", str(tmp_path / "typo.json")])
    err = capsys.readouterr().err
    assert code == 1
    _one_error_line(err)
    assert "typo.json" in err and "does not exist" in err


@pytest.mark.parametrize("kind", ["loop", "broken"])
def test_a_dataset_link_that_goes_nowhere_is_named_as_a_link(kind: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`fid` and the source seam say the link loops or is broken instead of "no such folder"."""
    link = tmp_path / kind
    link.symlink_to(link if kind == "loop" else tmp_path / "moved-away")
    other = tmp_path / "other"
    other.mkdir()
    write_png(other / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert main(["fid", str(link), str(other)]) == 1
    err = capsys.readouterr().err
    _one_error_line(err)
    assert str(link) in err and ("symbolic link loop" if kind == "loop" else "broken symbolic link") in err
    assert "no such folder" not in err

    from engine.data.sources import resolve_source
    from engine.errors import DatasetError

    with pytest.raises(DatasetError, match="symbolic link"):  # the seam `reference build` reads through
        resolve_source(str(link))


def test_weights_replaced_between_hashing_and_loading_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fake_weights: Path,
    fake_extractors: list[FakeExtractor],  # noqa: F811
) -> None:
    """Features are cached under the weights' hash: a net that is not the hashed one must never write them."""
    import engine.fid.run as fid_run

    patched_load = fid_run.load_inception

    def swapped(config, device):  # noqa: ANN001, ANN202 - the loader's signature
        extractor = patched_load(config, device)
        extractor.id = extractor.id.rsplit("=", 1)[0] + "=0123456789abcdef"  # what another file would hash to
        return extractor

    monkeypatch.setattr(fid_run, "load_inception", swapped)
    a, b = _folder(tmp_path / "a", 4, 0), _folder(tmp_path / "b", 4, 1)
    assert main(["fid", str(a), str(b), "--inception-weights", str(fake_weights)]) == 1
    err = capsys.readouterr().err
    _one_error_line(err)
    assert "Inception weights changed" in err and "0123456789abcdef" in err
