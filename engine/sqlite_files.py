"""Healing for the SQLite files vpt-advisor keeps (the feature cache and the VTAB trial store).

Both files are conveniences around work that can be redone, so a damaged or full file must never
cost a result. This module names the two things their owners need:

* :func:`sqlite_fault` sorts an ``sqlite3`` error into ``damaged`` (junk pages, not a database,
  truncated), ``full`` (disk or quota full), ``busy`` (locked by another process) or ``other``.
* :func:`move_aside` renames a damaged file (and its ``-wal``/``-shm`` companions) to
  ``<name>.damaged-<UTC time>`` next to it, so nothing is deleted and the user can inspect or
  delete it; the caller then starts a fresh file or runs without one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

__all__ = ["SqliteFault", "sqlite_fault", "move_aside"]

SqliteFault = Literal["damaged", "full", "busy", "other"]

# Primary result codes from https://www.sqlite.org/rescode.html (Python 3.11+ exposes them on the
# exception as ``sqlite_errorcode``; the low byte is the primary code).
_DAMAGED_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_FULL_CODES = {13}  # SQLITE_FULL
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_IOERR_CODE = 10  # SQLITE_IOERR
_DAMAGED_TEXT = ("malformed", "not a database", "file is encrypted", "corrupt")


_LOW_SPACE_BYTES = 1024 * 1024
"""Below this much free space, SQLite's generic I/O error (it cannot create its ``-shm``/``-wal``
files) is taken to mean a full disk."""


def _disk_nearly_full(path: Path | None) -> bool:
    if path is None or not hasattr(os, "statvfs"):
        return False
    try:
        st = os.statvfs(path.parent if not path.is_dir() else path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _LOW_SPACE_BYTES


def sqlite_fault(exc: BaseException, path: Path | None = None) -> SqliteFault:
    """Classify an error raised by ``sqlite3`` (or an ``OSError`` around it).

    With ``path`` (the database file), an I/O error on a filesystem with almost no free space
    counts as ``full``.
    """
    if isinstance(exc, OSError):
        import errno

        return "full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "other"
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary in _DAMAGED_CODES:
            return "damaged"
        if primary in _FULL_CODES:
            return "full"
        if primary in _BUSY_CODES:
            return "busy"
        if primary == _IOERR_CODE and _disk_nearly_full(path):
            return "full"
    text = str(exc).lower()
    if any(t in text for t in _DAMAGED_TEXT):
        return "damaged"
    if "disk is full" in text or "database or disk is full" in text:
        return "full"
    if "locked" in text or "busy" in text:
        return "busy"
    if "disk i/o error" in text and _disk_nearly_full(path):
        return "full"
    return "other"


def move_aside(path: Path) -> Path:
    """Rename ``path`` (and its ``-wal``/``-shm`` files) to ``<name>.damaged-<UTC time>``; return the new path.

    Raises:
        OSError: the rename failed (e.g. a read-only folder); the caller decides what to do.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target

