"""Device and precision selection, picked once per run (the timm ``train.py`` pattern)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from engine.errors import ConfigError
from engine.vocab import Precision, PrecisionChoice

__all__ = ["Precision", "PrecisionChoice", "CpuBf16", "cpu_bf16_support", "resolve_precision", "resolve_device",
           "autocast_context", "describe_device"]


_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of native bf16 arithmetic (AVX-512 BF16 dot products, AMX bf16 tiles); without
them oneDNN emulates bf16 matmuls through fp32 conversions, several times slower than plain fp32."""


@dataclass(frozen=True)
class CpuBf16:
    """What this CPU can do in bf16, and how we know."""

    native: bool
    flags: tuple[str, ...]
    capability: str
    source: str

    def describe(self) -> str:
        """One line for benchmarks and error messages."""
        how = "native" if self.native else "emulated (no avx512_bf16/amx_bf16)"
        seen = ", ".join(self.flags) or "none"
        return f"CPU capability {self.capability}; bf16 {how}; bf16 flags: {seen} (from {self.source})"


def cpu_bf16_support(cpuinfo: str | None = None) -> CpuBf16:
    """Detect native CPU bf16 from ``/proc/cpuinfo`` flags (or the given text; tests pass their own).

    Where ``/proc/cpuinfo`` is unreadable (macOS, Windows) bf16 counts as emulated unless torch
    reports an AMX-capable build (``get_cpu_capability() == "AMX"`` on some builds).
    """
    capability = str(torch.backends.cpu.get_cpu_capability())
    source = "given cpuinfo"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
            source = "/proc/cpuinfo"
        except OSError:
            cpuinfo, source = "", "torch cpu capability"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            flags.update(line.split(":", 1)[1].split())
    found = tuple(f for f in _NATIVE_BF16_FLAGS if f in flags)
    return CpuBf16(native=bool(found) or "AMX" in capability.upper(), flags=found, capability=capability,
                   source=source)


def resolve_precision(device: torch.device, choice: PrecisionChoice, *, cpu: CpuBf16 | None = None) -> Precision:
    """Turn ``--precision`` into the precision to train in.

    ``auto`` is bf16 on CUDA (where supported) and on CPUs with native bf16, else fp32; it never picks
    an emulated bf16. An explicit ``bf16`` on a CPU that emulates it is refused: it would be slower
    *and* less accurate than fp32, so there is no reason to run it (the benchmarks may still time it).

    Raises:
        ConfigError: bf16 on a CPU without native bf16, or fp16 off CUDA.
    """
    if device.type == "cuda":
        if choice == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return choice
    if choice == "fp16":
        raise ConfigError("fp16 needs a CUDA device; use --precision bf16 or fp32")
    if device.type != "cpu":
        return "fp32" if choice == "auto" else choice
    info = cpu if cpu is not None else cpu_bf16_support()
    if choice == "auto":
        return "bf16" if info.native else "fp32"
    if choice == "bf16" and not info.native:
        raise ConfigError(f"--precision bf16 refused: this CPU has no native bf16 ({info.describe()}), so bf16 "
                          "would run emulated, slower than fp32; use --precision fp32 or auto")
    return choice


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


def threads_for_load(*, cores: int | None = None, load: float | None = None) -> int | None:
    """Torch CPU threads for a shared machine: 1 when the runnable load already fills every core, else None.

    When other processes keep every core busy, torch's threads wait for each other at every operation,
    and a step costs far more than its arithmetic: on this project's 2-core machine at load 13, a
    ViT-Tiny training step at 224 px took 10-20 s at batch 2 with 2 threads and 0.7-0.9 s with 1
    (batch 16: 19-24 s against 5.6 s). Such per-step waits also make a short timing probe misjudge a
    whole run, so the pilot probes and trains with the same, fitted thread count.

    Args:
        cores: logical CPUs (default: ``os.cpu_count()``).
        load: 1-minute load average (default: ``os.getloadavg()``; None where the OS has none).
    """
    import os

    cores = cores if cores is not None else os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average (Windows): keep torch's default
            return None
    return 1 if cores > 1 and load >= cores else None


def fit_cpu_threads() -> int:
    """Apply :func:`threads_for_load` unless the user chose threads (``OMP_NUM_THREADS``); return the count."""
    import os

    chosen = threads_for_load()
    if chosen is not None and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(chosen)
    return torch.get_num_threads()
