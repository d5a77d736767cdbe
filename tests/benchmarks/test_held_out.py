"""The held-out benchmark: every confidence level keeps its promise on tasks the advice never saw."""

from __future__ import annotations

import pytest

from advisor.decide import ask_held_out, build_inputs, recommend
from advisor.heldout import LEVEL_PROMISE, records
from benchmarks import held_out


@pytest.fixture(scope="module")
def answers() -> list[held_out.Answered]:
    return held_out.ask_all()


def test_every_promise_holds(answers: list[held_out.Answered]) -> None:
    summaries = list(held_out.groups(answers))
    assert held_out.broken_promises(summaries) == []
    by_label = {s.label: s for s in summaries}
    for kind in ("disparity", "task type"):  # the bar, asked both ways (ImageNet-21k, 84 cells each way)
        s = by_label[f"{kind} in21k"]
        right, decisive = s.decisive
        assert right >= 0.80 * decisive and decisive >= 0.65 * s.asked, (kind, s)
        r, n = s.levels.get("medium", (0, 0))
        assert n > 0 and r >= 0.80 * n
    assert by_label["disparity in21k"].asked == 84  # every in21k cell but the one tie


def test_no_unseen_answer_is_high_and_none_is_wrong_at_high(answers: list[held_out.Answered]) -> None:
    assert not [a for a in answers if a.choice != "pilot" and a.confidence == "high"]


def test_the_record_recommend_quotes_is_the_benchmark_count(answers: list[held_out.Answered]) -> None:
    counted: dict[tuple[str, str, str], tuple[int, int]] = {}
    for a in answers:
        key = (a.kind, a.question.backbone, "pilot" if a.choice == "pilot" else a.confidence)
        r, n = counted.get(key, (0, 0))
        counted[key] = (r + held_out._is_right(a), n + 1)
    assert counted == records(ask_held_out)


def test_recommend_carries_probability_and_record() -> None:
    rec = recommend(build_inputs(task="structured", n_train=800))
    assert rec.recommendation == "VPT" and rec.confidence == "medium"
    assert rec.probability_vpt is not None and rec.probability_vpt >= 0.75
    assert rec.record is not None and rec.record.asked_by == "task type" and rec.record.confidence == "medium"
    assert rec.record.right >= LEVEL_PROMISE["medium"] * rec.record.n
    assert f"right {rec.record.right} of {rec.record.n} times" in rec.record.sentence
    named = recommend(build_inputs(task="svhn", n_train=800))  # a named task answers from its own cell
    assert named.probability_vpt is None and named.record is None and named.recommendation == "FT"


def test_baselines_are_computed_on_the_same_cells(answers: list[held_out.Answered]) -> None:
    in21k = [a for a in answers if a.kind == "disparity" and a.question.backbone == "in21k"]
    s = held_out.summarise(in21k, "x")
    assert s.size_rule[0] == 66  # the two-line rule: right 66 of 84
    assert 0.0 < s.brier < 0.25 and 0.0 < s.size_rule[1] < 0.25


def test_main_prints_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert held_out.main() == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU:") and "every promise holds" in out and "stanford_cars" in out
