"""Transfer methods compared by Han et al. (ICLR 2024): which model to build and what to train.

What a method builds and trains is read from its registry entry (``engine.train.methods``): every method gets
a fresh task head; prompt methods wrap the backbone in a :class:`PromptedViT` (shallow: prompts at the input
only; deep: at every block, Jia et al., 2022); methods with an adapter (LoRA) insert its weights into the
backbone; a method with stages (the paper's "FT-then-PT") is trained stage by stage by ``engine.train.loop.fit``.

The task head is initialised as the original VPT code initialises it (:func:`init_head`), and while the
backbone trains end to end without prompts (methods with ``backbone_dropout``) it uses the original ViT-B/16
config's dropout (:func:`set_backbone_dropout`); ``benchmarks/vtab/README.md`` lists the sources.

Trainable parameters are chosen from module identity (the prompt parameter object, the head
module, the adapter's modules), never by substring matches on parameter names, by the single function
:func:`configure_trainable`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from engine.config.train import FT_DROPOUT
from engine.errors import ConfigError
from engine.train.methods import Method, get_method
from engine.train.vpt import PromptedViT, as_vit

__all__ = ["Stage", "build_model", "configure_trainable", "set_train_mode", "init_head", "set_backbone_dropout",
           "HEAD_PRIOR_PROB"]

HEAD_PRIOR_PROB = 0.01
"""Class prior behind the original head's bias, ``-log((1 - 0.01) / 0.01)`` (KMnP/vpt src/models/mlp.py
lines 54-57)."""

Stage = Literal["ft", "pt"]
"""The two stages of a staged method (FT-then-PT): fine-tune (no prompts), then prompt-tune."""


def build_model(
    backbone: nn.Module,
    method: Method,
    num_classes: int,
    *,
    num_prompts: int = 10,
    prompt_dropout: float = 0.0,
    prompt_dropout_mode: str = "per-sample",
    ft_dropout: float = FT_DROPOUT,
    head_init: str = "vpt",
) -> nn.Module:
    """Attach a fresh linear head (and prompts for prompt methods) to ``backbone``.

    The backbone is used in place (pass a copy to keep a pristine one). Call
    :func:`configure_trainable` afterwards.

    Args:
        backbone: a timm ViT (e.g. from ``engine.train.models.create_backbone``).
        method: a registered method (``engine.train.methods``).
        num_classes: output classes of the new head.
        num_prompts: prompt tokens per set (prompt methods only).
        prompt_dropout: dropout on the prompts (VPT uses 0.1 for deep, 0 for shallow).
        prompt_dropout_mode: ``per-sample`` (the original) or ``shared`` prompt-dropout masks.
        ft_dropout: backbone dropout for methods with ``backbone_dropout`` (``TrainConfig.ft_dropout``; the
            original's 0.1); ignored by the other methods, whose backbone sees no dropout (in the original the
            prompted transformer keeps its encoder in eval mode whatever trains, KMnP/vpt
            src/models/vit_prompt/vit.py lines 89-100, so Mixed and the prompt stage of FT-then-PT see none).
        head_init: ``vpt`` (the original head init) or ``torch`` (``nn.Linear``'s default), see :func:`init_head`.

    Returns:
        A :class:`PromptedViT` for methods with prompts, else the backbone itself (with the method's adapter
        inserted, if it has one).
    """
    spec = get_method(method)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    vit = as_vit(backbone)
    vit.reset_classifier(num_classes)
    init_head(vit.get_classifier(), head_init)
    set_backbone_dropout(backbone, ft_dropout if spec.backbone_dropout else 0.0)
    if spec.adapter is not None:
        spec.adapter.attach(backbone)
    if spec.prompts == "none":
        model: nn.Module = backbone
    else:
        if num_prompts < 1:
            raise ConfigError(f"{spec.name} needs at least one prompt token, got num_prompts={num_prompts}")
        model = PromptedViT(backbone, num_prompts=num_prompts, deep=spec.prompts == "deep",
                            prompt_dropout=prompt_dropout, prompt_dropout_mode=prompt_dropout_mode)
    configure_trainable(model, spec.name)
    return model


def init_head(head: nn.Module, scheme: str) -> None:
    """Initialise a linear task head in place.

    ``vpt``: weight ~ N(0, 2 / num_classes) (kaiming-normal, fan-out, gain for ReLU) and every bias
    ``-log((1 - p) / p)`` with ``p`` = :data:`HEAD_PRIOR_PROB`, as the original's head (KMnP/vpt
    src/models/mlp.py lines 52-57 with ``special_bias=True`` from src/models/vit_models.py lines 159-165).
    A constant bias shifts every logit equally, so only the weight's scale changes training. ``torch``:
    keep ``nn.Linear``'s default init.

    Raises:
        ConfigError: an unknown scheme, or ``vpt`` on a head that is not an ``nn.Linear``.
    """
    if scheme == "torch":
        return
    if scheme != "vpt":
        raise ConfigError(f"unknown head_init {scheme!r}; choose from vpt, torch")
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"head_init 'vpt' needs a linear head, got {type(head).__name__}")
    with torch.no_grad():
        nn.init.kaiming_normal_(head.weight, a=0, mode="fan_out")
        if head.bias is not None:
            head.bias.fill_(-math.log((1.0 - HEAD_PRIOR_PROB) / HEAD_PRIOR_PROB))


def set_backbone_dropout(backbone: nn.Module, rate: float) -> None:
    """Set the dropout of a timm ViT as the original ViT-B/16 config does: ``rate`` after the position
    embedding (``pos_drop``) and after both MLP layers of every block (``mlp.drop1``/``mlp.drop2``); the
    attention dropouts stay 0 (KMnP/vpt src/configs/vit_configs.py lines 34-35, applied in
    src/models/vit_backbones/vit.py lines 81-82, 121-136, 169-183). Active only in train mode.

    Raises:
        ConfigError: ``rate`` outside [0, 1), or a backbone without these modules while ``rate > 0``.
    """
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"ft_dropout must be in [0, 1), got {rate}")
    drops = [getattr(backbone, "pos_drop", None)]
    for block in getattr(backbone, "blocks", ()):
        mlp = getattr(block, "mlp", None)
        drops += [getattr(mlp, "drop1", None), getattr(mlp, "drop2", None)]
    if rate > 0 and (not drops[1:] or any(not isinstance(d, nn.Dropout) for d in drops)):
        raise ConfigError(f"{type(backbone).__name__} has no timm ViT dropout modules; set ft_dropout=0")
    for drop in drops:
        if isinstance(drop, nn.Dropout):
            drop.p = float(rate)


def _parts(model: nn.Module) -> tuple[nn.Module, nn.Module, nn.Parameter | None]:
    """Return ``(backbone, head, prompts)`` by identity."""
    if isinstance(model, PromptedViT):
        return model.backbone, model.head, model.prompts
    if hasattr(model, "get_classifier"):
        return model, as_vit(model).get_classifier(), None
    raise ConfigError(f"{type(model).__name__} is neither a timm ViT nor a PromptedViT")


def configure_trainable(model: nn.Module, method: Method, *, stage: Stage | None = None) -> list[str]:
    """Set ``requires_grad`` for ``method`` and return the names of the trainable parameters.

    Frozen parameters get ``requires_grad=False`` and ``grad=None`` so autograd keeps no weight
    gradients (and saves no inputs that only weight gradients need) and no optimizer state exists
    for them.

    Args:
        model: what :func:`build_model` returned.
        method: the method the model was built for.
        stage: for staged methods only: ``"ft"`` (the first stage: backbone and head, prompts off) or
            ``"pt"`` (the last stage, the default: the final model).

    Returns:
        Sorted names of the trainable parameters.
    """
    spec = get_method(method)
    backbone, head, prompts = _parts(model)
    if (spec.prompts != "none") != (prompts is not None):
        raise ConfigError(f"model type {type(model).__name__} does not fit method {spec.name!r}")
    if len(spec.stage_names) == 1 and stage is not None:
        raise ConfigError(f"stage={stage!r} only applies to methods with stages, not {spec.name!r}")
    effective = spec
    if len(spec.stage_names) > 1:  # FT-then-PT: the first stage fine-tunes, the last tunes prompts
        effective = get_method(spec.stage_names[0] if stage == "ft" else spec.stage_names[-1])
        assert isinstance(model, PromptedViT)
        model.prompts_enabled = effective.prompts != "none"

    keep: set[int] = {id(p) for p in head.parameters()} if "head" in effective.trains else set()
    if "backbone" in effective.trains:
        keep |= {id(p) for p in backbone.parameters()}
    if prompts is not None and "prompts" in effective.trains:
        keep.add(id(prompts))
    if effective.adapter is not None and "adapters" in effective.trains:
        adapter = effective.adapter.parameters(backbone)
        if not adapter:
            raise ConfigError(f"model has no {spec.name} adapter weights; build it with "
                              f"build_model(..., {spec.name!r})")
        keep |= {id(p) for p in adapter}
    names: list[str] = []
    for name, param in model.named_parameters():
        train = id(param) in keep
        param.requires_grad_(train)
        if train:
            names.append(name)
        else:
            param.grad = None
    return sorted(names)


def set_train_mode(model: nn.Module, *, frozen_eval: bool = True) -> None:
    """Put ``model`` in training mode; with ``frozen_eval`` keep a frozen backbone in ``eval()``.

    The original VPT keeps the frozen encoder in eval mode while training prompts (backbone dropout
    and drop-path off). With ``frozen_eval=True`` every backbone module except the head is put in
    eval mode whenever no backbone weight is trainable; prompt dropout (owned by the wrapper) stays
    active. With ``frozen_eval=False`` everything trains as usual.
    """
    model.train()
    if not frozen_eval:
        return
    backbone, head, _ = _parts(model)
    head_ids = {id(p) for p in head.parameters()}
    if any(p.requires_grad for p in backbone.parameters() if id(p) not in head_ids):
        return
    backbone.eval()
    head.train()
