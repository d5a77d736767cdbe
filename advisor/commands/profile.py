"""``vpt-advisor profile DATASET``: what is in a dataset, what is usable, and why files were skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from advisor.commands._options import JsonOpt, RootOpt, WorkersOpt

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

__all__ = ["register", "profile_command"]


def profile_command(
    dataset: Annotated[
        Path,
        typer.Argument(
            help="An ImageFolder tree (class sub-folders), a flat image folder, a 'relative/path label' "
            "list file (VTAB-1k layout, e.g. clevr_count/train800val200.txt) or a 'path,label' CSV.",
            show_default=False,
        ),
    ],
    *,
    as_json: JsonOpt = False,
    workers: WorkersOpt = 0,
    root: RootOpt = None,
) -> None:
    """Decode every image once and report images used and skipped, classes, class sizes and image sizes."""
    from advisor.commands._callbacks import stage_progress
    from advisor.render import emit_json
    from advisor.render.profile import render_profile
    from engine.data.profile import profile_path

    with stage_progress("Reading images", enabled=not as_json) as on_progress:
        profile, _ = profile_path(dataset, workers=workers, on_progress=on_progress, root=root)
    if as_json:
        emit_json(profile)
    else:
        render_profile(profile)


def register(app: typer.Typer) -> None:
    """Add the ``profile`` command to ``app``."""
    app.command("profile")(profile_command)
