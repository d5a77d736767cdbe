"""The terminal side of the use cases' callbacks: rich progress stages and yes/no questions."""

from __future__ import annotations

import sys

import typer

from advisor.usecases.pilot import Confirm
from engine.progress import StageProgress

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

__all__ = ["cli_progress", "cli_confirm"]


def cli_progress(enabled: bool) -> StageProgress:
    """One rich bar per use-case stage on stderr (nothing with ``enabled=False``: ``--json``, no terminal)."""
    from advisor.render import progress_bar

    return lambda description: progress_bar(description, enabled=enabled)


def cli_confirm() -> Confirm | None:
    """Ask on the terminal (declining aborts with exit 130); ``None`` when stdin is not a terminal."""
    if sys.stdin is None or not sys.stdin.isatty():
        return None
    return lambda question: typer.confirm(question, abort=True)
