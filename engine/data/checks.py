"""Checks on what a dataset reader is given, before anything is read or decoded.

One home for the data-side validators :mod:`engine.data.index` uses: the kind of file given as a
dataset (special files are refused: a FIFO would block forever, ``/dev/zero`` never ends), list files
that are too large or binary, integer labels so large they must be a size or an id column, and
duplicate entries (the same real file twice, which would inflate ``n_train`` and could land on both
sides of a train/validation split).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from engine.data.imageio import SkippedFile, display_path
from engine.errors import DatasetError, ListFileError

__all__ = ["MAX_CLASS_INDEX", "MAX_LIST_FILE_BYTES", "DUPLICATE", "Dedup", "check_source_kind", "check_list_size",
           "check_text", "classes_for_ints", "excerpt", "parse_int_label", "looks_like_int"]

MAX_CLASS_INDEX = 100_000
"""Largest integer label accepted. ImageNet-21k, the largest label space in the paper's setting, has
21,843 classes (Ridnik et al. 2021 count 21,841 after cleaning); a label far above that is almost
always a size or an id column read as a label, and would make a classifier head of that many rows."""

MAX_LIST_FILE_BYTES = 2 * 1024**3
"""Largest list/CSV file read (2 GiB: a list of every ImageNet-21k image is about 1 GB)."""

DUPLICATE = "duplicate"
"""Skip reason of a list/CSV row (or a linked file) naming a file that is already in the dataset."""

_SNIFF_BYTES = 8192
"""Bytes of a list file checked for binary content before it is parsed."""
_BINARY_FRACTION = 0.05
"""Share of control bytes (other than tab, CR, LF) above which a file is binary: text has almost none,
random bytes about 12% (29 of 256 values), an archive or a weights file far more."""
_TEXT_CONTROLS = frozenset(b"\t\n\r")
_EXCERPT_CHARS = 80
"""Characters of a bad line quoted in an error message."""


_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
"""An integer label as a list file writes it: ASCII digits, no sign but '-', no leading zero, no '_'."""


def looks_like_int(text: str) -> bool:
    """True when Python's ``int`` would read ``text`` (also ``1_0``, ``+1``, ``٣``, `` 7``, ``007``)."""
    try:
        int(text)
    except ValueError:
        return False
    return True


def parse_int_label(text: str, where: str) -> int | None:
    """The class index written as ``text``, ``None`` when it is not a number at all.

    Only the canonical form is read: ``int`` alone would read ``1_0`` as 10, ``+3`` as 3, ``007`` as 7
    and Arabic-Indic or full-width digits as their values, so a typo or another numbering scheme would
    silently become a different class. Such labels are refused with what to write instead.

    Raises:
        ListFileError: ``text`` is a number in a non-canonical form (``where`` names the file and line).
    """
    if _CANONICAL_INT.fullmatch(text):
        return int(text)
    if not looks_like_int(text):
        return None
    raise ListFileError(
        f"{where}: label {excerpt(text)!r} is not written as a plain integer (read as {int(text)}); write labels "
        "as decimal digits 0-9 without '_', '+' or leading zeros, or use class names that are not numbers"
    )


def excerpt(line: str) -> str:
    """A bad line as quoted in an error message (at most :data:`_EXCERPT_CHARS` characters)."""
    shown = display_path(line)
    return shown if len(shown) <= _EXCERPT_CHARS else shown[:_EXCERPT_CHARS] + "..."


def check_list_size(path: Path, size: int) -> None:
    """Refuse a list file larger than :data:`MAX_LIST_FILE_BYTES` before reading it."""
    if size > MAX_LIST_FILE_BYTES:
        raise DatasetError(f"list file {display_path(path)} is {size / 1024**3:.1f} GiB, larger than the "
                           f"{MAX_LIST_FILE_BYTES // 1024**3} GiB a list of image paths needs; is it the right file?")


def check_text(path: Path, data: bytes) -> None:
    """Refuse binary content (an archive, weights or an image given as a list file)."""
    head = data[:_SNIFF_BYTES]
    control = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROLS)
    if head and control > _BINARY_FRACTION * len(head):  # a stray NUL in one path is that entry's problem
        raise ListFileError(f"{display_path(path)} is a binary file, not a list of images; pass an image folder, "
                            "a 'path label' list file or a 'path,label' CSV")


class Dedup:
    """Keeps the first entry of each real file; later entries become ``duplicate`` skips.

    Duplicates would inflate ``n_train`` and could land on both sides of a train/validation split,
    so they are never used twice; a repeat with a different label is named in the detail.
    """

    def __init__(self) -> None:
        self._first: dict[str, tuple[str, int | None]] = {}

    def check(self, path: Path, label: int | None, where: str, real: str | None = None) -> SkippedFile | None:
        """``None`` for the first entry of a real file; a ``duplicate`` skip (naming ``where`` it was first) after.

        ``real`` is the file's resolved path when the caller already has it (``os.path.realpath`` otherwise).
        """
        key = real if real is not None else os.path.realpath(path)
        first = self._first.get(key)
        if first is None:
            self._first[key] = (where, label)
            return None
        other = f" with label {first[1]}" if first[1] != label else ""
        return SkippedFile(path=display_path(path), reason=DUPLICATE, detail=f"same file as {first[0]}{other}")


def classes_for_ints(labels: Sequence[int], where: str) -> list[str]:
    """Class names ``"0".."K-1"`` for integer labels, refusing labels above :data:`MAX_CLASS_INDEX`."""
    if not labels:
        return []
    top = max(labels)
    if top > MAX_CLASS_INDEX:
        raise ListFileError(
            f"{where}: label {top} is larger than {MAX_CLASS_INDEX:,}; labels must be class indices 0..K-1 "
            "(is a size or id column being read as the label?)"
        )
    return [str(i) for i in range(top + 1)]


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_source_kind(source: Path, mode: int) -> None:
    """Refuse special files before reading: a FIFO would block forever and /dev/zero never ends."""
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
    raise DatasetError(f"dataset path {display_path(source)} is {kind}; pass an image folder, a 'path label' "
                       "list file or a 'path,label' CSV")
