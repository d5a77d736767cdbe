"""Reference statistics: build from folders and tar shards, sampling, resume, list/show/resolve."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from engine.config.fid import FidConfig
from engine.errors import ConfigError, ReferenceNotFoundError, ReferenceStatsError
from engine.fid.frechet import compute_feature_stats, load_stats
from engine.fid.refbuild import PlanItem, build_reference, discover_items, plan_sample
from engine.fid.reference import list_references, reference_info, resolve_reference
from engine.fid.run import extract_file_features, measure_fid_against_reference
from engine.paths import references_dir
from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor


def _tree(root: Path, classes: dict[str, int], size: int = 16, seed: int = 0) -> Path:
    gen = np.random.default_rng(seed)
    for c, n in classes.items():
        for i in range(n):
            write_png(root / c / f"{c}_{i}.png", gen.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return root


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path: Path, members: dict[str, np.ndarray]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, arr in members.items():
            data = _png(arr)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            meta = tarfile.TarInfo(name.rsplit(".", 1)[0] + ".cls")  # WebDataset side member, not an image
            meta.size = 1
            tf.addfile(meta, io.BytesIO(b"0"))
    return path


def test_missing_default_reference_says_how_to_build() -> None:
    command = ("reference build 'hf://datasets/timm/imagenet-22k-wds/imagenet22k-train-\\*.tar' --name in21k "
               "--max-images 10000")
    with pytest.raises(ReferenceNotFoundError, match=command):
        resolve_reference("in21k")
    with pytest.raises(ReferenceNotFoundError, match="not found"):
        resolve_reference("/no/such/file.npz")
    with pytest.raises(ReferenceNotFoundError, match="invalid reference name"):
        resolve_reference("bad name!")


def test_plan_is_class_balanced_and_seeded() -> None:
    items = [PlanItem(c, -1, f"{c}/{i}", k) for k, (c, i) in enumerate(
        [("a", i) for i in range(10)] + [("b", i) for i in range(2)] + [("c", i) for i in range(5)])]
    plan = plan_sample(items, max_images=7, per_class=None, seed=0)
    counts = {c: sum(p.cls == c for p in plan) for c in "abc"}
    assert len(plan) == 7 and counts["b"] == 2 and max(counts.values()) - min(counts.values()) <= 1
    assert plan == plan_sample(items, max_images=7, per_class=None, seed=0)
    assert plan != plan_sample(items, max_images=7, per_class=None, seed=1)
    capped = plan_sample(items, max_images=None, per_class=3, seed=0)
    assert {c: sum(p.cls == c for p in capped) for c in "abc"} == {"a": 3, "b": 2, "c": 3}
    assert [(p.shard, p.order) for p in plan] == sorted((p.shard, p.order) for p in plan)  # storage order


def test_build_from_folder_list_show_and_measure(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    src = _tree(tmp_path / "in21k", {"n01440764": 5, "n01443537": 4, "n01484850": 3})
    config = FidConfig(weights=fake_weights, dims=64, batch_size=4)
    seen: list[tuple[int, int]] = []
    info = build_reference(src, name="mini", config=config, device="cpu", per_class=3,
                           on_progress=lambda d, t: seen.append((d, t)))
    assert info.n_images == 9 and info.extractor == fake_extractors[0].id
    assert info.preprocessing == "pil-bicubic-299" and "3 classes" in info.notes[0]
    assert seen[-1] == (9, 9)
    # The stored statistics equal the statistics of the same 9 images' features.
    files = [Path(p.name) for p in plan_sample(discover_items(src)[0], max_images=None, per_class=3, seed=0)]
    direct = extract_file_features(files, config.model_copy(update={"resize": "pil-bicubic-299"}), "cpu")
    expected = compute_feature_stats(direct.features)
    stats, _ = load_stats(references_dir() / "mini.npz")
    np.testing.assert_allclose(stats.mu, expected.mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.sigma, expected.sigma, rtol=1e-8, atol=1e-10)
    assert [r.name for r in list_references()] == ["mini"] and reference_info("mini").n_images == 9
    with pytest.raises(ReferenceStatsError, match="--overwrite"):
        build_reference(src, name="mini", config=config, device="cpu")
    from engine.data.index import index_dataset

    m = measure_fid_against_reference(index_dataset(src), "mini", config=config, device="cpu")
    assert m.reference.name == "mini" and m.n_images == 12 and m.preprocessing == "pil-bicubic-299"
    assert m.fid > 0 and any("rank deficient" in w for w in m.warnings)


def test_build_from_tar_shards_without_extracting(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    gen = np.random.default_rng(1)
    shards = tmp_path / "shards"
    shards.mkdir()
    arrays = {f"n0000000{c}_{i}.png": gen.integers(0, 256, (20, 20, 3), dtype=np.uint8) for c in "12" for i in range(3)}
    names = sorted(arrays)
    _tar(shards / "train-000.tar", {k: arrays[k] for k in names[:3]})
    _tar(shards / "train-001.tar", {f"n00000002/{k}": arrays[k] for k in names[3:]})
    from engine.data.sources import list_tar_images, resolve_source

    found = resolve_source(shards)
    assert found.kind == "shards" and len(found.shards) == 2
    listings = [list_tar_images(Path(s.url), s.name) for s in found.shards]
    assert sum(len(x.members) for x in listings) == 6 and not any(x.skipped for x in listings)
    assert {c for x in listings for c in x.labels.values()} == {"0"}  # each sample's .cls member wins
    (shards / "train-002.tar").write_bytes(b"")  # no .cls: the first folder or the key prefix names the class
    with tarfile.open(shards / "train-002.tar", "w") as tf:
        for name in ("n00000003/a.png", "n00000004_b.png"):
            data = _png(arrays[names[0]])
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert set(list_tar_images(shards / "train-002.tar", "train-002.tar").labels.values()) == {"n00000003", "n00000004"}
    (shards / "train-002.tar").unlink()
    info = build_reference(shards, name="tarref", config=FidConfig(weights=fake_weights, dims=64), device="cpu")
    assert info.n_images == 6 and not list(shards.glob("*.png"))  # nothing extracted to disk
    # Same statistics as from the same images as files.
    tree = tmp_path / "tree"
    for k, arr in arrays.items():
        write_png(tree / f"{k}", arr)
    from_files = extract_file_features(sorted(tree.glob("*.png")), FidConfig(weights=fake_weights, dims=64,
                                       resize="pil-bicubic-299"), "cpu")
    stats, _ = resolve_reference("tarref")
    np.testing.assert_allclose(stats.mu, compute_feature_stats(from_files.features).mu, rtol=1e-10)


def test_interrupted_build_resumes_to_identical_stats(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    src = _tree(tmp_path / "src", {"a": 7, "b": 6, "c": 5}, seed=2)
    config = FidConfig(weights=fake_weights, dims=64, batch_size=3, use_cache=False)  # count network passes
    build_reference(src, name="full", config=config, device="cpu", checkpoint_every=6)
    full, _ = resolve_reference("full")

    def boom(done: int, total: int) -> None:
        if done >= 12:
            raise KeyboardInterrupt

    before = sum(e.n_images for e in fake_extractors)
    with pytest.raises(KeyboardInterrupt):
        build_reference(src, name="resumed", config=config, device="cpu", checkpoint_every=6, on_progress=boom)
    assert (references_dir() / ".resumed.partial").is_dir() and not (references_dir() / "resumed.npz").exists()
    first_part = sum(e.n_images for e in fake_extractors) - before
    build_reference(src, name="resumed", config=config, device="cpu", checkpoint_every=6)
    second_part = sum(e.n_images for e in fake_extractors) - before - first_part
    assert second_part == 18 - 12  # continued from the checkpoint at 12 images
    resumed, info = resolve_reference("resumed")
    np.testing.assert_array_equal(resumed.mu, full.mu)
    np.testing.assert_array_equal(resumed.sigma, full.sigma)
    assert info.n_images == 18 and not (references_dir() / ".resumed.partial").exists()


def test_build_argument_errors(tmp_path: Path, fake_weights: Path) -> None:
    with pytest.raises(ConfigError, match="invalid reference name"):
        build_reference(tmp_path, name="a/b", config=FidConfig(weights=fake_weights), device="cpu")
    with pytest.raises(ConfigError, match="max-images"):
        build_reference(tmp_path, name="x", config=FidConfig(weights=fake_weights), device="cpu", max_images=1)


def test_build_reuses_the_feature_cache_with_identical_stats(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    src = _tree(tmp_path / "src", {"a": 4, "b": 3}, seed=3)
    config = FidConfig(weights=fake_weights, dims=64, batch_size=3)
    build_reference(src, name="first", config=config, device="cpu")
    assert sum(e.n_images for e in fake_extractors) == 7
    (src / "a" / "a_0.png").rename(src / "a" / "renamed.png")  # the cache is keyed by content, not by name
    build_reference(src, name="second", config=config, device="cpu")
    assert sum(e.n_images for e in fake_extractors) == 7  # nothing went through the network again
    first, second = resolve_reference("first")[0], resolve_reference("second")[0]
    np.testing.assert_allclose(second.mu, first.mu, rtol=1e-12)
    np.testing.assert_allclose(second.sigma, first.sigma, rtol=1e-10, atol=1e-12)
