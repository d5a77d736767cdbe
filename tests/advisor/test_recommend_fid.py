"""recommend's FID: one number with `fid`, compared at the threshold's N, with its interval, FID-infinity and gates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from advisor.cli import main
from advisor.decide import DEFAULT_THRESHOLD, build_inputs, classify_similarity, recommend
from advisor.schemas import MethodScore, PairedDifference, PilotEvidence
from engine.fid.calibration import Calibration, CalibrationLevel, save_calibration
from engine.fid.features import weights_sha256
from engine.fid.reference import reference_path
from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor, fake_extractors, fake_weights  # noqa: F401 - fixtures


def _folder(root: Path, n: int, seed: int, classes: int = 2) -> Path:
    gen = np.random.default_rng(seed)
    for i in range(n):
        write_png(root / f"c{i % classes}" / f"{i}.png", gen.integers(0, 256, (16, 16, 3)).astype(np.uint8))
    return root


_PREPARED: dict[str, bytes] = {}  # the reference's prepared form, shared by content across tests (saves an eigh)


def _reference(tmp_path: Path, weights: Path, *, resize: str = "auto") -> Path:
    """A stored reference 'in21k' built (with the fake extractor) from 14 images; its prepared form pre-cached."""
    from engine.fid.frechet import file_sha256, load_prepared_reference
    from engine.paths import cache_dir

    out = tmp_path / "ref.npz"
    src = _folder(tmp_path / "refimgs", 14, 7, classes=1)
    assert main(["fid", str(src), "--save-stats", str(out), "--inception-weights", str(weights),
                 "--resize", resize]) == 0
    target = reference_path("in21k")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, target)
    shutil.copy(out.with_suffix(".json"), target.with_suffix(".json"))
    name = f"frechet-{file_sha256(target)}.npz"
    folder = cache_dir() / "frechet"
    if name in _PREPARED:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(_PREPARED[name])
    else:
        load_prepared_reference(target, folder)
        _PREPARED[name] = (folder / name).read_bytes()
    return target


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:  # type: ignore[type-arg]
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def test_fid_and_recommend_give_one_number_with_the_references_preprocessing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    _reference(tmp_path, fake_weights, resize="pil-bicubic-299")
    capsys.readouterr()
    data = _folder(tmp_path / "data", 12, 1)
    w = ["--inception-weights", str(fake_weights)]
    fid = _run(capsys, ["fid", str(data), "in21k", *w])
    rec = _run(capsys, ["recommend", str(data), "--task", "dtd", *w])
    m = rec["fid_measurement"]
    assert fid["b"]["kind"] == "reference" and fid["fid"] > 0
    assert m["fid"] == fid["fid"]  # the same pair gives the same number, whatever the command
    # same-size images would get pytorch-fid's preprocessing; the reference's recorded one wins in both
    assert fid["a"]["preprocessing"] == m["preprocessing"] == "pil-bicubic-299"


def test_nonstandard_weights_and_small_reference_make_the_fid_unverified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    _reference(tmp_path, fake_weights)
    capsys.readouterr()
    data = _folder(tmp_path / "data", 60, 2)
    rec = _run(capsys, ["recommend", str(data), "--task", "dtd", "--inception-weights", str(fake_weights)])
    m, r = rec["fid_measurement"], rec["recommendation"]
    assert r["similarity"] == "unverified" and m["status"] == "unverified"
    assert any("non-standard weights" in x for x in m["unverified_reasons"])
    assert any("only 14 images" in x for x in m["unverified_reasons"])
    assert r["inputs"]["fid_status"] == "unverified" and r["inputs"]["fid_n"] == 60
    lo, hi = m["compared"]["interval"]
    assert m["compared"]["n"] == 60 and lo <= m["compared"]["fid"] <= hi
    assert m["infinity"] is not None and "estimate" in m["infinity"]["label"]
    assert main(["recommend", str(data), "--task", "dtd", "--inception-weights", str(fake_weights)]) == 0
    short = " ".join(capsys.readouterr().out.split())  # the short view: N, interval and the status on the facts line
    assert "at N=60, interval" in short and "(unverified)" in short
    assert main(["recommend", str(data), "--task", "dtd", "--inception-weights", str(fake_weights), "--explain"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "at N = 60" in text and "90% interval" in text and "(estimate)" in text and "UNVERIFIED" in text


def test_trust_reference_overrides_reference_doubts_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path, fake_extractors: list[FakeExtractor],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("engine.fid.gates.OFFICIAL_WEIGHTS_SHA256_PREFIX", weights_sha256(fake_weights)[:8])
    _reference(tmp_path, fake_weights)
    capsys.readouterr()
    data = _folder(tmp_path / "data", 12, 3)
    argv = ["recommend", str(data), "--task", "dtd", "--inception-weights", str(fake_weights)]
    doubted = _run(capsys, argv)["fid_measurement"]
    assert doubted["status"] == "unverified" and len(doubted["unverified_reasons"]) == 1
    trusted = _run(capsys, [*argv, "--trust-reference"])
    assert trusted["fid_measurement"]["status"] == "verified"
    assert trusted["recommendation"]["similarity"] != "unverified"
    assert any("--trust-reference" in x for x in trusted["warnings"])


def test_the_fid_is_compared_at_the_calibrations_n(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    from engine.fid.frechet import file_sha256

    ref = _reference(tmp_path, fake_weights)
    capsys.readouterr()
    cal = Calibration(
        reference="in21k", threshold=150.0, band=(140.0, 160.0), task_fids={"dtd": 120.0}, n=1000,
        loo_accuracy=1.0, majority_accuracy=0.7, verified=True, inception_sha256=weights_sha256(fake_weights),
        reference_sha256=file_sha256(ref),
        levels=[CalibrationLevel(n=8, threshold=90.0, band=(80.0, 100.0), task_fids={"dtd": 70.0})])
    save_calibration(cal)
    data = _folder(tmp_path / "data", 20, 4)
    rec = _run(capsys, ["recommend", str(data), "--task", "dtd", "--inception-weights", str(fake_weights)])
    m, thr = rec["fid_measurement"], rec["recommendation"]["provenance"]["threshold"]
    assert thr["n"] == 8 and thr["value"] == 90.0  # the largest calibrated N the 20 images reach
    assert m["compared"]["n"] == 8 and m["compared"]["n_subsets"] == 5
    assert rec["recommendation"]["inputs"]["fid"] == m["compared"]["fid"] != m["fid"]
    assert "N = 8" in m["compared_note"]


def test_default_threshold_says_its_n_is_not_printed() -> None:
    assert DEFAULT_THRESHOLD.n is None and "not printed by the paper" in DEFAULT_THRESHOLD.n_note


def test_an_interval_straddling_the_threshold_is_borderline() -> None:
    thr = DEFAULT_THRESHOLD
    assert classify_similarity(100.0, thr) == "similar"
    assert classify_similarity(100.0, thr, (90.0, 110.0)) == "similar"
    assert classify_similarity(thr.value - 1.0, thr, (thr.value - 5.0, thr.value + 5.0)) == "borderline"
    inputs = build_inputs(disparity="low", n_train=800, fid=100.0).model_copy(
        update={"fid_interval": (80.0, thr.value + 1.0)})
    assert recommend(inputs).similarity == "borderline"


def test_random_init_pilot_evidence_never_decides() -> None:
    inputs = build_inputs(task="counting", n_train=100)  # the pilot's own size: its evidence alone decides
    scores = [MethodScore(method="full", mean=95.0, std=0.1, n_seeds=3),
              MethodScore(method="vpt-deep", mean=40.0, std=0.1, n_seeds=3)]
    paired = PairedDifference(vpt_method="vpt-deep", ft_method="full", difference=-55.0, ci95=(-60.0, -50.0),
                              ci99=(-62.0, -48.0), n_compare=200, discordance=0.6)
    real = recommend(inputs, PilotEvidence(n_train=80, n_val=20, scores=scores, paired=paired))
    assert real.recommendation == "FT"  # decisive real evidence outranks the prior
    fake = recommend(inputs, PilotEvidence(n_train=80, n_val=20, scores=scores, paired=paired, random_init=True))
    assert fake.recommendation == recommend(inputs).recommendation == "pilot" and fake.pilot is None
    assert "randomly initialised" in fake.reasons[0].sentence


def test_a_calibration_from_other_weights_or_without_provenance_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    from engine.fid.frechet import file_sha256

    ref = _reference(tmp_path, fake_weights)
    capsys.readouterr()
    base = dict(reference="in21k", threshold=150.0, band=(140.0, 160.0), task_fids={"dtd": 120.0}, n=1000,
                loo_accuracy=1.0, verified=True, inception_sha256="0" * 64, reference_sha256=file_sha256(ref))
    path = tmp_path / "cal.json"
    data = _folder(tmp_path / "data", 12, 4)
    save_calibration(Calibration(**base), path)  # type: ignore[arg-type]
    assert main(["recommend", str(data), "--task", "dtd", "--inception-weights", str(fake_weights),
                 "--calibration", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"Error: calibration file {path}") and "Inception weights sha256 000000000000" in err
    assert len(err.splitlines()) == 1
    save_calibration(Calibration(**{**base, "inception_sha256": ""}), path)  # type: ignore[arg-type]
    assert main(["recommend", "--task", "dtd", "--fid", "150", "--calibration", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: calibration file {path}: ") and "does not record the Inception weights sha256" in err
