"""The dataset-source seam and `reference build` over real HTTP (a local server) and an emulated Hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from engine.config.fid import FidConfig
from engine.data.sources import expand_braces, resolve_source
from engine.errors import ConfigError, DatasetError
from engine.fid.frechet import sidecar_path
from engine.fid.refbuild import build_reference, spread_shards
from engine.fid.reference import resolve_reference
from engine.paths import references_dir
from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor, fake_extractors, fake_weights  # noqa: F401 - fixtures
from tests.gen_inception import fid_weights, random_inception_file  # noqa: F401 - fixtures
from tests.shard_server import COMMIT, REPO, ShardServer, make_shard, png_bytes, shard_server  # noqa: F401

N_SHARDS, PER_SHARD = 4, 3


def _images(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    gen = np.random.default_rng(seed)
    return {f"shard-{s:04d}.tar": {f"n0000000{s}_{i}.png": gen.integers(0, 256, (20, 20, 3), dtype=np.uint8)
                                  for i in range(PER_SHARD)} for s in range(N_SHARDS)}


def _serve(server: ShardServer, images: dict[str, dict[str, np.ndarray]]) -> None:
    server.files = {shard: make_shard({k: png_bytes(a) for k, a in members.items()})
                    for shard, members in images.items()}


def _folder(root: Path, images: dict[str, dict[str, np.ndarray]]) -> Path:
    for members in images.values():
        for key, arr in members.items():
            write_png(root / key.split("_")[0] / key, arr)
    return root


def test_brace_patterns_expand_like_webdataset() -> None:
    assert expand_braces("s-{0000..0002}.tar") == ["s-0000.tar", "s-0001.tar", "s-0002.tar"]
    assert expand_braces("{a,b}-{8..10}") == ["a-8", "a-9", "a-10", "b-8", "b-9", "b-10"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    with pytest.raises(ConfigError, match="backwards"):
        expand_braces("s-{9..1}.tar")
    with pytest.raises(ConfigError, match="more than"):
        expand_braces("s-{0..99999999}.tar")


def test_spread_covers_the_whole_listing() -> None:
    assert spread_shards(8, 3) == [1, 4, 6]
    assert spread_shards(4096, 25)[0] < 100 and spread_shards(4096, 25)[-1] > 4000
    assert spread_shards(3, 10) == [0, 1, 2]


def test_url_build_equals_folder_build(
    tmp_path: Path, shard_server: ShardServer, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    images = _images()
    _serve(shard_server, images)
    on_disk: list[int] = []
    work = references_dir() / ".web.partial" / "download"
    shard_server.on_file = lambda name: on_disk.append(len(list(work.glob("*"))) if work.is_dir() else 0)
    config = FidConfig(weights=fake_weights, dims=64, batch_size=4)
    url = f"{shard_server.base}/files/shard-{{0000..{N_SHARDS - 1:04d}}}.tar"
    info = build_reference(url, name="web", config=config, device="cpu")
    build_reference(_folder(tmp_path / "tree", images), name="tree", config=config, device="cpu")
    web, tree = resolve_reference("web")[0], resolve_reference("tree")[0]
    assert info.n_images == web.n == tree.n == N_SHARDS * PER_SHARD and info.n_shards == N_SHARDS
    np.testing.assert_allclose(web.mu, tree.mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(web.sigma, tree.sigma, rtol=0, atol=1e-12)
    assert on_disk == [0] * N_SHARDS  # each download starts with no other shard on disk
    side = json.loads(sidecar_path(references_dir() / "web.npz").read_text())
    assert [s["url"] for s in side["shards"]] == expand_braces(url)
    assert [s["sha256"] for s in side["shards"]] == [hashlib.sha256(d).hexdigest()
                                                     for _, d in sorted(shard_server.files.items())]
    assert side["source_kind"] == "shards"
    assert side["weights_sha256"] == hashlib.sha256(fake_weights.read_bytes()).hexdigest()


def test_max_images_spreads_over_shards_with_seeded_draws(
    shard_server: ShardServer, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    _serve(shard_server, _images(1))
    config = FidConfig(weights=fake_weights, dims=64, batch_size=4)
    url = f"{shard_server.base}/files/shard-{{0000..{N_SHARDS - 1:04d}}}.tar"
    info = build_reference(url, name="a", config=config, device="cpu", max_images=5, shards=3)
    side = json.loads(sidecar_path(references_dir() / "a.npz").read_text())
    picked = [s["url"].rsplit("/", 1)[-1] for s in side["shards"]]
    assert picked == [f"shard-{i:04d}.tar" for i in spread_shards(N_SHARDS, 3)]
    assert [s["n_images"] for s in side["shards"]] == [2, 2, 1] and info.n_images == 5
    again = build_reference(url, name="b", config=config, device="cpu", max_images=5, shards=3)
    other = build_reference(url, name="c", config=config, device="cpu", max_images=5, shards=3, seed=7)
    assert np.array_equal(resolve_reference("a")[0].mu, resolve_reference("b")[0].mu) and again.n_images == 5
    assert not np.array_equal(resolve_reference("a")[0].mu, resolve_reference("c")[0].mu) and other.n_images == 5
    short = build_reference(url, name="d", config=config, device="cpu", max_images=10, shards=2)
    assert short.n_images == 6 and any("only 6 of the requested 10" in m for m in short.messages)


def test_hub_path_resolves_via_hf_endpoint_and_honours_the_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shard_server: ShardServer,
    fake_weights: Path, fake_extractors: list[FakeExtractor],  # noqa: F811
) -> None:
    import huggingface_hub.constants

    images = _images(2)
    _serve(shard_server, images)
    shard_server.gated = True
    monkeypatch.setenv("HF_ENDPOINT", shard_server.base)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    config = FidConfig(weights=fake_weights, dims=64, batch_size=4)
    with pytest.raises(DatasetError, match="gated.*HF_TOKEN"):
        build_reference(f"hf://datasets/{REPO}/train", name="hub", config=config, device="cpu")
    monkeypatch.setenv("HF_TOKEN", shard_server.token)
    src = resolve_source(f"hf://datasets/{REPO}/train")
    assert src.revision == COMMIT and [s.name for s in src.shards] == [f"train/{n}" for n in sorted(images)]
    assert all(f"/resolve/{COMMIT}/" in s.url for s in src.shards)
    picked = resolve_source(f"hf://datasets/{REPO}/shard-{{0001..0002}}.tar")
    assert [s.name for s in picked.shards] == ["train/shard-0001.tar", "train/shard-0002.tar"]
    assert len(resolve_source(f"hf://datasets/{REPO}/*-000[0-1].tar").shards) == 2
    with pytest.raises(DatasetError, match="matching val-"):
        resolve_source(f"hf://datasets/{REPO}/val-*.tar")
    info = build_reference(f"hf://datasets/{REPO}/train", name="hub", config=config, device="cpu")
    build_reference(_folder(tmp_path / "tree", images), name="tree", config=config, device="cpu")
    np.testing.assert_allclose(resolve_reference("hub")[0].sigma, resolve_reference("tree")[0].sigma, atol=1e-12)
    assert info.n_images == N_SHARDS * PER_SHARD
    auth = {path.split("/")[1]: a for path, a in shard_server.log}
    assert auth["api"] == auth["datasets"] == f"Bearer {shard_server.token}"
    assert auth["files"] == ""  # the token never follows the redirect to another host
    side = json.loads(sidecar_path(references_dir() / "hub.npz").read_text())
    assert side["revision"] == COMMIT and len(side["shards"]) == N_SHARDS


def test_hub_errors_are_one_clear_message(monkeypatch: pytest.MonkeyPatch, shard_server: ShardServer) -> None:
    import huggingface_hub.constants

    with pytest.raises(DatasetError, match="HF_HUB_OFFLINE"):
        resolve_source(f"hf://datasets/{REPO}")
    monkeypatch.setenv("HF_ENDPOINT", shard_server.base)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(DatasetError, match="no dataset repo other/repo"):
        resolve_source("hf://datasets/other/repo")
    with pytest.raises(DatasetError, match="no .tar shards"):
        resolve_source(f"hf://datasets/{REPO}")
    with pytest.raises(ConfigError, match="only dataset repos"):
        resolve_source("hf://models/x/y")


def test_http_errors_name_the_url(
    shard_server: ShardServer, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    config = FidConfig(weights=fake_weights, dims=64)
    with pytest.raises(DatasetError, match="missing-0000.tar: HTTP 404"):
        build_reference(f"{shard_server.base}/files/missing-{{0000..0001}}.tar", name="x", config=config, device="cpu")


def test_url_build_equals_folder_build_with_real_inception(
    tmp_path: Path, shard_server: ShardServer, fid_weights: Path  # noqa: F811
) -> None:
    """The same equality through the real network (generated random weights in pytorch-fid's format)."""
    gen = np.random.default_rng(6)
    images = {f"s-{k}.tar": {f"n{k}_0.png": gen.integers(0, 256, (24, 24, 3), dtype=np.uint8)} for k in range(3)}
    _serve(shard_server, images)
    config = FidConfig(batch_size=4)
    info = build_reference(f"{shard_server.base}/files/s-{{0..2}}.tar", name="web", config=config, device="cpu")
    build_reference(_folder(tmp_path / "tree", images), name="tree", config=config, device="cpu")
    web, tree = resolve_reference("web")[0], resolve_reference("tree")[0]
    assert info.n_images == 3 and info.extractor.startswith("pytorch-fid-inception-v3:dims=2048")
    assert float(np.abs(web.sigma).max()) > 0
    np.testing.assert_allclose(web.mu, tree.mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(web.sigma, tree.sigma, rtol=0, atol=1e-12)


def test_profile_and_fid_read_tar_shards_through_the_same_seam(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor], capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    from advisor.cli import main
    from engine.data.index import index_dataset
    from engine.data.profile import profile_dataset
    from engine.fid.run import measure_fid_against_reference

    images = _images(4)
    shards = tmp_path / "shards"
    shards.mkdir()
    for name, members in images.items():
        (shards / name).write_bytes(make_shard({k: png_bytes(a) for k, a in members.items()}))
    whole = (shards / "shard-0003.tar").read_bytes()
    (shards / "shard-0003.tar").write_bytes(whole[: 512 + 10])  # cut inside its first image: counted, not fatal
    tree = _folder(tmp_path / "tree", {k: v for k, v in images.items() if k != "shard-0003.tar"})
    from_shards, from_tree = profile_dataset(index_dataset(shards))[0], profile_dataset(index_dataset(tree))[0]
    assert from_shards.n_used == from_tree.n_used == 3 * PER_SHARD
    assert from_shards.class_counts == from_tree.class_counts  # classes from each sample's .cls member
    assert from_shards.skipped_by_reason.get("truncated", 0) >= 1 and from_shards.source == str(shards)
    first = index_dataset(shards).root
    assert index_dataset(shards).root == first and first.stat().st_mtime_ns == first.stat().st_mtime_ns
    config = FidConfig(weights=fake_weights, dims=64)
    build_reference(tree, name="ref", config=config, device="cpu")
    a = measure_fid_against_reference(index_dataset(shards), "ref", config=config, device="cpu")
    b = measure_fid_against_reference(index_dataset(tree), "ref", config=config, device="cpu")
    assert a.n_images == b.n_images == 3 * PER_SHARD and abs(a.fid - b.fid) < 1e-9
    assert main(["profile", str(shards), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_used"] == 3 * PER_SHARD


def test_shards_packed_with_a_leading_dot_folder_take_the_class_folder(tmp_path: Path) -> None:
    """``tar -cf s.tar -C data .`` stores ``./cat/0.png``: the class is ``cat``, not ``.``."""
    import io
    import tarfile

    from engine.data.index import index_dataset

    shards = tmp_path / "shards"
    shards.mkdir()
    buf = io.BytesIO()
    gen = np.random.default_rng(0)
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in ("./cat/0.png", "./cat/1.png", "./dog/0.png"):
            data = png_bytes(gen.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (shards / "s-0000.tar").write_bytes(buf.getvalue())
    index = index_dataset(shards)
    assert index.classes == ["cat", "dog"] and len(index.samples) == 3
