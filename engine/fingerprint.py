"""Content fingerprints of the files a stored result depends on (weights, images, list files).

Stores that let a rerun resume (the pilot's trial files, the VTAB-1k trial store) key each result by
what it was computed from. A path is not enough: replacing the weights or the images at the same path
and rerunning would hand back the old numbers for the new files. So each file enters a key as
``<size>:<sha256>`` of its bytes.

Hashing is memoised by ``(real path, size, mtime_ns, inode)``, in the process and on disk
(``cache/fingerprints.sqlite``), so an unchanged file is hashed once: a rerun of a VTAB-1k sweep stats
its images instead of reading them. Any change of size, modification time or inode (a copy over it,
an edit, ``mv`` of another file to that path) hashes it again. The memo is a cache: damaged, locked or
unwritable, it is skipped (one rehash), never a lost result.

A reader that reads a file's bytes anyway (``engine.data.imageio.read_images``, the pilot's decode) hashes them
and hands the digest on with :func:`remember_digests`, so the fingerprint does not open the file a second time.
A digest is taken only for the file identity it was read from (size, mtime_ns and inode of the open file,
unchanged across the read) and only while that identity is still the one at the path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from engine.paths import cache_dir
from engine.sqlite_files import move_aside, sqlite_fault

__all__ = ["FileIdentity", "file_fingerprint", "files_fingerprint", "path_fingerprint", "remember_digests",
           "sha256_file"]

logger = logging.getLogger(__name__)

_MEMO_FILE = "fingerprints.sqlite"
_memo: dict[tuple[str, int, int, int], str] = {}

FileIdentity = tuple[int, int, int]
"""``(size, mtime_ns, inode)`` of a file as read: with its real path, the memo's key."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _DiskMemo:
    """The on-disk memo, opened once per process; every failure turns it off for the process."""

    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None
        self.failed = False
        self.path: Path | None = None
        # One connection for the process, used from whichever thread asks (decode workers, a CLI run in a thread):
        # opened with check_same_thread=False and every use serialised by this lock.
        self.lock = threading.RLock()

    def _open(self) -> sqlite3.Connection | None:
        path = cache_dir() / _MEMO_FILE
        if path != self.path:  # the data home changed (VPT_ADVISOR_HOME, a long-lived process): that home's memo
            if self.db is not None:
                self.db.close()
            self.db, self.failed, self.path = None, False, path
        for attempt in (1, 2):
            if self.db is not None or self.failed:
                break
            try:
                self.db = _connect(path)
            except (sqlite3.Error, OSError) as exc:
                if attempt == 1 and isinstance(exc, sqlite3.DatabaseError) and sqlite_fault(exc, path) == "damaged":
                    try:
                        aside = move_aside(path)  # kept for inspection, like the feature cache; a fresh memo next
                    except OSError:
                        self._off(exc)
                        break
                    logger.warning("fingerprint memo %s is damaged (%s); moved it to %s and started a fresh one",
                                   path, exc, aside)
                    continue
                self._off(exc)
        return self.db

    def _off(self, exc: BaseException) -> None:
        logger.info("fingerprint memo unavailable (%s); hashing without it", exc)
        self.failed, self.db = True, None

    def get(self, key: tuple[str, int, int, int]) -> str | None:
        with self.lock:
            return self._get(_db_key(key))

    def _get(self, key: tuple[str, int, int, int]) -> str | None:
        db = self._open()
        if db is None:
            return None
        try:
            row = db.execute("SELECT digest FROM fp WHERE path=? AND size=? AND mtime=? AND ino=?", key).fetchone()
        except sqlite3.Error as exc:
            self._off(exc)
            return None
        return str(row[0]) if row else None

    def put(self, key: tuple[str, int, int, int], digest: str) -> None:
        self.put_many({key: digest})

    def put_many(self, rows: Mapping[tuple[str, int, int, int], str]) -> None:
        """Store ``rows`` in one transaction (a dataset's worth of digests costs one commit, not one per file)."""
        with self.lock:
            self._put_many(rows)

    def _put_many(self, rows: Mapping[tuple[str, int, int, int], str]) -> None:
        db = self._open() if rows else None
        if db is None:
            return
        try:
            db.execute("BEGIN")
            try:
                # one row per path: the memo never grows stale
                keyed = {_db_key(key): digest for key, digest in rows.items()}
                db.executemany("DELETE FROM fp WHERE path=?", [key[:1] for key in keyed])
                db.executemany("INSERT OR REPLACE INTO fp VALUES (?, ?, ?, ?, ?)",
                               [(*key, digest) for key, digest in keyed.items()])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._off(exc)


def _db_key(key: tuple[str, int, int, int]) -> tuple[str, int, int, int]:
    """The memo row of ``key``: a path that is not valid UTF-8 (undecodable bytes arrive as surrogates, which
    SQLite cannot store) is written with those bytes as ``\\xNN``; size, mtime and inode still identify the file."""
    path = key[0]
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        path = os.fsencode(path).decode("utf-8", "backslashreplace")
    return (path, *key[1:])


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    try:
        # a cache: losing the last rows to a power cut costs a rehash, so no fsync per row
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE IF NOT EXISTS fp (path TEXT, size INT, mtime INT, ino INT, digest TEXT, "
                   "PRIMARY KEY (path, size, mtime, ino))")
    except BaseException:
        db.close()
        raise
    return db


_disk = _DiskMemo()


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """``<size>:<sha256>`` of the file at ``path`` (symlinks followed), memoised by path, size, mtime and inode.

    Raises:
        OSError: the file cannot be read (the caller's own checks name it first).
    """
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _memo.get(key)
    if hit is not None:
        return hit
    digest = _disk.get(key)
    if digest is None:
        digest = f"{st.st_size}:{sha256_file(real)}"
        _disk.put(key, digest)
    _memo[key] = digest
    return digest


def remember_digests(reads: Mapping[Path, tuple[FileIdentity, str]]) -> int:
    """Record sha256 digests computed from bytes read anyway, so :func:`file_fingerprint` need not read them again.

    Args:
        reads: ``{path: ((size, mtime_ns, inode), hex sha256)}``, the identity taken from the open file
            (``os.fstat``) the hashed bytes came from, unchanged across the read.

    Returns:
        How many were recorded. A path whose file has changed since (another size, mtime or inode at its
        real path now) or is gone is left out: its fingerprint will read the file itself.
    """
    rows: dict[tuple[str, int, int, int], str] = {}
    for path, ((size, mtime_ns, ino), sha) in reads.items():
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns, st.st_ino) == (size, mtime_ns, ino):
            rows[(real, size, mtime_ns, ino)] = f"{size}:{sha}"
    _memo.update(rows)
    _disk.put_many(rows)
    return len(rows)


def files_fingerprint(paths: Iterable[str | os.PathLike[str]]) -> str:
    """One sha256 over the fingerprints of ``paths`` in the given order (a dataset's images).

    A file that cannot be read enters as its error (the reader that uses it skips and reports it), so a
    key still changes when the file comes back.
    """
    h = hashlib.sha256()
    for p in paths:
        try:
            part = file_fingerprint(p)
        except OSError as exc:
            part = f"unreadable:{exc.errno}"
        h.update(part.encode())
        h.update(b"\n")
    return h.hexdigest()


def path_fingerprint(path: Path | None) -> str | None:
    """:func:`file_fingerprint` of an optional file (``None`` stays ``None``)."""
    return None if path is None else file_fingerprint(path)
