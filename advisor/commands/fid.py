"""``vpt-advisor fid A [B]``: FID between two image folders or ``.npz`` stats files (pytorch-fid compatible)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from advisor.commands._options import (
    BatchSizeOpt,
    DaskWorkersOpt,
    DeviceOpt,
    FidBackendOpt,
    FidSchedulerOpt,
    InceptionWeightsOpt,
    JsonOpt,
    RootOpt,
    WorkersOpt,
)

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

__all__ = ["register", "fid_command"]


def fid_command(
    a: Annotated[Path, typer.Argument(help="Image folder (any depth), .npz stats file or reference name.",
                                      show_default=False)],
    b: Annotated[
        Path | None,
        typer.Argument(help="Second image folder, .npz or reference name such as in21k (optional with "
                       "--save-stats). Against a reference, its recorded preprocessing wins, as in recommend.",
                       show_default=False),
    ] = None,
    *,
    as_json: JsonOpt = False,
    inception_weights: InceptionWeightsOpt = None,
    save_stats: Annotated[
        Path | None,
        typer.Option("--save-stats", help="Write A's statistics to this .npz (+ .json provenance sidecar); "
                     "readable by 'python -m pytorch_fid'.", show_default=False),
    ] = None,
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    resize: Annotated[
        Literal["auto", "pytorch-fid", "pil-bicubic-299"],
        typer.Option("--resize", help="Preprocessing: pytorch-fid (exact parity; one image size per set), "
                     "pil-bicubic-299 (any sizes), or auto (the first when sizes agree)."),
    ] = "auto",
    dims: Annotated[
        int, typer.Option("--dims", help="Inception feature layer: 2048 (pool3, standard FID), 768, 192 or 64.")
    ] = 2048,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never try to download the Inception weights.")] = False,
    root: RootOpt = None,
    backend: FidBackendOpt = "local",
    scheduler: FidSchedulerOpt = None,
    dask_workers: DaskWorkersOpt = 0,
) -> None:
    """Fréchet Inception Distance with pytorch-fid's Inception (same numbers as 'python -m pytorch_fid A B').

    Against a stored reference the number is the one 'recommend' reports as the FID of all images.
    """
    from advisor.commands._callbacks import stage_progress
    from advisor.render import emit_json
    from advisor.render.fid import render_fid
    from engine.config.fid import FidConfig
    from engine.fid.run import compute_fid

    config = FidConfig(dims=dims, batch_size=batch_size, workers=workers, resize=resize, weights=inception_weights,
                       use_cache=not no_cache, offline=offline, backend=backend, scheduler=scheduler,
                       cluster_workers=dask_workers)
    with stage_progress("Inception features", enabled=not as_json) as on_progress:
        result = compute_fid(a, b, config=config, device=device, save_stats_to=save_stats, on_progress=on_progress,
                             root=root)
    if as_json:
        emit_json(result)
    else:
        render_fid(result)


def register(app: typer.Typer) -> None:
    """Add the ``fid`` command to ``app``."""
    app.command("fid")(fid_command)
