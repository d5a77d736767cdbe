"""The progress-callback type used across the engine (rendered as a rich bar by the CLI only)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCallback", "report"]

ProgressCallback = Callable[[int, int], None]
"""``on_progress(done, total)``: ``total`` may be 0 when unknown."""


def report(cb: ProgressCallback | None, done: int, total: int) -> None:
    """Call ``cb`` if one was given."""
    if cb is not None:
        cb(done, total)
