"""advisor.tasks: the --task vocabulary and its disparities."""

from __future__ import annotations

import pytest

from advisor.tasks import TASK_TYPES, resolve_task, task_choices, task_help
from engine.errors import UnknownTaskError
from engine.paper import VTAB_TASKS

LOW = ["classification", "fine-grained", "natural", "specialized", "medical", "remote-sensing", "satellite",
       "texture", "scene"]
HIGH = ["counting", "distance", "depth", "location", "localization", "orientation", "pose", "azimuth", "elevation"]


@pytest.mark.parametrize("name", LOW)
def test_low_disparity_types(name: str) -> None:
    assert resolve_task(name).disparity == "low"


@pytest.mark.parametrize("name", HIGH)
def test_high_disparity_types(name: str) -> None:
    assert resolve_task(name).disparity == "high"


def test_related_tasks_share_the_disparity() -> None:
    for t in TASK_TYPES.values():
        assert t.related, t.name
        assert {VTAB_TASKS[k].disparity for k in t.related} == {t.disparity}


@pytest.mark.parametrize("spelling", ["Fine Grained", "fine_grained", "REMOTE SENSING", " Counting "])
def test_spelling_variants(spelling: str) -> None:
    assert resolve_task(spelling).kind == "type"


def test_every_vtab_spelling_resolves_to_its_task() -> None:
    for task in VTAB_TASKS.values():
        for spelling in (task.key, task.folder, task.name, *task.aliases):
            r = resolve_task(spelling)
            if r.kind == "vtab":
                assert r.name == task.key and r.disparity == task.disparity and r.related[0] == task.key
            else:  # a few aliases are also task-type words; then the disparity must still agree
                assert r.disparity == task.disparity


def test_unknown_task_lists_close_matches() -> None:
    with pytest.raises(UnknownTaskError, match="Did you mean: counting"):
        resolve_task("countng")
    with pytest.raises(UnknownTaskError, match="--disparity low"):
        resolve_task("segmentation-of-whales")


def test_help_lists_every_type_and_vtab_key() -> None:
    text = task_help()
    for name in [*TASK_TYPES, *VTAB_TASKS]:
        assert name in text
    assert set(TASK_TYPES) <= set(task_choices())
