"""The held-out record: how often the advisor is right about a task the paper never measured.

A user's dataset is not a VTAB-1k task, so an answer to a task type or a bare disparity is a claim
about an *unseen* task. Every such claim is checked the same way: each cell of the paper (a VTAB-1k
task at one training size with one backbone, Tables 1-15, ties left out) is asked as if the task were
new -- its own cells removed from the evidence (``AdvisorInputs.held_out``), the task described by its
disparity alone and by every task type whose related tasks include it -- and each Table 19 dataset is
asked as ``fine-grained`` with its FID, the threshold refitted without it. The answers are counted
per question kind, backbone and confidence (:func:`records`); ``recommend`` quotes the count of the
answers given the same way as its own (:func:`held_out_record`), and ``python -m benchmarks.held_out``
prints them all beside simple baselines. Pure, no torch; the record is computed once per process
(about 700 questions, well under a second).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from advisor.schemas import AdvisorInputs, BackboneName, Choice, Confidence, HeldOutRecord, Lean, Similarity
from advisor.tasks import TASK_TYPES
from engine.paper import VTAB_TASKS
from engine.paper.evidence import experiments, fgvc_cells

__all__ = ["LEVEL_PROMISE", "HeldOutQuestion", "asked_by", "held_out_record", "questions", "records"]

LEVEL_PROMISE: dict[str, float] = {"high": 0.95, "medium": 0.80, "low": 0.65}
"""What a confidence level promises on tasks left out (our rule, checked by ``benchmarks.held_out`` and its
test): at least this share of the answers given at that level are right. Below "low" the answer is
"run a pilot"."""


@dataclass(frozen=True)
class HeldOutQuestion:
    """One paper cell asked as an unseen task."""

    asked_by: str  # "task type", "disparity", "task type + FID"
    label: str
    expected: str  # the paper's winner of the cell left out: "FT" or "VPT"
    key: str  # the task (or Table 19 dataset) left out
    setting: str  # "sized", "one-shot", "fgvc"
    n_train: int | None
    backbone: BackboneName
    source: str
    task: str | None = None
    disparity: str | None = None
    fid: float | None = None


def questions() -> list[HeldOutQuestion]:
    """Every paper cell (ties left out), asked by disparity and by each task type that includes its task."""
    out: list[HeldOutQuestion] = []
    for cell in experiments():
        if cell.setting == "fgvc" or cell.winner == "tie" or cell.n_train is None:
            continue
        size = "one-shot" if cell.setting == "one-shot" else f"n={cell.n_train}"
        common = dict(expected=cell.winner, key=cell.key, setting=cell.setting, n_train=cell.n_train,
                      backbone=cell.backbone, source=cell.table)
        out.append(HeldOutQuestion("disparity", f"{cell.key} {size} {cell.backbone} by disparity",
                                   disparity=VTAB_TASKS[cell.key].disparity, **common))  # type: ignore[arg-type]
        for name, t in TASK_TYPES.items():
            if cell.key in t.related:
                out.append(HeldOutQuestion("task type", f"{cell.key} {size} {cell.backbone} as '{name}'",
                                           task=name, **common))  # type: ignore[arg-type]
    for row in fgvc_cells():
        out.append(HeldOutQuestion("task type + FID", f"{row.key} as 'fine-grained' with FID {row.fid}", row.winner,
                                   row.key, "fgvc", None, "in21k", "Table 19", task="fine-grained", fid=row.fid))
    return out


def asked_by(inputs: AdvisorInputs, similarity: Similarity) -> str | None:
    """The question kind of ``inputs`` in the record's terms (None for a named VTAB-1k task)."""
    if inputs.task_kind == "vtab":
        return None
    fid = (inputs.disparity == "low" and inputs.backbone == "in21k"
           and similarity in ("similar", "dissimilar", "borderline"))
    base = "task type" if inputs.task_kind == "type" else "disparity"
    return f"{base} + FID" if fid else base


Answer = tuple[Choice, Lean, Confidence]
Asker = Callable[["HeldOutQuestion"], tuple[Answer, str | None]]
"""Asks the advisor one held-out question: :func:`advisor.decide.ask_held_out`, passed in because decide quotes
this module's record (taking it as an argument keeps the two modules out of an import circle)."""


def level(choice: Choice, confidence: Confidence) -> str:
    """The record's bucket: the confidence of an answer, or 'pilot'."""
    return "pilot" if choice == "pilot" else confidence


def run(ask: Asker) -> list[tuple[HeldOutQuestion, Answer, str | None]]:
    """Ask every question; each answer with the kind the advisor saw it as."""
    return [(q, *ask(q)) for q in questions()]


def right(q: HeldOutQuestion, answer: Answer) -> bool:
    """The answer (or, for 'run a pilot', its lean) is the paper's winner of the cell left out."""
    choice, lean, _ = answer
    return (lean if choice == "pilot" else choice) == q.expected


@functools.lru_cache(maxsize=1)
def records(ask: Asker) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(asked by, backbone, level) -> (right, asked), over every held-out question."""
    out: dict[tuple[str, str, str], tuple[int, int]] = {}
    for q, answer, kind in run(ask):
        key = (kind or q.asked_by, q.backbone, level(answer[0], answer[2]))
        r, n = out.get(key, (0, 0))
        out[key] = (r + right(q, answer), n + 1)
    return out


def held_out_record(inputs: AdvisorInputs, choice: Choice, confidence: Confidence,
                    similarity: Similarity, ask: Asker) -> HeldOutRecord | None:
    """The record of answers given the same way as this one (None for a named task)."""
    kind = asked_by(inputs, similarity)
    if kind is None:
        return None
    lv = level(choice, confidence)
    r, n = records(ask).get((kind, inputs.backbone, lv), (0, 0))
    what = f"answers 'run a pilot' to questions asked by {kind}" if lv == "pilot" else \
        f"answers at confidence {lv} to questions asked by {kind}"
    if n == 0:
        sentence = (f"No paper cell asked as an unseen task ({kind}, {inputs.backbone} backbone) got an answer like "
                    "this one, so it has no held-out record.")
    else:
        counted = "their lean was right" if lv == "pilot" else "they were right"
        sentence = (f"Held-out record: of the {n} {what} ({inputs.backbone} backbone), with the task's own cells "
                    f"left out, {counted} {r} of {n} times ({r / n:.0%}; benchmarks.held_out).")
    return HeldOutRecord(asked_by=kind, backbone=inputs.backbone, confidence=lv, right=r, n=n, sentence=sentence)
