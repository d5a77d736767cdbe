"""Backbone creation: local weight formats (generated), the hub cache, offline errors, random init."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ConfigError, UnknownNameError, WeightsError, WeightsNotFoundError
from engine.train.models import create_backbone
from tests.gen_vit import (
    TINY_VIT,
    TINY_VIT_NAME,
    make_vit,
    to_jax_arrays,
    write_weights,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def source_vit() -> torch.nn.Module:
    return make_vit(seed=7)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors", ".pth"])
def test_local_weights_reproduce_outputs(tmp_path: Path, source_vit: torch.nn.Module, suffix: str) -> None:
    path = write_weights(source_vit, tmp_path / f"w{suffix}")
    model = create_backbone(TINY_VIT_NAME, weights=path, **TINY_VIT).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source_vit(x), rtol=0, atol=1e-6)
    fresh = make_vit(seed=8)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), source_vit(x))  # the check above can fail


def test_npz_uses_google_key_names(source_vit: torch.nn.Module) -> None:
    arrays = to_jax_arrays(source_vit)
    assert arrays["embedding/kernel"].shape == (8, 8, 3, 32)  # HWIO
    assert arrays["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel"].shape == (32, 2, 16)
    assert arrays["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"].shape == (32, 128)


def test_npz_position_embedding_is_resampled(tmp_path: Path, source_vit: torch.nn.Module) -> None:
    path = write_weights(source_vit, tmp_path / "w.npz")
    bigger = create_backbone(TINY_VIT_NAME, weights=path, **{**TINY_VIT, "img_size": 48})
    assert bigger.pos_embed.shape == (1, 1 + 36, 32)


def test_hub_cache_is_used_offline(source_vit: torch.nn.Module) -> None:
    """Weights placed where huggingface_hub caches timm's repo load without network."""
    from huggingface_hub import constants

    name = "vit_tiny_patch16_224.augreg_in21k"
    repo = Path(constants.HF_HUB_CACHE) / f"models--timm--{name}"
    commit = "1" * 40
    write_weights(source_vit, repo / "snapshots" / commit / "model.safetensors")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    try:
        model = create_backbone(name, **TINY_VIT).eval()
    finally:  # the hub cache path is fixed per session: leave nothing for later tests
        shutil.rmtree(repo)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source_vit(x), rtol=0, atol=1e-6)


def test_offline_without_cache_raises_weights_not_found() -> None:
    with pytest.raises(WeightsNotFoundError, match="not in the local cache.*--weights PATH"):
        create_backbone("vit_base_patch16_224.orig_in21k", **TINY_VIT)


def test_random_init_needs_the_flag() -> None:
    # without the flag and without weights, the pretrained path is taken (and fails offline)
    with pytest.raises(WeightsNotFoundError):
        create_backbone("vit_small_patch16_224.augreg_in21k", **TINY_VIT)
    model = create_backbone(TINY_VIT_NAME, random_init=True, **TINY_VIT)
    assert model.num_classes == 0


def test_weights_and_random_init_contradict(tmp_path: Path, source_vit: torch.nn.Module) -> None:
    path = write_weights(source_vit, tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="contradict"):
        create_backbone(TINY_VIT_NAME, weights=path, random_init=True, **TINY_VIT)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_backbone(TINY_VIT_NAME, weights=tmp_path / "nope.npz", **TINY_VIT)


def test_wrong_architecture_is_a_weights_error(tmp_path: Path) -> None:
    other = make_vit(seed=1, embed_dim=48, num_heads=2)
    for suffix in (".npz", ".safetensors", ".pth"):
        path = write_weights(other, tmp_path / f"other{suffix}")
        with pytest.raises(WeightsError, match=str(path.name)):
            create_backbone(TINY_VIT_NAME, weights=path, **TINY_VIT)


def test_unreadable_and_unknown_formats(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        create_backbone(TINY_VIT_NAME, weights=bad, **TINY_VIT)
    unknown = tmp_path / "w.ckpt"
    unknown.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unknown weights format"):
        create_backbone(TINY_VIT_NAME, weights=unknown, **TINY_VIT)
    not_npz = tmp_path / "empty.npz"
    np.savez(not_npz, foo=np.zeros(3))
    with pytest.raises(WeightsError, match="Google ViT"):
        create_backbone(TINY_VIT_NAME, weights=not_npz, **TINY_VIT)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    """``weights_only=True``: a checkpoint that needs arbitrary unpickling is not loaded."""
    import collections

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": collections.Counter(a=1)}, path)
    with pytest.raises(WeightsError):
        create_backbone(TINY_VIT_NAME, weights=path, **TINY_VIT)


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match="vit_base_patch16_224"):
        create_backbone("vit_bsae_patch16_224", random_init=True)


def test_non_vit_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a timm VisionTransformer"):
        create_backbone("resnet18", random_init=True)
