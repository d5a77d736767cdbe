"""All terminal output: rich consoles, progress bars, copyable messages and JSON emission.

The engine reports progress through ``on_progress(done, total)`` callbacks; ``progress_bar`` turns
one into a rich bar, drawn only once real work reports in (a failed lookup before any image is read
never shows a spinner). Messages go through ``print_message``, which keeps URLs, paths and commands
whole: they are printed on their own line, never wrapped or cropped, so they can be copied.
Commands render through this package only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError
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
from rich.text import Text

from advisor.render._stream import TrimmedStream
from engine.data.imageio import display_text
from engine.progress import ProgressCallback

__all__ = [
    "console", "err_console", "configure_consoles", "progress_bar", "emit_json", "warn", "note",
    "print_message", "print_fields", "split_copyable", "reset_warnings", "user_text", "display_text",
]

# emoji=False: rich would turn a folder named ":x:" into an emoji (markup.escape does not stop that); our own
# output uses no emoji codes, so none is ever interpreted and a name prints as it is on disk.
# TrimmedStream: piped output carries no trailing spaces (rich pads lines to the width).
console = Console(file=TrimmedStream(), highlight=False, emoji=False)  # type: ignore[arg-type]  # TextIO by duck typing
err_console = Console(file=TrimmedStream(stderr=True), stderr=True, highlight=False,  # type: ignore[arg-type]
                      emoji=False)

_seen_warnings: set[str] = set()

COPYABLE_MIN_LEN = 40
"""Shortest token (a path, a hash) that may be put on a line of its own; ``print_message`` raises it to
the console width minus a margin, since a shorter word is never split by rich's word wrap."""

# A URL, or a command introduced by "with: ", "run: " or "Build one with: " (up to ';', ')' or the end).
# Trailing sentence punctuation is not part of the match.
_URL_OR_COMMAND = (
    r"https?://[^\s)]+[^\s).,;:]"
    r"|(?<=: )(?:vpt-advisor|python -m|pip install|curl|\.venv/bin/\S+) [^;)]*[^\s;).,]"
)


def configure_consoles() -> None:
    """Re-read ``COLUMNS`` and ``FORCE_COLOR`` for both consoles (once per command run).

    The consoles are created at import; a long-lived process (tests, a shell embedding the app)
    runs many commands, so the width and the terminal detection are refreshed here. Without
    ``COLUMNS`` rich measures the terminal, or uses 80 columns when the output is piped.
    """
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else None
    force = True if os.environ.get("FORCE_COLOR", "") not in ("", "0") else None
    # rich decides width and terminal detection in its constructor and offers no setter for the latter, and
    # every command module holds these two objects by name: so the constructor runs again on the same objects.
    # ``file=c.file`` keeps each console's TrimmedStream (the public property returns the stream it was given).
    for c in (console, err_console):
        Console.__init__(c, file=c.file, stderr=c.stderr, highlight=False, emoji=False, width=width,
                         force_terminal=force)
    _seen_warnings.clear()


def user_text(value: object, style: str = "") -> Text:
    """A name from the user's disk (a path, a class folder, a task) as a rich ``Text`` printed literally.

    ``Text`` is never parsed for markup or emoji codes, and :func:`display_text` escapes control
    characters, bidi overrides and undecodable bytes first: every table cell holding user data uses this.
    """
    return Text(display_text(str(value)), style=style)


def reset_warnings() -> None:
    """Forget which warnings were printed (each command run starts afresh)."""
    _seen_warnings.clear()


def split_copyable(message: str, *, min_len: int = COPYABLE_MIN_LEN) -> list[tuple[str, bool]]:
    """Split ``message`` into ``(text, copyable)`` parts.

    URLs and commands are copyable, and so is any whitespace-free token of ``min_len`` characters or
    more (a path or hash too long to be moved whole to the next line by the word wrap).
    """
    pattern = re.compile(rf"{_URL_OR_COMMAND}|[^\s()'\"]{{{min_len},}}")
    parts: list[tuple[str, bool]] = []
    pos = 0
    for m in pattern.finditer(message):
        if m.start() > pos:
            parts.append((message[pos:m.start()], False))
        parts.append((m.group(0), True))
        pos = m.end()
    if pos < len(message):
        parts.append((message[pos:], False))
    return parts


