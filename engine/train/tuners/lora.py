"""LoRA (Hu et al., 2021, arXiv 2106.09685) on timm ViTs through huggingface/peft: the whole method, in one module.

LoRA freezes the pretrained weights and learns a low-rank update ``(alpha / r) B A`` of chosen linear layers
(``A`` random, ``B`` zero, so training starts from the pretrained model). It is a third family next to FT and VPT:
it answers neither side of the paper's question, and the pilot compares it with full finetuning.

Settings and their sources:

* rank 8 on every block: NOAH's LoRA baseline on VTAB-1k (ZhangYuanhan-AI/NOAH
  ``experiments/LoRA/ViT-B_prompt_lora_8.yaml``, ``LORA_DIM: 8`` on all 12 blocks);
* alpha = rank (scaling 1): the LoRA paper sets alpha to the first rank tried and does not tune it (Sec. 4.1);
* LoRA dropout 0.1: NOAH's ``supernet_train_prompt.py`` default ``--drop_rate_LoRA 0.1``;
* AdamW, weight decay 1e-4, base lr 5e-3 without the batch/256 rescale, 10 warm-up epochs of 100, cosine: NOAH's
  VTAB LoRA script (``configs/LoRA/VTAB/slurm_train_lora_vtab.sh``: lr 0.005, wd 0.0001, batch 64, 100 epochs)
  with its training script's defaults (``--opt adamw``, ``--warmup-epochs 10``, ``--sched cosine``, the linear
  lr scaling commented out); AdamW's epsilon is the project's (``TrainConfig.adamw_eps``, the paper code's 1e-6),
  not timm's 1e-8 that NOAH's script gets (ours: one epsilon for every AdamW method);
* adapted layers: timm's fused attention ``qkv`` projection (ours: NOAH's ViT keeps separate projections; on a
  fused layer one rank-r update serves q, k and v); pilot grid 5e-3, 1e-3, 1e-2 (ours: NOAH's value first, then
  the neighbours its script lists).

peft is optional (``pip install 'vpt-advisor[peft]'``): without it the method is listed as unavailable and
selecting it fails with that instruction. peft is imported only when a LoRA model is built.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from engine.errors import ConfigError
from engine.train.methods import Adapter, MethodSpec, register_method

__all__ = ["LoraAdapter", "LORA"]


class LoraAdapter(Adapter):
    """LoRA's knobs, and how its weights go into a timm ViT (peft's ``inject_adapter_in_model``)."""

    rank: int = Field(8, ge=1, description="Rank r of each update (NOAH's VTAB-1k LoRA: 8).")
    alpha: int = Field(8, ge=1, description="Scale numerator: the update is (alpha / r) B A (LoRA: alpha = r).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA branch's input (NOAH: 0.1).")
    targets: tuple[str, ...] = Field(("qkv",), min_length=1,
                                     description="Names of the linear layers adapted (timm ViT: qkv, proj, fc1, fc2).")

    def attach(self, backbone: Any) -> None:
        """Wrap the target linears of ``backbone`` in place with fresh LoRA layers (B = 0: same outputs at start)."""
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as exc:  # find_spec said yes but it does not import (broken install)
            raise ConfigError(f"method 'lora' needs peft, which does not import ({exc}): "
                              "pip install 'vpt-advisor[peft]'") from exc
        config = LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=list(self.targets), bias="none")
        try:
            inject_adapter_in_model(config, backbone)
        except ValueError as exc:  # no module of that name: a backbone that is not a timm ViT
            raise ConfigError(f"LoRA found no layer named {', '.join(self.targets)} in {type(backbone).__name__} "
                              f"({exc})") from exc

    def parameters(self, model: Any) -> list[Any]:
        """The A and B matrices of every LoRA layer in ``model`` (peft's ``LoraLayer`` modules, by type)."""
        from peft.tuners.lora import LoraLayer

        out: list[Any] = []
        for module in model.modules():
            if isinstance(module, LoraLayer):
                out += [*module.lora_A.parameters(), *module.lora_B.parameters()]
        return out


LORA = register_method(MethodSpec(
    name="lora", summary="LoRA: low-rank updates of the attention projections (peft), and the head", label="LoRA",
    colour="#000000", family="lora", trains=frozenset({"head", "adapters"}), adapter=LoraAdapter(),
    optimizer="adamw", lr=5e-3, lr_scale_batch=False, weight_decay=1e-4, warmup_epochs=10,
    pilot_lrs=(5e-3, 1e-3, 1e-2), requires=("peft",), extra="peft"))
"""The registered LoRA method."""
