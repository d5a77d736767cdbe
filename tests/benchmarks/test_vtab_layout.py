"""Layout checks of a VTAB-1k root: usable, missing and malformed tasks, path escapes, size points."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.vtab.layout import check_layout, check_task
from benchmarks.vtab.tasks import TASKS, resolve_tasks, size_list_files
from engine.errors import DatasetError, UnknownTaskError
from tests.benchmarks.vtab_tree import make_vtab_tree


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_vtab_tree(tmp_path / "vtab", tasks=["dtd", "svhn", "eurosat", "cifar100"])


def test_registry_has_19_tasks_with_paper_facts() -> None:
    assert len(TASKS) == 19
    assert TASKS["clevr_count"].folder == "clevr_count" and TASKS["cifar100"].folder == "cifar"
    assert {t.group for t in TASKS.values()} == {"Natural", "Specialized", "Structured"}
    assert all(t.disparity == ("high" if t.group == "Structured" else "low") for t in TASKS.values())
    assert TASKS["sun397"].num_classes == 397 and TASKS["dmlab"].prompt_length == 100


def test_resolve_tasks_accepts_groups_folders_and_aliases() -> None:
    assert [t.key for t in resolve_tasks(["specialized"])] == ["patch_camelyon", "eurosat", "resisc45", "retinopathy"]
    assert [t.key for t in resolve_tasks(["dsprites_loc,cifar"])] == ["cifar100", "dsprites_location"]
    assert len(resolve_tasks(None)) == 19
    with pytest.raises(UnknownTaskError, match="did you mean"):
        resolve_tasks(["eurosatt"])


def test_good_tree_is_usable_with_notes_on_small_splits(root: Path) -> None:
    report = check_layout(root, resolve_tasks(["dtd", "svhn", "eurosat", "cifar100"]))
    assert report.usable == ["cifar100", "dtd", "svhn", "eurosat"]
    dtd = report.tasks[1]
    assert dtd.counts == {"train800.txt": 4, "val200.txt": 2, "train800val200.txt": 6, "test.txt": 4}
    assert any("VTAB-1k has 800" in n for n in dtd.notes)


def test_missing_and_malformed_tasks_say_what_to_do(root: Path) -> None:
    (root / "svhn" / "test.txt").unlink()
    (root / "eurosat" / "train800.txt").write_text("../../../etc/passwd 0\nimages/train800/000000.png 1\n")
    (root / "cifar" / "val200.txt").write_text("images/val200/000000.png 100\n")  # CIFAR-100 labels are 0..99
    report = check_layout(root, resolve_tasks(["dtd", "svhn", "eurosat", "cifar100", "dmlab"]))
    status = {t.key: t for t in report.tasks}
    assert report.usable == ["dtd"]
    assert status["dmlab"].status == "missing" and "get_vtab1k.py" in status["dmlab"].problems[0]
    assert status["svhn"].status == "malformed" and "test.txt is missing" in status["svhn"].problems
    assert "outside the task folder" in status["eurosat"].problems[0]
    assert "outside 0..99" in status["cifar100"].problems[0]


def test_sizes_above_800_need_exported_splits(root: Path) -> None:
    task = TASKS["dtd"]
    have = check_task(root, task).counts["train800.txt"]  # the tiny tree's lists are short
    check = check_task(root, task, sizes=(have, 800, 5000))
    assert check.sizes == [have, 800] and any("train5000.txt" in n for n in check.notes)
    assert size_list_files(5000) == ("train5000.txt", "val1250.txt", "train5000val1250.txt")
    for name in size_list_files(5000):
        (root / "dtd" / name).write_text((root / "dtd" / "train800.txt").read_text())
    assert check_task(root, task, sizes=(5000,)).sizes == [5000]


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        check_layout(tmp_path / "nope", resolve_tasks(["dtd"]))


def test_a_subset_larger_than_its_list_is_skipped_with_a_note(tmp_path: Path) -> None:
    """--sizes 400 on a tree whose train800.txt holds fewer entries: said, never trained on fewer silently."""
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    task = TASKS["dtd"]
    have = check_task(root, task, sizes=(800,)).counts["train800.txt"]
    check = check_task(root, task, sizes=(have, have + 1, 800))
    assert check.sizes == [have, 800]
    assert any(f"size {have + 1} skipped" in n and f"only {have}" in n for n in check.notes)
