"""Precision choice: native-bf16 detection, auto never emulates, and the bf16 path on a tiny ViT."""

from __future__ import annotations

import pytest
import torch

from engine.config.train import TrainConfig
from engine.data.tensors import ImageTensors
from engine.device import CpuBf16, autocast_context, cpu_bf16_support, resolve_precision
from engine.errors import ConfigError
from engine.train.loop import fit
from engine.train.transfer import build_model
from tests.gen_vit import make_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")
EMULATED = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cpuinfo_flags_decide_native_bf16() -> None:
    assert not cpu_bf16_support(EMULATED).native or "AMX" in torch.backends.cpu.get_cpu_capability()
    native = cpu_bf16_support(SAPPHIRE)
    assert native.native and native.flags == ("avx512_bf16", "amx_bf16")
    assert "native" in native.describe()


def test_auto_never_picks_emulated_bf16_and_explicit_bf16_is_refused() -> None:
    emulated = CpuBf16(native=False, flags=(), capability="AVX512", source="test")
    native = CpuBf16(native=True, flags=("amx_bf16",), capability="AVX512", source="test")
    assert resolve_precision(CPU, "auto", cpu=emulated) == "fp32"
    assert resolve_precision(CPU, "auto", cpu=native) == "bf16"
    assert resolve_precision(CPU, "bf16", cpu=native) == "bf16"
    assert resolve_precision(CPU, "fp32", cpu=native) == "fp32"
    with pytest.raises(ConfigError, match="bf16 refused.*emulated"):
        resolve_precision(CPU, "bf16", cpu=emulated)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        resolve_precision(CPU, "fp16", cpu=native)


def test_this_machine_is_described() -> None:
    info = cpu_bf16_support()
    assert info.capability and ("native" in info.describe() or "emulated" in info.describe())


def test_bf16_training_path_runs_in_bf16_and_tracks_fp32() -> None:
    """Correctness of the bf16 code path only (tiny model; emulated bf16 here says nothing about speed)."""
    with autocast_context(CPU, "bf16")():
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    data = ImageTensors(torch.randint(0, 256, (32, 3, 32, 32), generator=gen, dtype=torch.uint8),
                        torch.randint(0, 3, (32,), generator=gen))
    losses = {}
    for prec in ("fp32", "bf16"):
        tc = TrainConfig.for_method("vpt-deep", epochs=2, batch_size=16, lr=1.0, precision=prec, seed=0,
                                    num_prompts=2, img_size=32, deterministic=True)
        model = build_model(make_vit(), "vpt-deep", 3, num_prompts=2, prompt_dropout=0.0)
        result = fit(model, data, data, tc, device=CPU)
        assert not result.diverged
        losses[prec] = result.train_losses
    for a, b in zip(losses["fp32"], losses["bf16"], strict=False):
        assert a is not None and b is not None and a == pytest.approx(b, rel=0.05)
    assert losses["fp32"] != losses["bf16"]  # bf16 really ran (rounding shows)
