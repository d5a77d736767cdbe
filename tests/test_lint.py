"""``ruff check .`` (configured in pyproject.toml's [tool.ruff]) must report nothing.

Part of the default test command, so CI and the README's one test command both lint: an unused import, an import
out of order, a bugbear finding or a line over the configured length fails the suite like any other bug. ruff comes
with the ``test`` extra (``pip install -e .[test]``); without it this test skips and says so.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str] | None:
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    exe = shutil.which("ruff")  # a ruff on the PATH (e.g. pipx) serves as well as the venv's
    return [exe] if exe else None


def test_ruff_is_clean() -> None:
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed; install the test extra: pip install -e '.[test]'")
    proc = subprocess.run([*ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff found problems:\n{proc.stdout}{proc.stderr}"
