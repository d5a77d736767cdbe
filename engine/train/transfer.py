"""Transfer methods compared by Han et al. (ICLR 2024): which model to build and what to train.

``full`` (FT) trains every weight; ``linear`` only the head; ``vpt-shallow`` / ``vpt-deep`` only
the prompts and the head (Jia et al., 2022); ``mixed`` trains VPT-deep prompts *and* every
backbone weight (the paper's "Mixed"); ``ft-then-pt`` first fine-tunes the backbone without prompts,
then freezes it and tunes VPT-deep prompts (the paper's "FT-then-PT"; the two stages are run by
``engine.train.loop.fit``).

Trainable parameters are chosen from module identity (the prompt parameter object, the head
module), never by substring matches on parameter names, by the single function
:func:`configure_trainable`.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from engine.errors import ConfigError
from engine.train.methods import Method, get_method
from engine.train.vpt import PromptedViT, as_vit

__all__ = ["Stage", "build_model", "configure_trainable", "set_train_mode"]

Stage = Literal["ft", "pt"]
"""The two stages of ft-then-pt: fine-tune (no prompts), then prompt-tune."""


def build_model(
    backbone: nn.Module,
    method: Method,
    num_classes: int,
    *,
    num_prompts: int = 10,
    prompt_dropout: float = 0.0,
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

    Returns:
        The backbone itself for ``full``/``linear``; a :class:`PromptedViT` otherwise
        (``mixed`` and ``ft-then-pt`` use deep prompts).
    """
    spec = get_method(method)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    as_vit(backbone).reset_classifier(num_classes)
    if spec.prompts == "none":
        model: nn.Module = backbone
    else:
        if num_prompts < 1:
            raise ConfigError(f"{spec.name} needs at least one prompt token, got num_prompts={num_prompts}")
        model = PromptedViT(backbone, num_prompts=num_prompts, deep=spec.prompts == "deep",
                            prompt_dropout=prompt_dropout)
    configure_trainable(model, spec.name)
    return model


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
        stage: for ``ft-then-pt`` only: ``"ft"`` (backbone and head, prompts off) or ``"pt"``
            (prompts and head, the default: the final model).

    Returns:
        Sorted names of the trainable parameters.
    """
    spec = get_method(method)
    backbone, head, prompts = _parts(model)
    if (spec.prompts != "none") != (prompts is not None):
        raise ConfigError(f"model type {type(model).__name__} does not fit method {spec.name!r}")
    if len(spec.stage_names) == 1 and stage is not None:
        raise ConfigError(f"stage={stage!r} only applies to multi-stage methods such as ft-then-pt")
    effective = spec
    if len(spec.stage_names) > 1:  # ft-then-pt: the first stage fine-tunes, the last tunes prompts
        effective = get_method(spec.stage_names[0] if stage == "ft" else spec.stage_names[-1])
        assert isinstance(model, PromptedViT)
        model.prompts_enabled = effective.prompts != "none"

    keep: set[int] = {id(p) for p in head.parameters()} if "head" in effective.trains else set()
    if "backbone" in effective.trains:
        keep |= {id(p) for p in backbone.parameters()}
    if prompts is not None and "prompts" in effective.trains:
        keep.add(id(prompts))
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
