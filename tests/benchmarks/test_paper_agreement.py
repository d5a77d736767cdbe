"""benchmarks.paper_agreement: the advisor agrees with every cell the paper prints."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.paper_agreement import questions, run
from engine.paper.evidence import experiments


def test_every_named_task_cell_agrees_with_the_paper() -> None:
    outcomes = run()
    named = [o for o in outcomes if o.question.kind in ("named", "one-shot")]
    # one question per VTAB-1k cell of Tables 1-15 (the FGVC rows are asked as similarity questions)
    assert len(named) == sum(1 for c in experiments() if c.setting != "fgvc")
    misses = [(o.question.label, o.question.expected, o.answer) for o in named if not o.agrees]
    assert misses == []


def test_no_high_confidence_answer_is_contradicted_and_types_follow_their_vote() -> None:
    outcomes = run()
    assert [o.question.label for o in outcomes if o.contradicted_high] == []
    types = [o for o in outcomes if o.question.kind == "type"]
    assert types and all(o.agrees for o in types)
    assert {o.question.kind for o in outcomes} == {"named", "one-shot", "type", "similarity"}


def test_questions_expect_pilot_for_a_printed_tie() -> None:
    ties = [q for q in questions() if q.expected == "pilot"]
    assert [q.label for q in ties] == ["clevr_distance n=400 in21k"]


def test_module_runs_and_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.paper_agreement"], capture_output=True, text=True,
                         check=True)
    assert "CPU:" in out.stdout and "named" in out.stdout and "one-shot" in out.stdout
