"""The ``--task`` vocabulary: task types and VTAB-1k task names, each mapped to a task disparity.

Han et al. (ICLR 2024) split tasks by *task disparity* to the pretraining objective (ImageNet-21k
classification): Natural and Specialized VTAB tasks (classification-like) are low disparity,
Structured tasks (counting, distance, position, orientation) are high disparity. A user names either
a task type (``counting``, ``fine-grained``) or a VTAB-1k task (``clevr_count``, ``dsprites_loc``);
each maps to a disparity and to the related paper tasks shown as "nearest tasks". Pure module.
"""

from __future__ import annotations

import difflib
import re

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import UnknownTaskError
from engine.paper import VTAB_TASKS, Disparity, VtabTask, get_vtab_task, normalize_task_name

__all__ = ["TASK_TYPES", "ResolvedTask", "TaskType", "resolve_task", "task_choices", "task_help"]


class TaskType(BaseModel):
    """A generic task type and the VTAB-1k tasks closest to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Task-type name, e.g. 'counting'.")
    disparity: Disparity = Field(description="Task disparity to ImageNet-21k classification.")
    related: tuple[str, ...] = Field(default=(), description="VTAB-1k task keys most like this type.")


class ResolvedTask(BaseModel):
    """The result of resolving a ``--task`` value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    given: str = Field(description="The value as the user typed it.")
    name: str = Field(description="Canonical name: a task type or a VTAB-1k task key.")
    kind: str = Field(description="'type' (generic task type) or 'vtab' (a VTAB-1k task).")
    disparity: Disparity = Field(description="Task disparity.")
    group: str | None = Field(default=None, description="VTAB group for VTAB tasks.")
    related: tuple[str, ...] = Field(default=(), description="Related VTAB-1k task keys, closest first.")


_NATURAL = tuple(k for k, t in VTAB_TASKS.items() if t.group == "Natural")
_SPECIALIZED = tuple(k for k, t in VTAB_TASKS.items() if t.group == "Specialized")
_STRUCTURED = tuple(k for k, t in VTAB_TASKS.items() if t.group == "Structured")


def _t(name: str, disparity: Disparity, *related: str) -> TaskType:
    return TaskType(name=name, disparity=disparity, related=related)


TASK_TYPES: dict[str, TaskType] = {
    t.name: t
    for t in (
        # Low disparity: classification-like, as VTAB Natural and Specialized.
        _t("classification", "low", *_NATURAL, *_SPECIALIZED),
        _t("fine-grained", "low", "flowers102", "pets", "caltech101"),
        _t("natural", "low", *_NATURAL),
        _t("object", "low", "caltech101", "cifar100"),
        _t("specialized", "low", *_SPECIALIZED),
        _t("medical", "low", "patch_camelyon", "retinopathy"),
        _t("remote-sensing", "low", "eurosat", "resisc45"),
        _t("satellite", "low", "eurosat", "resisc45"),
        _t("texture", "low", "dtd"),
        _t("scene", "low", "sun397"),
        _t("digits", "low", "svhn"),
        # High disparity: structured prediction cast as classification, as VTAB Structured.
        _t("structured", "high", *_STRUCTURED),
        _t("counting", "high", "clevr_count"),
        _t("distance", "high", "clevr_distance", "kitti_distance"),
        _t("depth", "high", "clevr_distance", "kitti_distance"),
        _t("location", "high", "dsprites_location"),
        _t("localization", "high", "dsprites_location"),
        _t("orientation", "high", "dsprites_orientation", "smallnorb_azimuth"),
        _t("pose", "high", "smallnorb_azimuth", "smallnorb_elevation"),
        _t("azimuth", "high", "smallnorb_azimuth"),
        _t("elevation", "high", "smallnorb_elevation"),
        _t("navigation", "high", "dmlab"),
    )
}

_TYPE_ALIASES = {"fine_grained": "fine-grained", "finegrained": "fine-grained", "remote_sensing": "remote-sensing",
                 "aerial": "remote-sensing", "localisation": "localization", "count": "counting"}


def _normalize_type(name: str) -> str:
    text = re.sub(r"[\s_]+", "-", name.strip().lower())
    return _TYPE_ALIASES.get(text.replace("-", "_"), text)


def task_choices() -> list[str]:
    """Every accepted spelling: task types, VTAB keys, NOAH folder names and aliases."""
    names = list(TASK_TYPES)
    for task in VTAB_TASKS.values():
        names.extend([task.key, *task.aliases])
    return list(dict.fromkeys(names))


def task_help() -> str:
    """One paragraph for ``--help`` listing task types by disparity and the VTAB-1k keys."""
    low = ", ".join(n for n, t in TASK_TYPES.items() if t.disparity == "low")
    high = ", ".join(n for n, t in TASK_TYPES.items() if t.disparity == "high")
    return (
        f"Task type or VTAB-1k task. Low disparity: {low}. High disparity: {high}. "
        f"VTAB-1k tasks (key or NOAH folder name): {', '.join(VTAB_TASKS)}."
    )


def _from_vtab(given: str, task: VtabTask) -> ResolvedTask:
    same_group = [k for k, t in VTAB_TASKS.items() if t.group == task.group and k != task.key]
    return ResolvedTask(
        given=given, name=task.key, kind="vtab", disparity=task.disparity, group=task.group,
        related=(task.key, *same_group),
    )


def resolve_task(name: str) -> ResolvedTask:
    """Map a ``--task`` value to its disparity and related VTAB-1k tasks.

    Task types are tried first, then VTAB-1k names (key, folder name, display name, alias).

    Raises:
        UnknownTaskError: not a known spelling; the message lists close matches and the task types.
    """
    type_name = _normalize_type(name)
    if type_name in TASK_TYPES:
        t = TASK_TYPES[type_name]
        return ResolvedTask(given=name, name=t.name, kind="type", disparity=t.disparity, related=t.related)
    try:
        return _from_vtab(name, get_vtab_task(name))
    except UnknownTaskError:
        pass
    candidates = task_choices()
    close = difflib.get_close_matches(type_name, candidates, n=3, cutoff=0.6)
    close += difflib.get_close_matches(normalize_task_name(name), candidates, n=3, cutoff=0.6)
    close = list(dict.fromkeys(close))[:4]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownTaskError(
        f"unknown task {name!r}.{hint} Task types: {', '.join(TASK_TYPES)}; "
        "or a VTAB-1k task such as clevr_count (see 'vpt-advisor recommend --help'), "
        "or use --disparity low|high."
    )
