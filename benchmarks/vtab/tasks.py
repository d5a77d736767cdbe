"""The 19 VTAB-1k tasks as the reproduction sees them: a view over :data:`engine.paper.VTAB_TASKS`.

This module adds the NOAH-layout list files of a task folder (ANCHORS section 3) and, for the
data-size study of Tables 5-6, the list-file names a larger split must have.
"""

from __future__ import annotations

from engine.paper import VTAB_TASKS, VtabTask, get_vtab_task

__all__ = ["LIST_FILES", "TaskSpec", "TASKS", "resolve_tasks", "size_list_files"]

LIST_FILES: tuple[str, ...] = ("train800.txt", "val200.txt", "train800val200.txt", "test.txt")
"""List files every task folder of a VTAB-1k tree must hold (lines ``relative/path label``)."""


TaskSpec = VtabTask
"""A task of the reproduction is the paper's registry entry; its files live under ``<root>/<folder>``."""

TASKS: dict[str, TaskSpec] = dict(VTAB_TASKS)
"""All 19 tasks in the paper's order."""


def resolve_tasks(names: list[str] | None) -> list[TaskSpec]:
    """Tasks selected by ``--tasks`` (keys, NOAH folders, aliases or group names), in paper order.

    ``None`` or an empty list selects all 19. Group names (``natural``, ``specialized``,
    ``structured``) select the whole group.

    Raises:
        UnknownTaskError: a name matches no task (with close matches).
    """
    if not names:
        return list(TASKS.values())
    wanted: set[str] = set()
    for raw in names:
        for name in (n for n in raw.split(",") if n.strip()):
            group = name.strip().lower()
            members = [t.key for t in TASKS.values() if t.group.lower() == group]
            wanted.update(members or [get_vtab_task(name.strip()).key])
    return [t for k, t in TASKS.items() if k in wanted]


def size_list_files(n_train: int) -> tuple[str, str, str]:
    """(train, val, train+val) list names for a data-size point, NOAH style: ``train5000.txt`` ..."""
    n_val = n_train // 4
    return f"train{n_train}.txt", f"val{n_val}.txt", f"train{n_train}val{n_val}.txt"
