"""``vpt-advisor reference build|list|show``: the reference statistics FID is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advisor.commands._options import BatchSizeOpt, DeviceOpt, InceptionWeightsOpt, JsonOpt, SeedOpt, WorkersOpt

__all__ = ["register", "reference_app"]

reference_app = typer.Typer(
    name="reference",
    help="Build, list and inspect reference FID statistics (e.g. in21k, used by 'recommend').",
    no_args_is_help=True,
)


@reference_app.command("build")
def build_command(
    source: Annotated[
        Path,
        typer.Argument(help="Image folder tree (class = first folder level, e.g. ImageNet-21k WordNet ids), "
                       "a .tar shard, or a folder of WebDataset .tar shards.", show_default=False),
    ],
    *,
    name: Annotated[str, typer.Option("--name", help="Reference name ('in21k' is recommend's default).")],
    max_images: Annotated[
        int | None, typer.Option("--max-images", min=2, help="Stop after this many images.", show_default=False)
    ] = None,
    per_class: Annotated[
        int | None, typer.Option("--per-class", min=1, help="At most this many images per class.", show_default=False)
    ] = None,
    seed: SeedOpt = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing reference.")] = False,
    inception_weights: InceptionWeightsOpt = None,
    batch_size: BatchSizeOpt = 50,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Compute reference statistics (streaming, class-balanced, resumable: rerun the same command after an interruption)."""
    from advisor.render import emit_json, err_console, progress_bar
    from advisor.render.fid import render_reference
    from engine.config.fid import FidConfig
    from engine.fid.reference import build_reference

    config = FidConfig(batch_size=batch_size, workers=workers, weights=inception_weights)
    with progress_bar(f"Building reference {name}", enabled=not as_json and err_console.is_terminal) as on_progress:
        info = build_reference(source, name=name, config=config, device=device, max_images=max_images,
                               per_class=per_class, seed=seed, overwrite=overwrite, on_progress=on_progress)
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
