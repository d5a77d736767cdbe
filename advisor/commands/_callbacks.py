"""The terminal side of the use cases' callbacks: progress stages and yes/no questions.

Progress goes to stderr: a rich bar on a terminal; in a log (stderr not a terminal) one plain, timestamped line per
10 % of a stage's work (every unit when it has 10 or fewer, e.g. a pilot's epochs) once the stage has run for a
moment, since a bar drawn into a file shows nothing until it ends.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from engine.progress import ProgressCallback, StageProgress

if TYPE_CHECKING:  # a type only: importing the pilot use case costs ~0.35 s of every command's start
    from advisor.usecases.pilot import Confirm

# Imports inside the command functions are deliberate: `vpt-advisor --help` imports every command module, so
# each loads only what its own command runs.

__all__ = ["cli_progress", "cli_confirm", "stage_progress", "plain_progress"]

PLAIN_STEPS = 10
"""Plain progress prints a line each time another tenth of the stage is done (each unit when there are at most 10)."""
PLAIN_QUIET_S = 2.0
"""Plain progress stays silent for this long: reading 400 small images should not leave ten lines in a log."""


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@contextlib.contextmanager
def plain_progress(description: str, *, write: Callable[[str], None] | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Iterator[ProgressCallback]:
    """Yield an ``on_progress(done, total)`` writing ``YYYY-mm-dd HH:MM:SS description: done/total (p %), elapsed,
    ~T left`` lines to stderr (or ``write``): one per tenth of the work (per unit with 10 units or fewer), from
    :data:`PLAIN_QUIET_S` on, so a stage that is over in a moment leaves no lines; the last unit always gets one once
    a line was printed."""
    out = write or (lambda line: print(line, file=sys.stderr, flush=True))
    start = clock()
    last_step: int | None = None
    finished = False

    def update(done: int, total: int) -> None:
        nonlocal last_step, finished
        elapsed = clock() - start
        step = (done * PLAIN_STEPS // total) if total > PLAIN_STEPS else done
        last = bool(total) and done >= total
        quiet = elapsed < PLAIN_QUIET_S and not (last and last_step is not None)
        if finished or done <= 0 or step == last_step or quiet:
            return
        last_step, finished = step, last
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        if total:
            left = f", ~{_duration(elapsed * (total - done) / done)} left" if done < total else ""
            out(f"{stamp} {description}: {done:,}/{total:,} ({100 * done // total} %), {_duration(elapsed)}{left}")
        else:
            out(f"{stamp} {description}: {done:,} done, {_duration(elapsed)}")

    yield update


def stage_progress(description: str, *, enabled: bool) -> contextlib.AbstractContextManager[ProgressCallback]:
    """One stage's progress on stderr: a rich bar on a terminal, plain lines in a log, nothing when not ``enabled``."""
    from advisor.render import err_console, progress_bar

    if enabled and not err_console.is_terminal:
        return plain_progress(description)
    return progress_bar(description, enabled=enabled)


def cli_progress(enabled: bool) -> StageProgress:
    """:func:`stage_progress` for every stage of a use case (``enabled=False``: ``--json`` runs)."""
    return lambda description: stage_progress(description, enabled=enabled)


def cli_confirm() -> Confirm | None:
    """Ask on the terminal (declining aborts with exit 130); ``None`` when stdin is not a terminal."""
    if sys.stdin is None or not sys.stdin.isatty():
        return None
    return lambda question: typer.confirm(question, abort=True)
