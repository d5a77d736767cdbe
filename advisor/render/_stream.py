"""The standard streams as the consoles write to them: without the spaces rich pads lines with, when piped.

rich pads every table cell and every wrapped line to its column width. On a terminal that padding is invisible
(and needed: a live progress bar overwrites its previous frame), but piped into a file, a log or ``cat -A`` each
padded line ends in spaces that a reader copies, a diff shows and an editor flags. When the stream is not a
terminal, spaces and tabs before a line end are dropped; everything else passes through unchanged.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

__all__ = ["TrimmedStream"]

_BEFORE_NEWLINE = re.compile(r"[ \t]+(?=\r?\n)")


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class TrimmedStream:
    """``sys.stdout`` (or ``sys.stderr``), looked up at every write so a swapped stream (tests, redirection) is used.

    Spaces at the end of a write without a newline are held back until the next write shows whether a line end
    follows them (rich writes a whole render in one call, so this only matters for prompts and partial lines).
    """

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._pending = ""

    @property
    def target(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    def write(self, text: str) -> int:
        target = self.target
        if _is_tty(target):
            target.write(self._pending + text)
            self._pending = ""
            return len(text)
        body = _BEFORE_NEWLINE.sub("", self._pending + text)
        kept = body.rstrip(" \t")
        self._pending = body[len(kept):]
        target.write(kept)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return _is_tty(self.target)

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, errors...: the real stream's
        return getattr(self.target, name)
