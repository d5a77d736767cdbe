"""``vpt-advisor reference build|list|show|export|import|pull``: the reference statistics FID is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advisor.commands._options import (
    BatchSizeOpt,
    DaskWorkersOpt,
    DeviceOpt,
    FidBackendOpt,
    FidSchedulerOpt,
    InceptionWeightsOpt,
    JsonOpt,
    SeedOpt,
    WorkersOpt,
)
from engine.config.fid import FidConfig
from engine.fid.cost import IN21K_IMAGES, BuildCost, CostEstimate

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

__all__ = ["register", "reference_app"]

reference_app = typer.Typer(
    name="reference",
    help="Build, list and inspect reference FID statistics (e.g. in21k, used by 'recommend').",
    no_args_is_help=True,
)

_OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing reference.")]
_StoreNameOpt = Annotated[str | None, typer.Option(
    "--name", help="Store under this name (default: the archive's).", show_default=False)]


@reference_app.command("build")
def build_command(
    source: Annotated[
        str,
        typer.Argument(help="Image folder tree (class = first folder level, e.g. ImageNet-21k WordNet ids), "
                       "a .tar shard or folder of WebDataset shards, an HTTP(S) URL with a brace pattern "
                       "(https://host/shard-{0000..0099}.tar), or hf://datasets/OWNER/REPO (or .../REPO/SUBDIR) "
                       "(uses HF_TOKEN and HF_ENDPOINT).", show_default=False),
    ],
    *,
    name: Annotated[str, typer.Option("--name", help="Reference name ('in21k' is recommend's default).")],
    max_images: Annotated[
        int, typer.Option("--max-images", min=0, help="Images to use (0 = all of the source).")
    ] = 50_000,
    per_class: Annotated[
        int | None, typer.Option("--per-class", min=1, help="At most this many images per class (folders).",
                                 show_default=False)
    ] = None,
    shards: Annotated[
        int | None, typer.Option("--shards", min=1, help="Shards to read, spread over the listing (shard sources; "
                                 "default: max-images / 2000, or all).", show_default=False)
    ] = None,
    seed: SeedOpt = 0,
    overwrite: _OverwriteOpt = False,
    inception_weights: InceptionWeightsOpt = None,
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    backend: FidBackendOpt = "local",
    scheduler: FidSchedulerOpt = None,
    dask_workers: DaskWorkersOpt = 0,
    as_json: JsonOpt = False,
    estimate: Annotated[bool, typer.Option(
        "--estimate", help="Only say what the build would cost (images, shards, download, time measured on this "
        "machine) and the smallest reference the FID check accepts; build nothing.")] = False,
) -> None:
    """Compute reference statistics (streaming, resumable: rerun the same command after an interruption)."""
    from advisor.commands._callbacks import stage_progress
    from advisor.render import emit_json
    from advisor.render.fid import render_reference
    from engine.config.fid import FidConfig
    from engine.fid.refbuild import build_reference

    config = FidConfig(batch_size=batch_size, workers=workers, weights=inception_weights, backend=backend,
                       scheduler=scheduler, cluster_workers=dask_workers)
    if estimate or not as_json:
        _say_cost(source, name, max_images, shards, config, device, as_json=as_json, estimate=estimate)
    if estimate:
        return
    with stage_progress(f"Building reference {name}", enabled=not as_json) as on_progress:
        info = build_reference(source, name=name, config=config, device=device, max_images=max_images or None,
                               per_class=per_class, shards=shards, seed=seed, overwrite=overwrite,
                               on_progress=on_progress)
    if as_json:
        emit_json(info)
    else:
        render_reference(info)


def _is_in21k(source: str) -> bool:
    """True for the Hub's ImageNet-22k shards, whose dataset card gives the numbers a download estimate needs."""
    from engine.fid.reference import IN21K_SOURCE

    return source.strip("'\"").startswith(IN21K_SOURCE.strip("'").split("/imagenet22k-train")[0])


