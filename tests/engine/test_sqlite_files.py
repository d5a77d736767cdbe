"""engine.sqlite_files: sorting SQLite errors into damaged / full / busy, and moving a file aside."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from engine.sqlite_files import move_aside, sqlite_fault


def _error(code: int, text: str) -> sqlite3.DatabaseError:
    exc = sqlite3.DatabaseError(text)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]  # set by sqlite3 itself on Python >= 3.11
    return exc


@pytest.mark.parametrize(("exc", "fault"), [
    (_error(11, "database disk image is malformed"), "damaged"),
    (_error(26, "file is not a database"), "damaged"),
    (_error(13, "database or disk is full"), "full"),
    (_error(5, "database is locked"), "busy"),
    (_error(1, "no such table: features"), "other"),
    (sqlite3.DatabaseError("database disk image is malformed"), "damaged"),  # no code: read the text
    (OSError(errno.ENOSPC, "No space left on device"), "full"),
    (OSError(errno.EACCES, "Permission denied"), "other"),
])
def test_faults_are_classified(exc: BaseException, fault: str) -> None:
    assert sqlite_fault(exc) == fault


def test_a_real_junk_file_is_damaged(tmp_path: Path) -> None:
    junk = tmp_path / "x.sqlite"
    junk.write_bytes(b"junk" * 1000)
    with pytest.raises(sqlite3.DatabaseError) as info:
        sqlite3.connect(junk).execute("SELECT 1 FROM sqlite_master").fetchall()
    assert sqlite_fault(info.value) == "damaged"


def test_move_aside_keeps_the_file_and_its_companions(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    for suffix, text in (("", "db"), ("-wal", "wal"), ("-shm", "shm")):
        (tmp_path / f"store.sqlite{suffix}").write_text(text)
    first = move_aside(db)
    db.write_text("db2")
    second = move_aside(db)
    assert first != second and not db.exists()
    assert first.read_text() == "db" and Path(f"{first}-wal").read_text() == "wal" and Path(f"{first}-shm").is_file()
    assert second.read_text() == "db2" and first.name.startswith("store.sqlite.damaged-")
