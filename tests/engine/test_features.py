"""Inception loading, parity with pytorch-fid, the feature cache and the folder pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config.fid import FidConfig
from engine.errors import WeightsError, WeightsNotFoundError
from engine.fid.features import (
    FID_WEIGHTS_URL,
    INCEPTION_FILENAME,
    default_weights_path,
    load_inception,
    resolve_weights,
)
from engine.fid.frechet import compute_feature_stats, frechet_distance
from engine.fid.run import compute_fid, extract_file_features
from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor


def _folder(root: Path, n: int, size: tuple[int, int], seed: int, scale: int = 1) -> Path:
    gen = np.random.default_rng(seed)
    for i in range(n):
        h, w = size
        write_png(root / f"{i:03d}.png", (gen.integers(0, 256, (h, w, 3)) // scale).astype(np.uint8))
    return root


# --- weights resolution -------------------------------------------------------------------------

def test_offline_without_weights_says_where_to_put_them() -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights(FidConfig())
    msg = str(info.value)
    assert INCEPTION_FILENAME in msg and str(default_weights_path().parent) in msg
    assert FID_WEIGHTS_URL in msg and "--inception-weights" in msg
    assert "\n" not in msg


def test_failed_download_becomes_weights_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def no_network(target: Path) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr("engine.fid.features._download", no_network)
    monkeypatch.setattr("engine.network.host_reachable", lambda url, **kw: True)  # the host answers; the download fails
    with pytest.raises(WeightsNotFoundError, match="download failed.*unreachable"):
        resolve_weights(FidConfig())
    with pytest.raises(WeightsNotFoundError, match="offline"):
        resolve_weights(FidConfig(offline=True))


def test_explicit_weights_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="no such file"):
        resolve_weights(FidConfig(weights=tmp_path / "nope.pth"))


def test_wrong_weights_file_is_a_weights_error(tmp_path: Path, cpu: torch.device) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="not pytorch-fid Inception weights"):
        load_inception(FidConfig(weights=bad), cpu)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="cannot read"):
        load_inception(FidConfig(weights=tmp_path / "junk.pth"), cpu)


# --- real network (random weights in the real file format) ---------------------------------------

@pytest.mark.slow
def test_pool3_features_match_pytorch_fid(fid_weights: Path, tmp_path: Path) -> None:  # noqa: F811
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3

    folder = _folder(tmp_path / "a", 3, (40, 40), seed=0)
    files = sorted(folder.glob("*.png"))
    theirs = get_activations(files, InceptionV3([3]), batch_size=3, dims=2048, device="cpu", num_workers=0)
    ours = extract_file_features(files, FidConfig(use_cache=False), "cpu")
    assert ours.preprocessing == "pytorch-fid"
    np.testing.assert_allclose(ours.features, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())
    exact = extract_file_features(files, FidConfig(use_cache=False, fuse_batchnorm=False), "cpu")
    np.testing.assert_allclose(exact.features, theirs, rtol=1e-5, atol=1e-6 * np.abs(theirs).max())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fid_equals_pytorch_fid_end_to_end(fid_weights: Path, tmp_path: Path) -> None:  # noqa: F811
    # dims=64 (block 0 only) keeps the network cheap, so enough images for a full-rank covariance.
    from pytorch_fid.fid_score import calculate_fid_given_paths

    a = _folder(tmp_path / "a", 70, (16, 16), seed=1)
    b = _folder(tmp_path / "b", 68, (16, 16), seed=2, scale=2)
    try:
        theirs = float(calculate_fid_given_paths([str(a), str(b)], 50, "cpu", 64, num_workers=0))
    except TypeError:
        pytest.skip("pytorch-fid does not run with this SciPy (sqrtm disp removed)")
    ours = compute_fid(a, b, config=FidConfig(dims=64), device="cpu")
    assert ours.fid == pytest.approx(theirs, rel=1e-5)


# --- plumbing with the network mocked -----------------------------------------------------------

def test_cache_hit_skips_extraction(tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]) -> None:  # noqa: F811
    a = _folder(tmp_path / "a", 6, (24, 24), seed=3)
    b = _folder(tmp_path / "b", 5, (24, 24), seed=4, scale=3)
    config = FidConfig(weights=fake_weights, dims=64)
    first = compute_fid(a, b, config=config, device="cpu")
    assert sum(e.n_images for e in fake_extractors) == 11
    second = compute_fid(a, b, config=config, device="cpu")
    assert sum(e.n_images for e in fake_extractors) == 11  # nothing extracted again
    assert second.fid == first.fid and second.a.n_cached == 6 and second.b.n_cached == 5
    # A copy under another name hits (content key); an edited file misses; other preprocessing misses.
    shutil.copy(a / "000.png", b / "copy.png")
    write_png(a / "001.png", np.zeros((24, 24, 3), np.uint8))
    third = compute_fid(a, b, config=config, device="cpu")
    assert third.b.n_cached == 6 and third.a.n_cached == 5
    assert sum(e.n_images for e in fake_extractors) == 12
    compute_fid(a, b, config=FidConfig(weights=fake_weights, dims=64, resize="pil-bicubic-299"), device="cpu")
    assert sum(e.n_images for e in fake_extractors) == 12 + 11  # a/000.png and b/copy.png: one extraction


def test_no_cache_option(tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]) -> None:  # noqa: F811
    a = _folder(tmp_path / "a", 4, (16, 16), seed=5)
    config = FidConfig(weights=fake_weights, dims=64, use_cache=False)
    extract_file_features(sorted(a.glob("*.png")), config, "cpu")
    extract_file_features(sorted(a.glob("*.png")), config, "cpu")
    assert sum(e.n_images for e in fake_extractors) == 8


def test_mixed_sizes_are_resized_and_bad_files_skipped(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    a = tmp_path / "mixed"
    gen = np.random.default_rng(6)
    for i, size in enumerate([(20, 30), (64, 48), (299, 299), (17, 17)]):
        write_png(a / f"{i}.png", gen.integers(0, 256, (*size, 3), dtype=np.uint8))
    (a / "empty.png").write_bytes(b"")
    (a / "fake.png").write_bytes(b"this is not a png")
    b = _folder(tmp_path / "b", 4, (32, 32), seed=7)
    result = compute_fid(a, b, config=FidConfig(weights=fake_weights, dims=64), device="cpu")
    assert result.a.preprocessing == "pil-bicubic-299" and result.b.preprocessing == "pytorch-fid"
    assert result.a.n_images == 4 and result.a.n_skipped == 2
    assert {s[1:3] for s in fake_extractors[0].shapes} == {(299, 299)}
    assert any("different preprocessing" in w for w in result.warnings)
    assert any("rank deficient" in w for w in result.warnings)
    fake = FakeExtractor(FidConfig(weights=fake_weights, dims=64))
    resized = [np.asarray(Image.open(p).convert("RGB").resize((299, 299), Image.Resampling.BICUBIC))
               for p in sorted(a.glob("[0-9].png"))]
    feats = fake.features(np.stack(resized))
    b_feats = fake.features(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(b.glob("*.png"))]))
    s1, s2 = compute_feature_stats(feats), compute_feature_stats(b_feats)
    assert result.fid == pytest.approx(frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma), rel=1e-6)


def test_save_stats_is_readable_by_pytorch_fid_and_back(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    a = _folder(tmp_path / "a", 5, (16, 16), seed=8)
    b = _folder(tmp_path / "b", 5, (16, 16), seed=9, scale=2)
    config = FidConfig(weights=fake_weights, dims=64)
    out = tmp_path / "a_stats.npz"
    direct = compute_fid(a, b, config=config, device="cpu", save_stats_to=out)
    assert direct.saved_stats and out.with_suffix(".json").is_file()
    via_npz = compute_fid(out, b, config=config, device="cpu")
    assert via_npz.a.kind == "stats" and via_npz.a.n_images == 5
    assert via_npz.fid == pytest.approx(direct.fid, rel=1e-6)
    from pytorch_fid.fid_score import compute_statistics_of_path

    mu, sigma = compute_statistics_of_path(str(out), None, 50, 64, "cpu")
    assert mu.shape == (64,) and sigma.shape == (64, 64)


# --- forward passes side by side, one thread each -------------------------------------------------


def test_side_by_side_passes_keep_order_and_give_the_same_bits(fid_weights: Path) -> None:  # noqa: F811
    from engine.fid.features import iter_feature_batches, one_thread_per_pass

    net = load_inception(FidConfig(dims=64, use_cache=False), torch.device("cpu"))
    gen = np.random.default_rng(5)
    arrays = [gen.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(7)]
    before = torch.get_num_threads()

    def run(lanes: int) -> tuple[list[int], np.ndarray]:
        out = list(iter_feature_batches(arrays, lambda a: a, net, batch_size=2, lanes=lanes))
        return [i for idx, _, _ in out for i in idx], np.concatenate([f for _, f, _ in out])

    order1, one = run(1)
    order3, three = run(3)
    assert order1 == order3 == list(range(7)) and torch.get_num_threads() == before  # threads restored
    np.testing.assert_array_equal(three, one)  # same batches, one thread per pass: the same bits
    with one_thread_per_pass(net):
        assert torch.get_num_threads() == 1
        by_hand = net.features(np.stack(arrays[2:4]))
    np.testing.assert_array_equal(by_hand, one[2:4])


def test_run_ordered_yields_in_input_order_whatever_finishes_first() -> None:
    import time

    from engine.fid.features import run_ordered

    def slow_first(k: int) -> int:
        time.sleep(0.05 if k == 0 else 0.0)
        return k * k

    assert list(run_ordered(slow_first, iter(range(6)), 3)) == [k * k for k in range(6)]
    assert list(run_ordered(slow_first, iter(range(3)), 1)) == [0, 1, 4]
