"""Nothing dropped silently from a dataset's folders: empty and unreadable class folders are counted and
reported (text and JSON), and list files and CSVs whose paths lie elsewhere take --root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.engine.fid_fakes import FakeExtractor, fake_extractors, fake_weights  # noqa: F401 - fixtures
from tests.faults.conftest import assert_clean_error, labeled_folder


def test_an_empty_class_folder_is_reported_not_counted_as_a_class(cli, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "empty").mkdir()
    (root / "notes-only").mkdir()
    (root / "notes-only" / "README.txt").write_text("no images here")
    data = json.loads(cli("profile", root, "--json").out)
    assert data["classes"] == ["a", "b"]
    folders = {Path(f["path"]).name: f["reason"] for f in data["skipped_folders"]}
    assert folders == {"empty": "empty", "notes-only": "empty"}
    text = cli("profile", root)
    assert "Folders skipped 2 (empty class folder 2)" in " ".join(text.out.split()) and "empty: " in text.out
    assert "Warning:" in text.err and "2 class folder(s) hold no image" in text.err


def test_a_class_folder_that_cannot_be_listed_is_reported_in_json(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 2, "b": 2, "locked": 2})
    real_scandir = os.scandir

    def scandir(path):  # noqa: ANN001, ANN202 - what a folder without read permission gives (also as root)
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    run = cli("profile", root, "--json")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert data["classes"] == ["a", "b"] and data["n_used"] == 4
    [locked] = data["skipped_folders"]
    assert locked["reason"] == "unreadable" and "Permission denied" in locked["detail"]
    assert "cannot list" in run.err


def _csv_elsewhere(tmp_path: Path) -> tuple[Path, Path]:
    images = labeled_folder(tmp_path / "images", {"a": 3, "b": 3})
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = ["path,label"] + [f"{images / c / f'{i}.png'},{c}" for c in "ab" for i in range(3)]
    (lists / "train.csv").write_text("\n".join(rows) + "\n")
    (lists / "train.txt").write_text("".join(f"{c}/{i}.png {n}\n" for n, c in enumerate("ab") for i in range(3)))
    return images, lists


def test_a_list_whose_paths_all_lie_elsewhere_says_to_pass_root(cli, tmp_path: Path) -> None:
    images, lists = _csv_elsewhere(tmp_path)
    line = assert_clean_error(cli("profile", lists / "train.csv"), "train.csv", "--root")
    assert "run 'vpt-advisor profile'" not in line  # not sent to the command that prints this same error


@pytest.mark.parametrize("listing", ["train.csv", "train.txt"])
def test_root_makes_list_paths_relative_to_and_confined_by_it(cli, tmp_path: Path, listing: str) -> None:
    images, lists = _csv_elsewhere(tmp_path)
    data = json.loads(cli("profile", lists / listing, "--root", images, "--json").out)
    assert data["n_used"] == 6 and data["n_skipped"] == 0
    (lists / "escape.txt").write_text(f"a/0.png 0\n../lists/train.txt 1\n{tmp_path / 'images' / 'b' / '0.png'} 1\n")
    data = json.loads(cli("profile", lists / "escape.txt", "--root", images, "--json").out)
    assert data["n_used"] == 2 and data["skipped_by_reason"] == {"outside-root": 1}


def test_root_is_refused_for_folders_and_must_be_a_folder(cli, tmp_path: Path) -> None:
    images, lists = _csv_elsewhere(tmp_path)
    assert_clean_error(cli("profile", images, "--root", images), "--root", "only list files and CSVs")
    assert_clean_error(cli("profile", lists / "train.csv", "--root", tmp_path / "nope"), "--root", "not a folder")


def test_recommend_takes_root_too(cli, tmp_path: Path) -> None:
    images, lists = _csv_elsewhere(tmp_path)
    run = cli("recommend", lists / "train.csv", "--root", images, "--task", "dtd", "--fid", "150", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["dataset"]["n_used"] == 6


def test_fid_takes_root_for_its_list_sides(
    cli, tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    images, lists = _csv_elsewhere(tmp_path)
    args = ["--inception-weights", fake_weights, "--dims", "64", "--json"]
    assert_clean_error(cli("fid", lists / "train.csv", images, *args), "--root")
    run = cli("fid", lists / "train.csv", images, "--root", images, *args)  # the folder side ignores --root
    assert run.code == 0, run.err
    assert json.loads(run.out)["fid"] == 0.0  # the same six images on both sides
