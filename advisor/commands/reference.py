"""``vpt-advisor reference build|list|show|export|import|pull``: the reference statistics FID is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advisor.commands._options import BatchSizeOpt, DeviceOpt, InceptionWeightsOpt, JsonOpt, SeedOpt, WorkersOpt

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
    batch_size: BatchSizeOpt = 50,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Compute reference statistics (streaming, resumable: rerun the same command after an interruption)."""
    from advisor.commands._callbacks import stage_progress
    from advisor.render import emit_json
    from advisor.render.fid import render_reference
    from engine.config.fid import FidConfig
    from engine.fid.refbuild import build_reference

    config = FidConfig(batch_size=batch_size, workers=workers, weights=inception_weights)
    if not as_json:
        _say_size(max_images)
    with stage_progress(f"Building reference {name}", enabled=not as_json) as on_progress:
        info = build_reference(source, name=name, config=config, device=device, max_images=max_images or None,
                               per_class=per_class, shards=shards, seed=seed, overwrite=overwrite,
                               on_progress=on_progress)
    if as_json:
        emit_json(info)
    else:
        render_reference(info)


def _say_size(max_images: int) -> None:
    """Before the work: how many images, and the smallest reference the FID check accepts (fewer: 'unverified')."""
    from advisor.render import print_message, warn
    from engine.fid.gates import MIN_REFERENCE_IMAGES

    if 0 < max_images < MIN_REFERENCE_IMAGES:
        warn(f"--max-images {max_images:,} is below the {MIN_REFERENCE_IMAGES:,} images the FID check needs: FIDs "
             f"against this reference are shown as unverified and never decide (--max-images {MIN_REFERENCE_IMAGES} "
             "is the smallest that passes)")
    elif max_images > MIN_REFERENCE_IMAGES:
        print_message(f"Building from up to {max_images:,} images; the smallest reference the FID check accepts has "
                      f"{MIN_REFERENCE_IMAGES:,} (--max-images {MIN_REFERENCE_IMAGES}), "
                      f"{max_images / MIN_REFERENCE_IMAGES:.0f}x less to download and compute.", style="dim")


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