def _say_cost(source: str, name: str, max_images: int, shards: int | None, config: FidConfig, device: str, *,
              as_json: bool, estimate: bool) -> None:
    """Before the work: images, shards, download and time on this machine, and the smallest size that passes."""
    from advisor.render import emit_json, print_message, warn
    from engine.errors import EngineError
    from engine.fid.availability import weights_available, weights_fetch_command
    from engine.fid.cost import build_cost, cached_forward_rate, measure_forward_rate
    from engine.fid.gates import MIN_REFERENCE_IMAGES

    in21k = _is_in21k(source)
    images = max_images or (IN21K_IMAGES if in21k else 0)
    rate, unmeasured = None, ""
    if weights_available(config.weights):
        rate = cached_forward_rate(config, device)
        # A probe costs a few seconds and a model load: worth it for --estimate and before a build of at least the
        # gate's size (minutes to hours); a smaller build shows its time on the progress bar instead.
        if rate is None and (estimate or not images or images >= MIN_REFERENCE_IMAGES):
            if not as_json:
                print_message("Measuring this machine's Inception rate (a few seconds, once)...", style="dim")
            try:
                rate = measure_forward_rate(config, device)
            except EngineError as exc:  # the build (or fid) reports the weights problem itself, in full
                unmeasured = f"the Inception rate could not be measured ({exc})"
        elif rate is None:
            unmeasured = "shown by the progress bar (run with --estimate to measure it first)"
    cost = build_cost(images, in21k=in21k, shards=shards, rate=rate) if images else None
    smallest = build_cost(MIN_REFERENCE_IMAGES, in21k=in21k, rate=rate)
    if as_json:
        emit_json(CostEstimate(planned=cost, smallest_that_passes=smallest))
        return
    if cost is None:
        print_message("Building from every image of the source (--max-images 0): its size is known once it is read.")
    else:
        print_message(f"Plan: {_cost_phrase(cost)}.")
    if rate is None and not weights_available(config.weights):
        print_message("Time: unknown until pytorch-fid's Inception weights are present (nothing to measure); get them "
                      f"with: {weights_fetch_command()}")
    elif rate is None:
        print_message(f"Time: {unmeasured}.")
    if images and images < MIN_REFERENCE_IMAGES:
        warn(f"--max-images {images:,} is below the {MIN_REFERENCE_IMAGES:,} images the FID check needs: FIDs "
             f"against this reference are shown as unverified and never decide (--max-images {MIN_REFERENCE_IMAGES} "
             "is the smallest that passes)")
    elif not images or images > MIN_REFERENCE_IMAGES:
        command = f"vpt-advisor reference build {_quoted(source)} --name {name} --max-images {MIN_REFERENCE_IMAGES}"
        print_message(f"The smallest reference the FID check accepts is {_cost_phrase(smallest)}: {command}")


def _cost_phrase(cost: BuildCost) -> str:
    from advisor.render.pilot import format_seconds

    parts = [f"{cost.images:,} images" + (f" from {cost.shards:,} shards" if cost.shards else "")]
    if cost.download_bytes is not None:
        parts.append(f"about {cost.download_bytes / 1e9:.1f} GB to download, {cost.download_basis}")
    if cost.seconds is not None and cost.rate is not None:
        how = "measured" if not cost.rate.cached else "measured earlier"
        parts.append(f"about {format_seconds(cost.seconds)} of feature extraction at {cost.rate.images_per_s:.1f} "
                     f"images/s ({how} on this {cost.rate.device}, {cost.rate.cpu})")
    return "; ".join(parts)


def _quoted(source: str) -> str:
    """The source as a shell word (hf:// patterns carry a '*')."""
    import shlex

    return source if source.startswith("'") else shlex.quote(source)


@reference_app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="Reference name.", show_default=False)],
    file: Annotated[Path, typer.Argument(help="Archive to write (.tar).", show_default=False)],
    *,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace FILE if it exists.")] = False,
) -> None:
    """Write a reference (stats + provenance) to one file to share; prints its sha256 for 'reference pull'."""
    from advisor.render import print_message
    from engine.fid.frechet import file_sha256
    from engine.fid.refshare import export_reference

    path = export_reference(name, file, overwrite=overwrite)
    print_message(f"Exported {name} to {path}")  # the path as on disk: no markup or emoji read into it
    print_message(f"sha256 {file_sha256(path)}")


@reference_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="Archive from 'reference export', or a .npz (+ .json).",
                                         show_default=False)],
    *,
    name: _StoreNameOpt = None,
    overwrite: _OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate and store reference statistics someone exported."""
    from advisor.render import emit_json
    from advisor.render.fid import render_reference
    from engine.fid.refshare import import_reference

    info = import_reference(file, name=name, overwrite=overwrite)
    if as_json:
        emit_json(info)
    else:
        render_reference(info)


@reference_app.command("pull")
def pull_command(
    url: Annotated[str, typer.Argument(help="HTTP(S) URL of an exported archive.", show_default=False)],
    *,
    sha256: Annotated[str, typer.Option("--sha256", help="Expected sha256 of the archive (64 hex digits).")],
    name: _StoreNameOpt = None,
    overwrite: _OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download an exported reference, verify its sha256 (refuse on mismatch) and import it."""
    from advisor.render import emit_json
    from advisor.render.fid import render_reference
    from engine.fid.refshare import pull_reference

    info = pull_reference(url, sha256=sha256, name=name, overwrite=overwrite)
    if as_json:
        emit_json(info)
    else:
        render_reference(info)


@reference_app.command("list")
def list_command(*, as_json: JsonOpt = False) -> None:
    """List the references in the data directory (name, N, source, date, extractor)."""
    from advisor.render import emit_json
    from advisor.render.fid import ReferenceList, render_reference_list
    from engine.fid.reference import list_references

    refs = ReferenceList(references=list_references())
    if as_json:
        emit_json(refs)
    else:
        render_reference_list(refs)


@reference_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Reference name or .npz path.", show_default=False)],
    *,
    as_json: JsonOpt = False,
) -> None:
    """Show one reference's provenance (and check the .npz against its sidecar)."""
    from advisor.render import emit_json
    from advisor.render.fid import render_reference
    from engine.fid.reference import reference_info

    info = reference_info(name)
    if as_json:
        emit_json(info)
    else:
        render_reference(info)


def register(app: typer.Typer) -> None:
    """Add the ``reference`` command group to ``app``."""
    app.add_typer(reference_app, name="reference")
