"""Device resolution, autocast selection and seeding."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch

from engine.device import autocast_context, describe_device, resolve_device
from engine.errors import ConfigError
from engine.seed import seed_everything


def test_resolve_device_cpu_and_auto_on_cpu_machine() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in {"cpu", "mps"}


def test_resolve_device_rejects_garbage_and_missing_cuda() -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_autocast_context_choices(cpu: torch.device) -> None:
    assert autocast_context(cpu, "fp32") is contextlib.nullcontext
    with autocast_context(cpu, "bf16")():
        y = torch.ones(4, 4) @ torch.ones(4, 4)
    assert y.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        autocast_context(cpu, "fp16")


def test_describe_device_names_torch(cpu: torch.device) -> None:
    info = describe_device(cpu)
    assert info["torch"] == torch.__version__ and info["device"] == "cpu"


def test_seed_everything_seeds_all_generators_with_the_same_value() -> None:
    def draw(gen: torch.Generator) -> tuple:
        return random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=gen))

    first = draw(seed_everything(123))
    second = draw(seed_everything(123))
    other = draw(seed_everything(124))
    assert first == second
    assert all(a != b for a, b in zip(first, other, strict=False))


def test_threads_fit_the_load() -> None:
    from engine.device import threads_for_load

    assert threads_for_load(cores=2, load=13.0) == 1  # every core already busy: threads would wait on each other
    assert threads_for_load(cores=2, load=2.0) == 1
    assert threads_for_load(cores=2, load=0.4) is None  # an idle machine keeps torch's default
    assert threads_for_load(cores=1, load=9.0) is None  # one core: nothing to fit
