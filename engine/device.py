"""Device and precision selection, picked once per run (the timm ``train.py`` pattern)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch

from engine.errors import ConfigError

__all__ = ["Precision", "resolve_device", "autocast_context", "describe_device"]

Precision = Literal["fp32", "bf16", "fp16"]


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a ``torch.device``.

    ``auto`` picks CUDA, then MPS, then CPU. Only the CLI should pass ``"auto"``; library
    functions take an explicit ``torch.device``.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} was requested but CUDA is not available; use --device cpu")
    return dev


def autocast_context(device: torch.device, precision: Precision) -> Callable[[], contextlib.AbstractContextManager]:
    """Return a zero-argument factory for the forward-pass autocast context.

    fp32 gives ``nullcontext``. bf16 autocasts on CUDA and CPU; fp16 only on CUDA (it needs a
    ``GradScaler``, which the trainer creates for CUDA fp16 only).
    """
    if precision == "fp32":
        return contextlib.nullcontext
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 needs a CUDA device; use --precision bf16 or fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return partial(torch.autocast, device_type=device.type, dtype=dtype)


def describe_device(device: torch.device) -> dict[str, str]:
    """Name the device, torch version and GPU, for every report's provenance."""
    info = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["threads"] = str(torch.get_num_threads())
    return info
