"""How the FID pipeline sizes its forward passes, loads its network once, and folds BatchNorm.

The automatic batch (16 on a CPU, 50 on a GPU) is a speed choice measured by ``benchmarks.perf.fid_speed
--batch-sweep``; these tests check the plumbing: which batch each path runs, that an unfinished reference build
keeps the batch it started with, that ``fid A B`` builds the network once, and that the in-place BatchNorm fold
gives exactly the parameters of torch's own fusion.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config.fid import ACCELERATOR_PASS_BATCH, CPU_PASS_BATCH, FidConfig, device_type
from engine.fid import features as features_mod
from engine.fid.features import _fold_batchnorm, load_inception
from engine.fid.inception import BasicConv2d, FidInceptionV3, load_fid_state
from engine.fid.refbuild import build_reference
from engine.fid.reference import resolve_reference
from engine.fid.run import compute_fid, extract_file_features
from engine.paths import references_dir
from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor


def _pngs(root: Path, n: int, seed: int = 0, size: int = 16) -> list[Path]:
    gen = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        paths.append(root / f"{i:03d}.png")
        write_png(paths[-1], gen.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return paths


def test_the_automatic_batch_depends_on_the_device_and_an_explicit_one_wins() -> None:
    auto = FidConfig()
    assert auto.batch_size is None
    assert auto.batch_for("cpu") == CPU_PASS_BATCH and auto.batch_for("cuda") == ACCELERATOR_PASS_BATCH
    assert auto.for_device("cpu").batch_size == CPU_PASS_BATCH
    fixed = FidConfig(batch_size=7)
    assert fixed.batch_for("cpu") == fixed.batch_for("cuda") == 7 and fixed.for_device("cuda") is fixed
    assert device_type(torch.device("cuda", 1)) == "cuda" and device_type("cuda:0") == "cuda"
    assert device_type(torch.device("cpu")) == device_type("cpu") == "cpu"


def test_fid_extraction_on_a_cpu_runs_the_automatic_batch(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]
) -> None:
    paths = _pngs(tmp_path / "a", CPU_PASS_BATCH * 2 + 5)
    res = extract_file_features(paths, FidConfig(weights=fake_weights, dims=64, use_cache=False), "cpu")
    assert len(res.ok) == len(paths)
    assert [s[0] for s in fake_extractors[-1].shapes] == [CPU_PASS_BATCH, CPU_PASS_BATCH, 5]
    res = extract_file_features(paths, FidConfig(weights=fake_weights, dims=64, batch_size=10, use_cache=False), "cpu")
    assert [s[0] for s in fake_extractors[-1].shapes] == [10, 10, 10, 7]


def test_an_unfinished_build_resumes_with_its_own_batch_when_none_is_given(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]
) -> None:
    """A build begun with one batch (an older default, or --batch-size) resumes instead of starting over when
    the rerun leaves the batch automatic; its statistics equal an uninterrupted build at that batch."""
    src = tmp_path / "src"
    for cls, seed in (("a", 1), ("b", 2)):
        _pngs(src / cls, 9, seed=seed)
    fixed = FidConfig(weights=fake_weights, dims=64, batch_size=3, use_cache=False)
    build_reference(src, name="full", config=fixed, device="cpu", checkpoint_every=6)

    def boom(done: int, total: int) -> None:
        if done >= 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_reference(src, name="resumed", config=fixed, device="cpu", checkpoint_every=6, on_progress=boom)
    made = len(fake_extractors)
    auto = fixed.model_copy(update={"batch_size": None})
    build_reference(src, name="resumed", config=auto, device="cpu", checkpoint_every=6)
    rerun = fake_extractors[made:]
    assert sum(e.n_images for e in rerun) == 18 - 12  # continued from the checkpoint, not from the start
    assert {s[0] for e in rerun for s in e.shapes} == {3}
    (full, _), (resumed, info) = resolve_reference("full"), resolve_reference("resumed")
    np.testing.assert_array_equal(resumed.mu, full.mu)
    np.testing.assert_array_equal(resumed.sigma, full.sigma)
    assert info.n_images == 18 and not (references_dir() / ".resumed.partial").exists()
    build_reference(src, name="fresh", config=auto, device="cpu")  # nothing unfinished: the automatic batch
    assert {s[0] for s in fake_extractors[-1].shapes} <= {CPU_PASS_BATCH, 18 - CPU_PASS_BATCH}


def test_batchnorm_fold_in_place_gives_the_parameters_of_torchs_fusion(
    fid_weights: Path,
) -> None:
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    state = torch.load(fid_weights, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for key, value in state.items():  # statistics far from the identity, so the fold has work to do
        if key.endswith("running_var"):
            state[key] = value.abs() + torch.rand(value.shape, generator=gen)
        elif key.endswith(("running_mean", "bn.bias")):
            state[key] = torch.randn(value.shape, generator=gen)
    ours = FidInceptionV3(64).eval()
    load_fid_state(ours, state)
    theirs = copy.deepcopy(ours)
    assert _fold_batchnorm(ours) == sum(isinstance(m, BasicConv2d) for m in theirs.modules()) > 0
    for module in theirs.modules():
        if isinstance(module, BasicConv2d):
            module.conv, module.bn = fuse_conv_bn_eval(module.conv, module.bn), nn.Identity()
    a, b = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same elementwise ops: same bits
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ours.modules())


@pytest.mark.slow
def test_fid_of_two_folders_builds_the_network_once(
    tmp_path: Path, fid_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []
    real = features_mod._build_inception

    def counting(*args: object, **kwargs: object) -> object:
        builds.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(features_mod, "_LOADED", {})
    monkeypatch.setattr(features_mod, "_build_inception", counting)
    _pngs(tmp_path / "a", 3, seed=1)
    _pngs(tmp_path / "b", 3, seed=2)
    config = FidConfig(dims=64, use_cache=False)
    result = compute_fid(tmp_path / "a", tmp_path / "b", config=config, device="cpu")
    assert result.fid is not None and result.a.n_images == result.b.n_images == 3
    assert len(builds) == 1
    cpu = torch.device("cpu")
    assert load_inception(config, cpu) is load_inception(config, cpu) and len(builds) == 1
    other = load_inception(config.model_copy(update={"fuse_batchnorm": False}), cpu)  # another network
    assert len(builds) == 2 and other is not load_inception(config, cpu) and len(builds) == 3
