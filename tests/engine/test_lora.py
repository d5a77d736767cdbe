"""LoRA through peft, registered by one module (``engine/train/tuners/lora.py``): its knobs, its parameter count,
its start from the pretrained function, and the clear refusal when peft is missing."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
import torch

from engine.config.train import PilotConfig, TrainConfig
from engine.errors import ConfigError
from engine.train.methods import get_method, parse_methods, register_method, side_of, unregister_method
from engine.train.models import count_parameters
from engine.train.transfer import build_model, configure_trainable
from tests.gen_vit import TINY_VIT, make_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_peft = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None,
    reason="LoRA needs peft: pip install 'vpt-advisor[peft]' (the test extra installs it)")


def test_lora_is_registered_by_its_module_with_its_sources() -> None:
    spec = get_method("LoRA")
    assert spec.name == "lora" and spec.family == "lora" and side_of("lora") is None  # neither FT nor VPT
    assert spec.trains == {"head", "adapters"} and spec.prompts == "none" and not spec.backbone_dropout
    knobs = spec.adapter.model_dump() if spec.adapter is not None else {}
    assert knobs == {"rank": 8, "alpha": 8, "dropout": 0.1, "targets": ("qkv",)}
    cfg = TrainConfig.for_method("lora", batch_size=64)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.warmup_epochs) == ("adamw", 5e-3, 1e-4, 10)
    assert cfg.lr_scale_batch is False and cfg.effective_lr == 5e-3  # NOAH trains LoRA without the batch rescale
    assert PilotConfig(methods=("full", "lora")).grid_for("lora") == (5e-3, 1e-3, 1e-2)


@pytest.fixture
def lora_without_peft() -> Iterator[None]:
    """LoRA as it is registered on a machine where its package is missing."""
    spec = unregister_method("lora")
    register_method(spec.model_copy(update={"requires": ("vpt_advisor_no_such_package",)}))
    yield
    unregister_method("lora")
    register_method(spec)


@pytest.mark.usefixtures("lora_without_peft")
def test_selecting_lora_without_peft_fails_with_the_install_command() -> None:
    with pytest.raises(ConfigError, match=r"needs the optional package .*pip install 'vpt-advisor\[peft\]'"):
        parse_methods("full,lora")
    with pytest.raises(ValueError, match=r"vpt-advisor\[peft\]"):
        PilotConfig(methods=("full", "lora"))
    assert parse_methods("full,vpt") == ("full", "vpt-deep")  # the other methods are unaffected


@needs_peft
def test_trainable_parameters_of_vit_b16_by_formula() -> None:
    """ViT-B/16, rank 8 on the fused qkv of 12 blocks: A (8 x 768) + B (2304 x 8) per block, plus the head."""
    import timm

    with torch.device("meta"):
        backbone = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        model = build_model(backbone, "lora", 100)
    trainable, total = count_parameters(model)
    lora = 12 * 8 * (768 + 3 * 768)
    assert trainable == lora + 768 * 100 + 100
    assert total == 85_798_656 + lora + 768 * 100 + 100


@needs_peft
def test_lora_starts_from_the_pretrained_function_and_trains_only_its_weights() -> None:
    """B = 0 at init: the LoRA model computes exactly what the backbone with the same head computes."""
    torch.manual_seed(1)
    lora = build_model(make_vit(seed=0), "lora", 3)
    torch.manual_seed(1)
    probe = build_model(make_vit(seed=0), "linear", 3)
    x = torch.randn(4, 3, TINY_VIT["img_size"], TINY_VIT["img_size"])
    with torch.no_grad():
        assert torch.allclose(lora.eval()(x), probe.eval()(x), atol=1e-6)
    names = configure_trainable(lora, "lora")
    assert names == sorted(["head.bias", "head.weight", *(f"blocks.{b}.attn.qkv.lora_{m}.default.weight"
                                                          for b in range(2) for m in "AB")])
    with pytest.raises(ConfigError, match="no lora adapter weights"):
        configure_trainable(probe, "lora")  # a model built for another method