def print_message(message: str, *, prefix: str = "", target: Console | None = None, style: str = "") -> None:
    """Print prose wrapped to the width, with every URL, command and long path on its own unwrapped line.

    Args:
        message: plain text (not markup).
        prefix: rich markup put before the first line (``"[yellow]Warning:[/yellow] "``).
        target: the console (default: stdout's).
        style: style for the prose.
    """
    out = target or console
    message = display_text(message)  # names inside a message print as they are on disk (one line, no escapes)
    prose, first = prefix, True

    def flush(text: str) -> None:
        nonlocal first
        if re.search(r"\w", text.replace(prefix, "", 1)) or (first and prefix and text == prefix):
            # after a command on its own line, the ';' or '.' that followed it would start the next line
            out.print(text.rstrip() if first else text.strip().lstrip(";,.").lstrip())
        first = False

    # a token shorter than the line is moved whole to the next line by the wrap; longer ones get their own
    min_len = max(COPYABLE_MIN_LEN, out.width - 8)
    for text, copyable in split_copyable(message, min_len=min_len):
        if not copyable:
            prose += f"[{style}]{escape(text)}[/]" if style and text.strip() else escape(text)
            continue
        flush(prose)
        prose = ""
        # soft_wrap: no newline is inserted and nothing is cropped, so the terminal shows it whole
        out.print("  " + text, markup=False, highlight=False, soft_wrap=True)
    flush(prose)


@contextlib.contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[ProgressCallback]:
    """Yield an ``on_progress(done, total)`` callback drawing a rich bar on stderr.

    The bar appears at the first report of real work (a known total, or a first item done), so a
    step that fails (or finishes) before any work is counted prints nothing. With ``enabled=False``
    (``--json`` runs, or no terminal) the callback does nothing.
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
    task_id = progress.add_task(description, total=None, start=False)
    started = False

    def update(done: int, total: int) -> None:
        nonlocal started
        if not started:
            if not total and not done:
                return  # no work counted yet (a total of 0 means unknown; done > 0 is real work)
            progress.start()
            progress.start_task(task_id)
            started = True
        progress.update(task_id, completed=done, total=total or None)

    try:
        yield update
    finally:
        if started:
            progress.stop()


def emit_json(model: BaseModel) -> None:
    """Write a pydantic model as JSON to stdout (never wrapped or coloured)."""
    try:
        text = model.model_dump_json(indent=2)
    except (PydanticSerializationError, UnicodeEncodeError):
        # a name that is not valid UTF-8 slipped through as surrogates: write it as \xNN escapes, never crash
        text = json.dumps(_json_safe(model.model_dump(mode="python")), indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _json_safe(value: object) -> object:
    """``value`` with every string made encodable (undecodable bytes as ``\\xNN``); containers walked."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return display_text(value)
        return value
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return value


def warn(message: str) -> None:
    """Print a warning to stderr once per command run (a repeated warning is dropped)."""
    key = " ".join(message.split())
    if key in _seen_warnings:
        return
    _seen_warnings.add(key)
    print_message(message, prefix="[yellow]Warning:[/yellow] ", target=err_console)


def print_fields(pairs: list[tuple[str, str]], *, title: str | None = None, target: Console | None = None) -> None:
    """Print ``key  value`` lines; values wrap by words and long paths, hashes and URLs stay whole."""
    out = target or console
    if title:
        out.print(f"[bold]{escape(title)}[/bold]")
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        print_message(value, prefix=f"[bold]{escape(key.ljust(width))}[/bold]  ", target=out)


def note(message: str) -> None:
    """Print a dim note to stdout (URLs, paths and commands kept whole)."""
    print_message(message, style="dim")
