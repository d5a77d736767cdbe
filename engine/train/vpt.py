"""Visual prompt tuning (Jia et al., ECCV 2022) on a timm VisionTransformer, without forking timm.

Semantics follow the original VPT code as described in the paper and its README (re-implemented,
not copied):

* ``P`` learnable prompt tokens are inserted **after the CLS token** (after all prefix tokens:
  CLS and any register tokens) and **after the position embedding**, so prompts get none.
* **Shallow**: one prompt set enters before block 0 and travels through every block.
* **Deep**: before every block ``i >= 1`` the ``P`` prompt outputs of block ``i-1`` are *replaced*
  by a fresh prompt set, so a ``L``-block ViT has ``L`` prompt sets (``L * P * D`` parameters).
* Init: ``uniform(-v, v)`` with ``v = sqrt(6 / (3 * patch * patch + D))`` (Xavier-uniform with the
  patch fan-in), i.e. about 0.0625 for ViT-B/16.
* Prompt dropout is applied to the prompts every time they are inserted (0.1 for deep in VPT), after
  they are expanded to the batch, so every image draws its own mask, as the original does
  (KMnP/vpt ``src/models/vit_prompt/vit.py`` lines 82 and 114-115). ``prompt_dropout_mode="shared"``
  draws one mask per prompt set for the whole batch instead. Masks come from :func:`drop_prompts`,
  which ``engine.train.batched_vpt`` shares, so both draw the same masks from the same generator state.
* The prompt outputs are dropped after the final norm, then timm's ``forward_head`` runs
  unchanged (CLS pooling and the linear head for ViT-B/16), so the head sees exactly the token
  layout it was built for.

The wrapper reuses the backbone's ``patch_embed``, ``_pos_embed``, ``patch_drop``, ``norm_pre``,
``blocks``, ``norm`` and ``forward_head``, so timm's fused SDPA attention, AMP and everything else
keep working; :func:`embed_tokens`, :func:`insert_prompts` and :func:`remove_prompts` are shared
with the batched sweep (``engine.train.batched_vpt``). Whether the frozen backbone stays in ``eval()``
during training is decided by the training loop (``engine.train.transfer.set_train_mode``), not hidden here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from engine.errors import ConfigError

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

__all__ = ["PromptedViT", "prompt_init_bound", "drop_prompts", "PROMPT_DROPOUT_MODES", "as_vit", "vit_geometry",
           "embed_tokens", "insert_prompts", "remove_prompts"]

PROMPT_DROPOUT_MODES = ("per-sample", "shared")


def prompt_init_bound(patch_size: int, embed_dim: int) -> float:
    """VPT's uniform init bound ``sqrt(6 / (3 * patch**2 + embed_dim))``."""
    return math.sqrt(6.0 / float(3 * patch_size * patch_size + embed_dim))


