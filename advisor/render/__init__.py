"""All terminal output: rich consoles, progress bars and JSON emission.

The engine reports progress through ``on_progress(done, total)`` callbacks; ``progress_bar`` turns
one into a rich bar. Commands render through this package only.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from engine.progress import ProgressCallback

__all__ = ["console", "err_console", "progress_bar", "emit_json", "warn"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[ProgressCallback]:
    """Yield an ``on_progress(done, total)`` callback drawing a rich bar on stderr.

    With ``enabled=False`` (``--json`` runs, or no terminal) the callback does nothing.
    """
    if not enabled:
        yield lambda done, total: None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    task_id = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task_id, completed=done, total=total or None)

    with progress:
        yield update


def emit_json(model: BaseModel) -> None:
    """Write a pydantic model as JSON to stdout (never wrapped or coloured)."""
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """Print a one-line warning to stderr (the message is text: rich markup in it is shown, not applied)."""
    err_console.print(f"[yellow]Warning:[/yellow] {escape(message)}", soft_wrap=True)
