"""engine.data.index: layouts, list-file safety, symlink cycles, deterministic stratified splits."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from engine.data.index import Sample, index_dataset, stratified_subsample, train_val_split
from engine.errors import ConfigError, DatasetError, EmptyDatasetError, ListFileError
from tests.conftest import write_png

PIXELS = np.zeros((4, 4, 3), np.uint8)


def _names(index) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(s.path.relative_to(index.root)) for s in index.samples]


# ---------------------------------------------------------------------------------------- folders
def test_imagefolder_any_depth_sorted_and_hidden_ignored(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for rel in ["dog/b.png", "dog/a.PNG", "cat/deep/er/x.jpg", "cat/y.png", "bird/1.webp"]:
        write_png(root / rel, PIXELS)  # the format follows the extension
    write_png(root / ".hidden" / "h.png", PIXELS)
    write_png(root / "dog" / ".h.png", PIXELS)
    (root / "cat" / "README.txt").write_text("hi")
    index = index_dataset(root)
    assert index.layout == "imagefolder" and index.labeled
    assert index.classes == ["bird", "cat", "dog"]
    # Depth-first, byte-sorted: a folder's own files, then its sub-folders (as torchvision's walk).
    assert _names(index) == ["bird/1.webp", "cat/y.png", "cat/deep/er/x.jpg", "dog/a.PNG", "dog/b.png"]
    assert [s.label for s in index.samples] == [0, 1, 1, 2, 2]
    assert index.ignored == {".txt": 1} and index.skipped == []


def test_flat_folder_is_unlabeled(tiny_image_dir: Path) -> None:
    index = index_dataset(tiny_image_dir)
    assert index.layout == "flat" and not index.labeled and index.num_classes == 0
    assert len(index.samples) == 8 and all(s.label is None for s in index.samples)


def test_root_images_in_class_tree_are_skipped(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "1.png", PIXELS)
    write_png(tmp_path / "stray.png", PIXELS)
    index = index_dataset(tmp_path)
    assert index.layout == "imagefolder" and len(index.samples) == 1
    assert [(s.reason, Path(s.path).name) for s in index.skipped] == [("no-class-folder", "stray.png")]


def test_directory_symlink_cycle_neither_hangs_nor_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_png(root / "a" / "1.png", PIXELS)
    write_png(root / "b" / "2.png", PIXELS)
    (root / "a" / "loop").symlink_to(root)  # a/loop -> root: a cycle
    (root / "c").symlink_to(root / "b")  # a second name for b
    (root / "a" / "self.png").symlink_to(root / "a" / "self.png")  # a file loop
    index = index_dataset(root)
    assert _names(index) == ["a/1.png", "b/2.png"]
    assert [(s.reason, Path(s.path).name) for s in index.skipped] == [("symlink-loop", "self.png")]


def test_bad_files_reported_at_index_time(tmp_path: Path) -> None:
    write_png(tmp_path / "c" / "ok.png", PIXELS)
    (tmp_path / "c" / "empty.jpg").write_bytes(b"")
    (tmp_path / "c" / "dir.png").mkdir()  # a folder with an image-like name is just a folder
    os.mkfifo(tmp_path / "c" / "pipe.png")
    index = index_dataset(tmp_path)
    assert _names(index) == ["c/ok.png"]
    assert sorted(s.reason for s in index.skipped) == ["not-an-image", "zero-byte"]


def test_non_utf8_names_are_indexed(tmp_path: Path) -> None:
    cls = os.path.join(os.fsencode(tmp_path), b"cl\xe4ss")
    os.mkdir(cls)
    write_png(Path(os.fsdecode(os.path.join(cls, b"\xff\xfe.png"))), PIXELS)
    index = index_dataset(tmp_path)
    assert len(index.samples) == 1 and index.samples[0].path.exists()
    assert index.classes == [os.fsdecode(b"cl\xe4ss")]


def test_relative_source_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_png(tmp_path / "ds" / "k" / "a.png", PIXELS)
    monkeypatch.chdir(tmp_path)
    index = index_dataset(Path("ds"))
    assert index.root == tmp_path / "ds" and index.samples[0].path.is_absolute()


def test_empty_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDatasetError, match=r"no images found in .*empty; expected \.jpg"):
        index_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="nowhere.*does not exist"):
        index_dataset(tmp_path / "nowhere")
    write_png(tmp_path / "one.png", PIXELS)
    with pytest.raises(DatasetError, match="single image"):
        index_dataset(tmp_path / "one.png")


# ------------------------------------------------------------------------------------- list files
def _vtab_task(tmp_path: Path) -> Path:
    task = tmp_path / "vtab-1k" / "clevr_count"
    for i in range(4):
        write_png(task / "images" / "train800" / f"{i:06d}.jpg", PIXELS)
    write_png(task / "images" / "train800" / "with space.jpg", PIXELS)
    return task


def test_vtab_list_file(tmp_path: Path) -> None:
    task = _vtab_task(tmp_path)
    lines = ["# comment", "images/train800/000000.jpg 3", "", "images/train800/000001.jpg 0  ",
             "images/train800/with space.jpg 1", "images/train800/000002.jpg\t7"]
    (task / "train800.txt").write_text("\n".join(lines) + "\n")
    index = index_dataset(task / "train800.txt")
    assert index.layout == "listfile" and index.root == task and index.source == task / "train800.txt"
    assert [s.label for s in index.samples] == [3, 0, 1, 7]
    assert _names(index)[2] == "images/train800/with space.jpg"
    assert index.classes == [str(i) for i in range(8)]


def test_list_file_bad_label_names_file_and_line(tmp_path: Path) -> None:
    task = _vtab_task(tmp_path)
    (task / "bad.txt").write_text("images/train800/000000.jpg 1\nimages/train800/000001.jpg cat\n")
    with pytest.raises(ListFileError, match=r"bad\.txt, line 2: label 'cat' is not an integer"):
        index_dataset(task / "bad.txt")
    (task / "nolabel.txt").write_text("images/train800/000000.jpg\n")
    with pytest.raises(ListFileError, match="line 1: expected 'relative/path label'"):
        index_dataset(task / "nolabel.txt")


def test_list_file_never_escapes_root(tmp_path: Path) -> None:
    task = _vtab_task(tmp_path)
    outside = write_png(tmp_path / "outside.png", PIXELS)
    (task / "images" / "link.png").symlink_to(outside)
    (task / "images" / "dirlink").symlink_to(tmp_path)
    inside_abs = task / "images" / "train800" / "000003.jpg"
    lines = [
        "images/train800/000000.jpg 0",
        "../../outside.png 1",
        f"{outside} 1",
        "images/link.png 1",
        "images/dirlink/outside.png 1",
        "images/train800/../train800/000001.jpg 2",
        f"{inside_abs} 2",
        "images/train800/gone.png 1",
        "images/train800/nul\x00byte.jpg 1",
    ]
    (task / "list.txt").write_text("\n".join(lines) + "\n")
    index = index_dataset(task / "list.txt")
    assert _names(index) == ["images/train800/000000.jpg", "images/train800/000001.jpg", "images/train800/000003.jpg"]
    assert Counter(s.reason for s in index.skipped) == {"outside-root": 4, "missing": 2}


def test_list_file_all_missing_is_empty(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("a.png 0\nb.png 1\n")
    with pytest.raises(EmptyDatasetError, match=r"all 2 files were skipped \(missing 2\)"):
        index_dataset(tmp_path / "l.txt")


# ------------------------------------------------------------------------------------------- CSV
def test_csv_with_class_names_and_header(tmp_path: Path) -> None:
    for n in ["a", "b", "c", "d"]:
        write_png(tmp_path / "img" / f"{n}.png", PIXELS)
    (tmp_path / "labels.csv").write_text("path,label\nimg/a.png,zebra\nimg/b.png,ant\nimg/c.png,zebra\n../x.png,ant\n")
    index = index_dataset(tmp_path / "labels.csv")
    assert index.layout == "csv" and index.classes == ["ant", "zebra"]
    assert [(Path(s.path).name, s.label) for s in index.samples] == [("a.png", 1), ("b.png", 0), ("c.png", 1)]
    assert [s.reason for s in index.skipped] == ["outside-root"]


def test_csv_int_labels_without_header_and_named_columns(tmp_path: Path) -> None:
    for n in ["a", "b"]:
        write_png(tmp_path / f"{n}.png", PIXELS)
    (tmp_path / "x.csv").write_text("a.png,2\nb.png,0\n")
    index = index_dataset(tmp_path / "x.csv")
    assert [s.label for s in index.samples] == [2, 0] and index.classes == ["0", "1", "2"]
    (tmp_path / "y.csv").write_text("id,class,filename\n1,dog,a.png\n2,cat,b.png\n")
    index = index_dataset(tmp_path / "y.csv")
    assert [s.label for s in index.samples] == [1, 0] and index.classes == ["cat", "dog"]
    (tmp_path / "h.csv").write_text("picture,kind\na.png,x\nb.png,y\n")  # unfamiliar header names
    index = index_dataset(tmp_path / "h.csv")
    assert index.classes == ["x", "y"] and index.skipped == []
    (tmp_path / "u.csv").write_text("a.png\nb.png\n")  # paths only: unlabeled
    index = index_dataset(tmp_path / "u.csv")
    assert len(index.samples) == 2 and not index.labeled and index.classes == []
    (tmp_path / "z.csv").write_text("path,label\na.png,\n")
    with pytest.raises(ListFileError, match="z.csv, line 2: missing label"):
        index_dataset(tmp_path / "z.csv")


# ---------------------------------------------------------------------------------- splits
def _samples(counts: list[int]) -> list[Sample]:
    return [Sample(Path(f"{c}/{i}.png"), c) for c, n in enumerate(counts) for i in range(n)]


def test_stratified_subsample_is_proportional_and_deterministic() -> None:
    samples = _samples([50, 30, 20, 1])
    sub = stratified_subsample(samples, 20, seed=0)
    counts = Counter(s.label for s in sub)
    assert len(sub) == 20 and counts[3] == 1  # the singleton class is kept
    assert counts[0] >= counts[1] >= counts[2] >= 1 and abs(counts[0] - 10) <= 1
    assert sub == stratified_subsample(samples, 20, seed=0)
    assert sub != stratified_subsample(samples, 20, seed=1)
    assert [samples.index(s) for s in sub] == sorted(samples.index(s) for s in sub)
    assert stratified_subsample(samples, 1000, seed=0) == samples
    assert len({s.label for s in stratified_subsample(samples, 2, seed=0)}) == 2  # n < classes


def test_train_val_split_keeps_a_train_sample_per_class() -> None:
    samples = _samples([10, 5, 1, 2])
    train, val = train_val_split(samples, val_fraction=0.5, seed=3)
    assert len(val) == 9 and sorted(train + val, key=samples.index) == samples
    assert {s.label for s in train} == {0, 1, 2, 3}
    assert Counter(s.label for s in val)[0] == 5
    assert (train, val) == train_val_split(samples, val_fraction=0.5, seed=3)


def test_splits_reject_unlabeled_and_bad_arguments() -> None:
    unlabeled = [Sample(Path("a.png"), None)]
    with pytest.raises(ConfigError, match="unlabeled"):
        stratified_subsample(unlabeled, 1, seed=0)
    with pytest.raises(ConfigError, match="unlabeled"):
        train_val_split(unlabeled, seed=0)
    with pytest.raises(ConfigError, match="val_fraction"):
        train_val_split(_samples([3]), val_fraction=1.0, seed=0)
    with pytest.raises(ConfigError, match=">= 1"):
        stratified_subsample(_samples([3]), 0, seed=0)
