"""Reusable typer option aliases: every option that more than one command offers is declared here, once.

An option whose name, help and default are the same in two commands is one alias, so the commands
cannot drift apart. Options only one command has stay next to that command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.config.fid import FidBackend
from engine.vocab import PrecisionChoice

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

__all__ = [
    "DeviceOpt",
    "SeedOpt",
    "PrecisionOpt",
    "JsonOpt",
    "ExplainOpt",
    "YesOpt",
    "InceptionWeightsOpt",
    "ReferenceOpt",
    "BatchSizeOpt",
    "WorkersOpt",
    "FidBackendOpt",
    "FidSchedulerOpt",
    "DaskWorkersOpt",
    "ProtocolSetOpt",
    "ModelOpt",
    "WeightsOpt",
    "BudgetOpt",
    "MinDetectableOpt",
    "ReportOpt",
    "finite_non_negative",
]

# ------------------------------------------------------------------------------------------ every command
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed for every generator.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
ExplainOpt = Annotated[
    bool,
    typer.Option("--explain", "-v", help="Print the full reasoning (every reason in full, trend, provenance); "
                 "the default is a short view."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Start long runs without asking.")]

# ------------------------------------------------------------------------------------------ FID
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
BatchSizeOpt = Annotated[int | None, typer.Option(
    "--batch-size", min=1, help="Images per forward pass (default: 16 on a CPU, 50 on a GPU).", show_default=False)]
WorkersOpt = Annotated[int, typer.Option("--workers", min=0, help="Image-decoding threads (0 = automatic).")]
FidBackendOpt = Annotated[FidBackend, typer.Option(
    "--backend", help="Where Inception features are computed: local (this process) or dask (one task per shard or "
    "chunk on a LocalCluster, or on the cluster of --scheduler).")]
FidSchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="With --backend dask: the address of a running Dask scheduler (tcp://host:8786) instead of a "
    "LocalCluster. Workers need vpt-advisor installed and the images at the same paths (URL shards are downloaded "
    "by the workers).", show_default=False)]
DaskWorkersOpt = Annotated[int, typer.Option(
    "--dask-workers", min=0, max=256, help="With --backend dask and no --scheduler: LocalCluster worker processes "
    "(0 = one per CPU core).")]

# ------------------------------------------------------------------------------------------ training
ProtocolSetOpt = Annotated[list[str] | None, typer.Option(
    "--protocol-set", help="Change a training detail of the protocol, KEY=VALUE (repeatable): subset, "
    "prompt_dropout_mode, lr_schedule, head_init, ft_dropout, on_divergence, optimizer_rule (original|nominal), "
    "ft_warmup_epochs, ft_batch_size, adamw_eps; the defaults follow the original code "
    "(benchmarks/vtab/README.md).", show_default=False)]
RootOpt = Annotated[Path | None, typer.Option(
    "--root", help="For a list file or CSV: the folder its paths are relative to and may not leave "
    "(default: the list file's own folder).", show_default=False)]
ModelOpt = Annotated[str, typer.Option("--model", help="timm ViT name.")]
"""``pilot`` and ``reproduce-vtab``; the default is ``engine.config.train.DEFAULT_BACKBONE``."""
PrecisionOpt = Annotated[
    PrecisionChoice,
    typer.Option("--precision", help="auto (bf16 on GPU and on CPUs with native bf16 - AVX-512 BF16 or AMX - else "
                 "fp32), fp32, bf16 (refused where the CPU would emulate it) or fp16 (CUDA only)."),
]

# ------------------------------------------------------------------------------------------ pilot, recommend --pilot
WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", help="Local backbone weights: Google .npz, .safetensors or .pth (instead of the hub).",
    show_default=False)]
BudgetOpt = Annotated[str, typer.Option("--budget", help="Time budget for all trials, e.g. 15m, 90s, 1h30m.")]
MinDetectableOpt = Annotated[float, typer.Option(
    "--min-detectable", min=0.1, max=100.0,
    help="Smallest VPT-FT difference (accuracy points) the pilot must be able to detect; a plan that cannot is "
    "refused before training unless --yes (then it is 'not decisive by design' and never changes the answer).")]
ReportOpt = Annotated[Path | None, typer.Option(
    "--report", help="Also write a report: .html (one self-contained file) or .md (PNGs beside it).",
    show_default=False)]


def finite_non_negative(value: float | None) -> float | None:
    """Option callback: refuse NaN, infinities and negative numbers (typer's ``min`` lets NaN and inf through)."""
    import math

    if value is not None and not (math.isfinite(value) and value >= 0.0):
        raise typer.BadParameter(f"{value} is not a finite number >= 0")
    return value
