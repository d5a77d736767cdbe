"""Building blocks of the fault corpus: run the real CLI, and check that a fault ends cleanly.

A fault ends cleanly when the command either gives the right result, or exits 1 with exactly one
``Error:`` line on stderr, no traceback and no "internal error" (which would mean a bug).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_png


@dataclass
class Run:
    """What one CLI invocation returned and printed."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("Error:")]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """``cli("profile", path, ...) -> Run``: the console-script entry point, in-process."""
    from advisor.cli import main

    capsys.readouterr()

    def run(*args: object) -> Run:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def assert_clean_error(run: Run, *needles: str) -> str:
    """Exit 1, one ``Error:`` line naming every needle, no traceback, no internal error; returns the line."""
    assert run.code == 1, f"exit {run.code}; stderr: {run.err[-800:]}"
    assert "Traceback" not in run.err and "internal error" not in run.err, run.err[-800:]
    assert len(run.error_lines) == 1, run.err[-800:]
    line = run.error_lines[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def labeled_folder(root: Path, classes: dict[str, int], size: int = 16) -> Path:
    """An ImageFolder with ``classes[name]`` PNGs per class, each class its own mean colour."""
    gen = np.random.default_rng(7)
    for c, (name, n) in enumerate(classes.items()):
        for i in range(n):
            base = np.full((size, size, 3), 40 + 50 * c, dtype=np.int16)
            img = np.clip(base + gen.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            write_png(root / name / f"{i}.png", img)
    return root


def can_mount_tmpfs() -> tuple[bool, str]:
    """Whether this process may mount a small tmpfs (needs root / CAP_SYS_ADMIN)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return False, "not a POSIX system"
    if os.geteuid() != 0:
        return False, "mounting a small tmpfs (a full disk) needs root"
    return True, ""


def fill_disk(disk: Path) -> None:
    """Write zeros into ``disk/filler`` until the disk is full (every later write fails with ENOSPC)."""
    try:
        with (disk / "filler").open("wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs, so writes fail with 'disk full'; skipped with the reason when mounting is not permitted."""
    import subprocess

    ok, why = can_mount_tmpfs()
    if not ok:
        pytest.skip(why)
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
