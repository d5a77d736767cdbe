"""Check a VTAB-1k root in the shared NOAH layout before any trial starts.

Layout (ANCHORS section 3)::

    VTAB_ROOT/<folder>/images/...                      # image files (any sub-folders)
    VTAB_ROOT/<folder>/{train800,val200,train800val200,test}.txt   # lines "relative/path label"

Every task is checked up front and reported as ``ok``, ``missing`` or ``malformed`` with what to do;
the sweep then runs the usable tasks only. List files are read with :func:`engine.data.index.index_dataset`,
which never lets an entry resolve outside the task folder (such entries are reported here as
malformed) and reports missing or empty image files.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from benchmarks.vtab.tasks import LIST_FILES, TaskSpec, size_list_files
from engine.config import FrozenModel
from engine.data.imageio import display_path
from engine.data.index import index_dataset
from engine.errors import DatasetError

__all__ = ["TaskCheck", "LayoutReport", "find_task_folder", "check_task", "check_layout"]

_EXPORT_HINT = ("export it with NOAH's data/vtab-source/get_vtab1k.py (or copy it from a VTAB-1k release in the "
                "NOAH layout)")
_EXPECTED = {"train800.txt": 800, "val200.txt": 200, "train800val200.txt": 1000}


class TaskCheck(FrozenModel):
    """What the layout check found for one task."""

    key: str = Field(description="Task key.")
    folder: str = Field(description="Folder used (or expected) under the root.")
    status: Literal["ok", "missing", "malformed"] = Field(description="Usable, absent, or broken.")
    problems: list[str] = Field(default_factory=list, description="What is wrong and what to do.")
    notes: list[str] = Field(default_factory=list, description="Non-fatal observations (unusual split sizes).")
    counts: dict[str, int] = Field(default_factory=dict, description="Usable entries per list file.")
    sizes: list[int] = Field(default_factory=list, description="Data-size points (--sizes) this task supports.")
    skipped: dict[str, int] = Field(default_factory=dict,
                                    description="Entries skipped per list file (missing/bad files, duplicate rows).")


class LayoutReport(FrozenModel):
    """The check of a whole root."""

    root: str = Field(description="The VTAB-1k root that was checked.")
    tasks: list[TaskCheck] = Field(description="One entry per requested task, in paper order.")

    @property
    def usable(self) -> list[str]:
        """Keys of the tasks that can run."""
        return [t.key for t in self.tasks if t.status == "ok"]

    @property
    def unusable(self) -> list[TaskCheck]:
        """The missing and malformed tasks."""
        return [t for t in self.tasks if t.status != "ok"]


def find_task_folder(root: Path, task: TaskSpec) -> Path | None:
    """The task's folder under ``root``: the NOAH name first, then the paper key (``cifar`` / ``cifar100``)."""
    for name in dict.fromkeys((task.folder, task.key)):
        candidate = root / name
        if candidate.is_dir():
            return candidate
    return None


def _check_list(folder: Path, name: str, num_classes: int) -> tuple[int, list[str], list[str], int]:
    """Return (usable entries, problems, notes, skipped entries) of one list file."""
    path = folder / name
    if not path.is_file():
        return 0, [f"{name} is missing"], [], 0
    try:
        index = index_dataset(path)
    except DatasetError as exc:  # malformed line, empty list, every entry missing ...
        return 0, [str(exc)], [], 0
    problems: list[str] = []
    notes: list[str] = []
    escaped = [s for s in index.skipped if s.reason == "outside-root"]
    if escaped:
        problems.append(f"{name}: {len(escaped)} entries point outside the task folder (e.g. {escaped[0].path}); "
                        "entries must be paths relative to the task folder")
    other = [s for s in index.skipped if s.reason != "outside-root"]
    if other:
        reasons = Counter(s.reason for s in other)
        why = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
        notes.append(f"{name}: {len(other)} entries skipped ({why}; e.g. {other[0].path})")
    bad = sorted({s.label for s in index.samples if s.label is not None and s.label >= num_classes})
    if bad:
        problems.append(f"{name}: labels {bad[:5]} are outside 0..{num_classes - 1} for this task; "
                        "is this the right folder?")
    expected = _EXPECTED.get(name)
    if expected is not None and len(index.samples) != expected:
        notes.append(f"{name} has {len(index.samples)} usable entries (VTAB-1k has {expected})")
    return len(index.samples), problems, notes, len(index.skipped)


def check_task(root: Path, task: TaskSpec, sizes: tuple[int, ...] = (800,)) -> TaskCheck:
    """Check one task folder: the four list files, their entries, labels and the data-size splits."""
    folder = find_task_folder(root, task)
    if folder is None:
        return TaskCheck(key=task.key, folder=task.folder, status="missing",
                         problems=[f"no folder {display_path(root / task.folder)}; {_EXPORT_HINT}"])
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    problems: list[str] = []
    notes: list[str] = []
    for name in LIST_FILES:
        n, p, note, n_skipped = _check_list(folder, name, task.num_classes)
        counts[name] = n
        if n_skipped:
            skipped[name] = n_skipped
        problems += p
        notes += note
    if problems:
        problems.append(f"fix the list files in {display_path(folder)} or {_EXPORT_HINT}")
        return TaskCheck(key=task.key, folder=folder.name, status="malformed", problems=problems,
                         notes=notes, counts=counts, skipped=skipped)
    supported: list[int] = []
    for n_train in sizes:
        have = counts.get("train800.txt", 0)
        if n_train < 800 and have < n_train:  # a subset larger than its list: never train on fewer silently
            notes.append(f"size {n_train} skipped: train800.txt in {display_path(folder)} has only {have} usable "
                         f"entries")
            continue
        if n_train <= 800:
            supported.append(n_train)
            continue
        names = size_list_files(n_train)
        absent = [f for f in names if not (folder / f).is_file()]
        if absent:
            notes.append(f"size {n_train} skipped: {', '.join(absent)} not in {display_path(folder)} (Tables 5-6 "
                         f"need larger splits exported from the full dataset, train:val 4:1)")
        else:
            supported.append(n_train)
    return TaskCheck(key=task.key, folder=folder.name, status="ok", notes=notes, counts=counts, sizes=supported,
                     skipped=skipped)


def check_layout(root: Path, tasks: list[TaskSpec], sizes: tuple[int, ...] = (800,)) -> LayoutReport:
    """Check every requested task under ``root``.

    Raises:
        DatasetError: ``root`` itself is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"VTAB-1k root {display_path(root)} is not a folder; pass the folder that holds the "
                           f"task folders (cifar/, caltech101/, ...); {_EXPORT_HINT}")
    return LayoutReport(root=display_path(os.path.abspath(root)), tasks=[check_task(root, t, sizes) for t in tasks])
