"""``vpt-advisor profile``: tables, JSON, and one-line errors with exit code 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from advisor.cli import main
from tests.conftest import write_png


def test_profile_table(tiny_imagefolder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tiny_imagefolder / "dog" / "broken.png").write_bytes(b"")
    assert main(["profile", str(tiny_imagefolder)]) == 0
    out = capsys.readouterr().out
    assert "ImageFolder" in out and "Images used" in out and "18" in out
    assert "zero-byte" in out and "broken.png" in out
    assert "min 6 / median 6 / max 6" in out and "fox" in out


def test_profile_json(tiny_imagefolder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(tiny_imagefolder), "--json", "--workers", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_used"] == 18 and data["class_counts"] == {"cat": 6, "dog": 6, "fox": 6}


def test_profile_non_utf8_names_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_png(Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"\xff.png"))), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "bad\xe9.png").write_bytes(b"")
    os.rename(tmp_path / "bad\xe9.png", os.path.join(os.fsencode(tmp_path), b"bad\xe9.png"))
    assert main(["profile", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_used"] == 1 and data["skipped_examples"][0]["path"].endswith("bad\\xe9.png")


def test_empty_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["profile", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error:") and "no images found" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_all_bad_and_missing_paths_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.jpg").write_text("text")
    assert main(["profile", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Error:" in err and "all 1 files were skipped (not-an-image 1)" in err and "Traceback" not in err
    assert main(["profile", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
