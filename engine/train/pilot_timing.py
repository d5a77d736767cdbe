"""Warm-up timing for pilot budget planning: a few measured training and evaluation steps per method.

On a CPU one ViT-B/16 step takes seconds, so the warm-up uses a small batch there (cost per image
is close to linear in the batch size on a CPU) and the configured batch on a GPU.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from engine.config import FrozenModel
from engine.device import Precision, autocast_context
from engine.train.methods import Method, stages_of, uses_sgd
from engine.train.loop import make_optimizer
from engine.train.transfer import build_model, configure_trainable, set_train_mode

__all__ = ["MethodTiming", "measure_method_timing"]

_CPU_WARMUP_BATCH = 4


class MethodTiming(FrozenModel):
    """Measured cost of one method on this device."""

    method: Method
    train_s_per_image: float = Field(description="Seconds per training image (forward, backward, step).")
    eval_s_per_image: float = Field(description="Seconds per evaluated image.")
    setup_s: float = Field(description="Seconds to copy the backbone and build the model (per trial).")
    batch: int = Field(description="Batch size the warm-up used.")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_method_timing(
    backbone: nn.Module,
    method: Method,
    *,
    num_classes: int,
    num_prompts: int,
    batch_size: int,
    img_size: int,
    precision: Precision,
    device: torch.device,
    timed_steps: int | None = None,
) -> MethodTiming:
    """Time one untimed and ``timed_steps`` timed steps (keeping the fastest) of ``method`` on random inputs.

    The backbone is copied, never modified. For ``ft-then-pt`` the slower (fine-tuning) stage is timed.
    """
    t0 = time.perf_counter()
    model = build_model(copy.deepcopy(backbone), method, num_classes, num_prompts=num_prompts)
    if len(stages_of(method)) > 1:
        configure_trainable(model, method, stage="ft")
    model.to(device)
    setup_s = time.perf_counter() - t0
    batch = batch_size if device.type == "cuda" else min(batch_size, _CPU_WARMUP_BATCH)
    steps = timed_steps if timed_steps is not None else 2
    kind = "sgd" if uses_sgd(method) else "adamw"
    optimizer = make_optimizer(model, kind=kind, lr=1e-6, weight_decay=0.0, device=device)
    autocast = autocast_context(device, precision)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    set_train_mode(model)

    def step() -> None:
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed(fn: Callable[[], object]) -> float:
        fn()  # untimed: allocations, optimizer state, lazy initialisation
        _sync(device)
        best = math.inf
        for _ in range(steps):
            t = time.perf_counter()
            fn()
            _sync(device)
            best = min(best, time.perf_counter() - t)
        return best / batch

    train_s = timed(step)
    model.eval()
    with torch.inference_mode(), autocast():
        eval_s = timed(lambda: model(x))
    del model, optimizer
    return MethodTiming(method=method, train_s_per_image=train_s, eval_s_per_image=eval_s, setup_s=setup_s,
                        batch=batch)
