"""VPT prompt insertion checked by hand against a manual loop over a tiny timm ViT's blocks."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import ConfigError
from engine.train.vpt import PromptedViT, prompt_init_bound
from tests.gen_vit import make_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

P = 3


def _manual(vit: torch.nn.Module, prompts: torch.Tensor, x: torch.Tensor, *, deep: bool) -> torch.Tensor:
    """VPT written out directly: CLS, prompts (no position embedding), patches; deep replaces prompts."""
    tokens = vit.patch_embed(x)  # (B, N, D), position embedding not added yet
    cls = vit.cls_token.expand(x.shape[0], -1, -1)
    seq = torch.cat((cls, tokens), dim=1) + vit.pos_embed  # timm's original layout: pos-embed covers CLS
    b = x.shape[0]
    seq = torch.cat((seq[:, :1], prompts[0].expand(b, -1, -1), seq[:, 1:]), dim=1)
    for i, block in enumerate(vit.blocks):
        if deep and i > 0:
            seq = torch.cat((seq[:, :1], prompts[i].expand(b, -1, -1), seq[:, 1 + P:]), dim=1)
        seq = block(seq)
    seq = vit.norm(seq)
    return vit.head(seq[:, 0])


@pytest.mark.parametrize("deep", [True, False])
def test_matches_manual_loop(deep: bool) -> None:
    vit = make_vit(seed=3, num_classes=4)
    model = PromptedViT(vit, num_prompts=P, deep=deep, prompt_dropout=0.0).eval()
    assert model.prompts.shape == ((len(vit.blocks) if deep else 1), P, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _manual(vit, model.prompts, x, deep=deep), rtol=1e-5, atol=1e-6)


def test_deep_prompts_replace_previous_outputs() -> None:
    """The block-1 prompt set is used (it enters before the last block of the tiny ViT)."""
    vit = make_vit(seed=3, num_classes=4)
    model = PromptedViT(vit, num_prompts=P, deep=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model.forward_features(x)
        model.prompts[1].add_(torch.randn_like(model.prompts[1]))  # not a constant: LayerNorm removes those
        after = model.forward_features(x)
    assert before.shape == after.shape == (2, 1 + 16, 32)  # prompt outputs are dropped after the norm
    assert (before[:, 0] - after[:, 0]).abs().max() > 1e-3


def test_init_bound_is_vpts() -> None:
    assert prompt_init_bound(16, 768) == pytest.approx(math.sqrt(6 / (3 * 256 + 768)))
    assert prompt_init_bound(16, 768) == pytest.approx(0.0625, abs=5e-4)
    model = PromptedViT(make_vit(seed=0), num_prompts=50, deep=True)
    bound = prompt_init_bound(8, 32)
    assert model.prompts.abs().max() <= bound
    assert model.prompts.abs().max() > 0.9 * bound  # uniform over the whole interval, not a narrower init


def test_prompt_dropout_only_in_training() -> None:
    model = PromptedViT(make_vit(seed=0, num_classes=2), num_prompts=8, deep=True, prompt_dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    model.train()
    model.backbone.eval()
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
        model.eval()
        torch.testing.assert_close(model(x), model(x))


def test_register_tokens_keep_their_place() -> None:
    """Prompts go after all prefix tokens (CLS + registers); block inputs grow by exactly P."""
    vit = make_vit(seed=0, num_classes=2, reg_tokens=2)
    model = PromptedViT(vit, num_prompts=P, deep=True).eval()
    seen: list[int] = []
    vit.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
        plain = vit(torch.randn(2, 3, 32, 32))
    assert out.shape == plain.shape == (2, 2)
    assert seen == [1 + 2 + P + 16, 1 + 2 + 16]
    assert model.prefix_tokens == 3


def test_no_class_token_with_average_pooling() -> None:
    vit = make_vit(seed=0, num_classes=2, class_token=False, global_pool="avg")
    model = PromptedViT(vit, num_prompts=P, deep=False).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    vit = make_vit(seed=0, num_classes=2)
    model = PromptedViT(vit, num_prompts=P, deep=True).eval()
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    ref = model.prompts.grad.clone()
    model.prompts.grad = None
    model.grad_checkpointing = True
    model(x).sum().backward()
    torch.testing.assert_close(model.prompts.grad, ref)


def test_refuses_non_vit_and_dynamic_size() -> None:
    with pytest.raises(ConfigError, match="not a timm VisionTransformer"):
        PromptedViT(torch.nn.Linear(2, 2), num_prompts=1, deep=True)
    with pytest.raises(ConfigError, match="dynamic_img_size"):
        PromptedViT(make_vit(seed=0, dynamic_img_size=True), num_prompts=1, deep=True)
