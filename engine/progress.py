"""The progress-callback types used across the engine and the use cases (rendered as rich bars by the CLI only)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

__all__ = ["ProgressCallback", "StageProgress", "report", "no_progress"]

ProgressCallback = Callable[[int, int], None]
"""``on_progress(done, total)``: ``total`` may be 0 when unknown."""

StageProgress = Callable[[str], AbstractContextManager[ProgressCallback]]
"""``progress("Reading images")`` opens one named stage of a use case and yields its ``on_progress``."""


def report(cb: ProgressCallback | None, done: int, total: int) -> None:
    """Call ``cb`` if one was given."""
    if cb is not None:
        cb(done, total)


def _ignore(done: int, total: int) -> None:
    """A progress callback that does nothing."""


def no_progress(description: str) -> AbstractContextManager[ProgressCallback]:
    """The default :data:`StageProgress`: report nothing."""
    return nullcontext(_ignore)