def drop_prompts(
    prompts: torch.Tensor, batch: int, p: float, *, per_sample: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Expand one prompt set ``(P, D)`` to ``(batch, P, D)`` with inverted dropout of probability ``p``.

    ``per_sample`` draws a ``(batch, P, D)`` mask (one per image), otherwise one ``(P, D)`` mask shared by
    the batch. Uniforms come from ``generator`` (or the global generator of the prompts' device); a value
    below ``1 - p`` keeps an element, scaled by ``1 / (1 - p)``. The mask is kept as booleans, so autograd
    stores one byte per element.
    """
    expanded = prompts.unsqueeze(0).expand(batch, -1, -1)
    if p <= 0.0:
        return expanded
    shape = (batch, *prompts.shape) if per_sample else tuple(prompts.shape)
    drop = torch.rand(shape, device=prompts.device, generator=generator) >= 1.0 - p
    return expanded.mul(1.0 / (1.0 - p)).masked_fill(drop, 0.0)


_VIT_ATTRIBUTES = ("patch_embed", "_pos_embed", "blocks", "norm", "forward_head", "num_prefix_tokens")
"""What the prompt wrappers use of a timm ``VisionTransformer``."""


def as_vit(module: nn.Module) -> VisionTransformer:
    """``module`` typed as a timm ``VisionTransformer`` once it has the attributes VPT uses.

    Raises:
        ConfigError: ``module`` is not a timm ViT.
    """
    for attr in _VIT_ATTRIBUTES:
        if not hasattr(module, attr):
            raise ConfigError(f"{type(module).__name__} is not a timm VisionTransformer (no {attr}); VPT needs one")
    return cast("VisionTransformer", module)


def vit_geometry(backbone: VisionTransformer) -> tuple[int, int, int]:
    """``(blocks, embedding width, patch size)`` of a timm ViT."""
    patch = backbone.patch_embed.patch_size
    return len(backbone.blocks), int(backbone.embed_dim), int(patch[0] if isinstance(patch, tuple | list) else patch)


def embed_tokens(backbone: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """timm's token embedding of normalised images: patches, prefix tokens + position embedding, norm_pre."""
    x = backbone.patch_embed(images)
    x = backbone._pos_embed(x)
    x = backbone.patch_drop(x)
    return backbone.norm_pre(x)


def insert_prompts(x: torch.Tensor, prompts: torch.Tensor, prefix: int, *, replace: bool) -> torch.Tensor:
    """Put ``prompts`` ``(B, P, D)`` after the ``prefix`` tokens of ``x`` ``(B, N, D)``.

    With ``replace`` the ``P`` tokens after the prefix are the previous block's prompt outputs and are
    overwritten (VPT-deep); otherwise the prompts are inserted and the sequence grows by ``P``.
    """
    rest = x[:, prefix + prompts.shape[1]:] if replace else x[:, prefix:]
    return torch.cat((x[:, :prefix], prompts, rest), dim=1)


def remove_prompts(x: torch.Tensor, prefix: int, num_prompts: int) -> torch.Tensor:
    """Drop the ``num_prompts`` prompt outputs after the prefix tokens (before timm's pooling and head)."""
    return torch.cat((x[:, :prefix], x[:, prefix + num_prompts:]), dim=1)


class PromptedViT(nn.Module):
    """A timm ``VisionTransformer`` with VPT prompt tokens.

    Args:
        backbone: the timm ViT (owned by this module afterwards; its ``head`` is the task head).
        num_prompts: prompt tokens per set (``P``); 0 gives the plain backbone.
        deep: one prompt set per block (VPT-deep) instead of one set at the input (VPT-shallow).
        prompt_dropout: dropout probability on the prompts.
        prompt_dropout_mode: ``per-sample`` (a mask per image, the original) or ``shared`` (one per batch).

    Attributes:
        prompts: parameter of shape ``(L, P, D)`` for deep, ``(1, P, D)`` for shallow.
        prompts_enabled: when False the forward pass skips prompts (the FT stage of FT-then-PT).
        grad_checkpointing: recompute each block in the backward pass (saves activation memory).
    """

    def __init__(self, backbone: nn.Module, *, num_prompts: int, deep: bool, prompt_dropout: float = 0.0,
                 prompt_dropout_mode: str = "per-sample") -> None:
        super().__init__()
        vit = as_vit(backbone)
        if num_prompts < 0:
            raise ConfigError(f"num_prompts must be >= 0, got {num_prompts}")
        if not 0.0 <= prompt_dropout < 1.0:
            raise ConfigError(f"prompt_dropout must be in [0, 1), got {prompt_dropout}")
        if prompt_dropout_mode not in PROMPT_DROPOUT_MODES:
            raise ConfigError(f"unknown prompt_dropout_mode {prompt_dropout_mode!r}; "
                              f"choose from {', '.join(PROMPT_DROPOUT_MODES)}")
        if getattr(backbone, "dynamic_img_size", False):
            raise ConfigError("VPT does not support timm's dynamic_img_size; build the backbone with a fixed img_size")
        if getattr(backbone, "global_pool", "token") == "token" and not getattr(backbone, "has_class_token", True):
            raise ConfigError("token pooling without a CLS token; build the backbone with global_pool='avg'")
        self.backbone = vit
        self.num_prompts = int(num_prompts)
        self.deep = bool(deep)
        self.prompts_enabled = True
        self.grad_checkpointing = False
        depth, embed_dim, patch_size = vit_geometry(self.backbone)
        n_sets = depth if self.deep else 1
        self.prompts = nn.Parameter(torch.empty(n_sets, self.num_prompts, embed_dim))
        bound = prompt_init_bound(patch_size, embed_dim)
        nn.init.uniform_(self.prompts, -bound, bound)
        self.prompt_dropout = float(prompt_dropout)
        self.prompt_dropout_mode = prompt_dropout_mode

    @property
    def head(self) -> nn.Module:
        """The task head (the backbone's ``head``)."""
        return self.backbone.head

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the prompts: CLS plus register tokens."""
        return int(self.backbone.num_prefix_tokens)

    def _prompt_set(self, index: int, batch: int, dtype: torch.dtype) -> torch.Tensor:
        p = self.prompt_dropout if self.training else 0.0
        per_sample = self.prompt_dropout_mode == "per-sample"
        return drop_prompts(self.prompts[index], batch, p, per_sample=per_sample).to(dtype)

    def incorporate_prompts(self, x: torch.Tensor, index: int, *, replace: bool) -> torch.Tensor:
        """Insert prompt set ``index`` after the prefix tokens.

        Args:
            x: tokens ``(B, N, D)``; with ``replace`` they already hold ``P`` prompt outputs.
            index: which prompt set.
            replace: overwrite the previous prompt outputs (deep) instead of inserting.
        """
        return insert_prompts(x, self._prompt_set(index, x.shape[0], x.dtype), self.prefix_tokens, replace=replace)

    def _use_prompts(self) -> bool:
        return self.prompts_enabled and self.num_prompts > 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Embed, add prompts, run the blocks and the final norm; prompt outputs are dropped."""
        bb = self.backbone
        x = embed_tokens(bb, x)
        use = self._use_prompts()
        if use:
            x = self.incorporate_prompts(x, 0, replace=False)
        for i, block in enumerate(bb.blocks):
            if use and self.deep and i > 0:
                x = self.incorporate_prompts(x, i, replace=True)
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x = bb.norm(x)
        return remove_prompts(x, self.prefix_tokens, self.num_prompts) if use else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` to logits ``(B, C)``."""
        return self.backbone.forward_head(self.forward_features(x))
