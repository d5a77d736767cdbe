"""Reusable typer option aliases, so every command spells shared flags the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "DeviceOpt",
    "SeedOpt",
    "PrecisionOpt",
    "JsonOpt",
    "InceptionWeightsOpt",
    "ReferenceOpt",
    "BatchSizeOpt",
    "WorkersOpt",
    "YesOpt",
    "finite_non_negative",
    "ExplainOpt",
    "ProtocolSetOpt",
]

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed for every generator.")]
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="fp32, bf16 (autocast; default on GPU) or fp16 (CUDA only).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
InceptionWeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--inception-weights",
        help="pytorch-fid Inception weights file (pt_inception-2015-12-05-6726825d.pth). "
        "Default: the torch hub cache pytorch-fid uses ($TORCH_HOME/hub/checkpoints).",
    ),
]
ReferenceOpt = Annotated[
    str,
    typer.Option("--reference", help="Reference statistics: a name from 'reference list' or a .npz path."),
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="Image-decoding threads (0 = automatic).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Start long runs without asking.")]


def finite_non_negative(value: float | None) -> float | None:
    """Option callback: refuse NaN, infinities and negative numbers (typer's ``min`` lets NaN and inf through)."""
    import math

    if value is not None and not (math.isfinite(value) and value >= 0.0):
        raise typer.BadParameter(f"{value} is not a finite number >= 0")
    return value


ExplainOpt = Annotated[
    bool,
    typer.Option("--explain", "-v", help="Print the full reasoning (every reason in full, trend, provenance); "
                 "the default is a short view."),
]

ProtocolSetOpt = Annotated[list[str] | None, typer.Option(
    "--protocol-set", help="Change a training detail of the protocol, KEY=VALUE (repeatable): subset, "
    "prompt_dropout_mode, lr_schedule, head_init, ft_dropout, on_divergence; the defaults follow the original "
    "code (benchmarks/vtab/README.md).", show_default=False)]
