"""One line describing the CPU a benchmark ran on (model, cores, vector extensions, load)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

__all__ = ["cpu_line"]

_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_line() -> str:
    """``CPU: <model>, <n> cores, avx2 yes, avx512f yes, ... numpy <ver>, load <1-min avg>``."""
    model, flags = "", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    model = model or platform.processor() or "unknown"
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in _FLAGS) if flags else "flags unknown"
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    return f"CPU: {model}, {os.cpu_count()} cores, {have}; numpy {np.__version__}; load average {load}"
