"""engine.fid.calibration: threshold derivation and the calibration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.fid.calibration import (
    Calibration,
    default_calibration_path,
    derive_threshold,
    fit_threshold,
    load_calibration,
    save_calibration,
    similarity_side,
    small_n_bias,
)
from engine.paper import fgvc_table


def test_derive_threshold_on_table_19() -> None:
    rows = fgvc_table()
    value, band = derive_threshold({r.key: r.fid for r in rows}, {r.key: r.winner for r in rows})
    vpt_max = max(r.fid for r in rows if r.vpt > r.ft)
    ft_min = min(r.fid for r in rows if r.ft > r.vpt)
    assert band == (vpt_max, ft_min)
    assert value == pytest.approx((vpt_max + ft_min) / 2)


def test_derive_threshold_is_the_one_fitting_rule() -> None:
    # VPT 10 and 30, FT 20: 15 classifies 2 of 3, 25 only 1; the band covers the misclassified 30
    value, band = derive_threshold({"a": 10.0, "b": 30.0, "c": 20.0}, {"a": "VPT", "b": "VPT", "c": "FT"})
    assert (value, band) == (15.0, (10.0, 30.0))
    fit = fit_threshold({"a": 10.0, "b": 30.0, "c": 20.0}, {"a": "VPT", "b": "VPT", "c": "FT"})
    assert (fit.threshold, fit.band) == (value, band) and fit.misclassified == ["b"]
    with pytest.raises(ConfigError, match="each method"):
        derive_threshold({"a": 1.0}, {"a": "VPT"})


def _cal(**kw: object) -> Calibration:
    base: dict[str, object] = dict(reference="in21k", threshold=100.0, band=(90.0, 110.0),
                                   task_fids={"clevr_dist": 120.0, "cifar": 80.0}, method="test")
    base.update(kw)
    return Calibration(**base)  # type: ignore[arg-type]


def test_roundtrip_in_the_data_home(tmp_path: Path) -> None:
    assert load_calibration() is None
    cal = _cal()
    assert cal.task_fids == {"clevr_distance": 120.0, "cifar100": 80.0}  # NOAH names -> paper keys
    path = save_calibration(cal)
    assert path == default_calibration_path() and path.is_file()
    assert load_calibration() == cal
    with pytest.raises(ConfigError, match="absent.json does not exist"):  # a typo must not be ignored
        load_calibration(tmp_path / "absent.json")


def test_invalid_files_and_values(tmp_path: Path) -> None:
    bad = tmp_path / "cal.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cal.json: not a valid calibration"):
        load_calibration(bad)
    bad.write_text('{"reference": "in21k", "threshold": 1, "band": [0, 2], "task_fids": {"nope": 3}}')
    with pytest.raises(ConfigError, match="unknown VTAB-1k task"):
        load_calibration(bad)
    with pytest.raises(ValueError, match="must contain the threshold"):
        _cal(band=(120.0, 130.0))


def test_similarity_side_takes_the_small_n_bias_off_before_calling_data_dissimilar() -> None:
    band = (169.117, 182.487)
    assert similarity_side(190.0, 175.8, band) == "dissimilar"
    assert similarity_side(190.0, 175.8, band, bias=10.0) == "borderline"  # 180 is inside the band
    assert similarity_side(200.0, 175.8, band, bias=10.0) == "dissimilar"
    assert similarity_side(160.0, 175.8, band, bias=30.0) == "similar"  # the bias only makes 'similar' safer
    assert similarity_side(176.0, 175.8, (175.8, 175.8), bias=1.0) == "borderline"  # a threshold without band
    assert similarity_side(170.0, 175.8, band) == "borderline"
    assert small_n_bias(190.0, 200.0) == 20.0 and small_n_bias(190.0, 185.0) == 0.0
