"""Ask the advisor about every paper cell as if the task were new, and count how often it is right.

Questions (``advisor.heldout.questions``): every FT-vs-VPT cell of Tables 1-15 (ties left out), its task
removed from the evidence, asked by its disparity alone and by every task type whose related tasks
include it; every Table 19 dataset asked as ``fine-grained`` with its FID, the threshold refitted
without it. The answers come from ``advisor.decide.recommend`` (the full path ``recommend`` takes).

Printed per question kind and backbone: right / wrong per confidence level, the "run a pilot" answers
(with how often their lean was right), decisive precision and coverage, and the Brier score of the
stated probability that VPT wins -- beside two baselines computed in the same run on the same cells:

* **size rule**: VPT below 5,000 samples, FT from 5,000 (Sec. 4.4, Tables 5-6); probability = VPT's
  share among the other tasks at that size;
* **group vote**: the majority of the same comparable tasks at the same size (the task left out),
  no abstention (an even vote is a miss); probability = their VPT share.

``main`` exits 1 when a confidence level breaks its promise (``advisor.heldout.LEVEL_PROMISE``) or the
ImageNet-21k questions miss the issue's bar (decisive right >= 80 % with >= 65 % answered).
Run with ``python -m benchmarks.held_out``; pure decision logic, a few seconds.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from advisor.decide import build_inputs, recommend
from advisor.evidence import task_vote_cells
from advisor.heldout import LEVEL_PROMISE, HeldOutQuestion, asked_by, questions, right
from advisor.tasks import TASK_TYPES
from engine.paper import VTAB_TASKS
from engine.paper.evidence import Experiment

__all__ = ["Answered", "Summary", "ask_all", "main", "summarise"]

DECISIVE_BAR = 0.80
"""Issue 18: decisive answers right at least this often ..."""
COVERAGE_BAR = 0.65
"""... with at least this share of the cells answered (ImageNet-21k backbone)."""
SIZE_RULE_FT_FROM = 5000
"""The two-line baseline: VPT below this many training samples, FT from it (Tables 5-6)."""


@dataclass(frozen=True)
class Answered:
    """One held-out question with the advisor's answer and the baselines'."""

    question: HeldOutQuestion
    kind: str  # the question kind as the advisor saw it (an FID that cannot be thresholded drops "+ FID")
    choice: str
    lean: str | None
    confidence: str
    p_vpt: float | None
    size_rule: str
    size_p: float
    group_vote: str | None
    group_p: float


def _keys(q: HeldOutQuestion) -> list[str]:
    if q.task is not None:
        return list(TASK_TYPES[q.task].related)
    return [k for k, t in VTAB_TASKS.items() if t.disparity == q.disparity]


def _share(cells: list[Experiment]) -> float:
    return sum(1.0 if c.winner == "VPT" else 0.5 if c.winner == "tie" else 0.0 for c in cells) / len(cells) \
        if cells else 0.5


def _baselines(q: HeldOutQuestion) -> tuple[str, float, str | None, float]:
    n = q.n_train if q.n_train is not None else 800
    size_rule = "VPT" if n < SIZE_RULE_FT_FROM else "FT"
    pool = task_vote_cells(list(VTAB_TASKS), q.backbone, n, (q.key,))
    group = task_vote_cells(_keys(q), q.backbone, n, (q.key,))
    gp = _share(group)
    return size_rule, _share(pool), ("VPT" if gp > 0.5 else "FT" if gp < 0.5 else None), gp


def ask_all() -> list[Answered]:
    """Ask every held-out question through ``recommend``."""
    out = []
    for q in questions():
        rec = recommend(build_inputs(task=q.task, disparity=q.disparity, n_train=q.n_train, fid=q.fid,
                                     backbone=q.backbone, held_out=(q.key,)))
        out.append(Answered(q, asked_by(rec.inputs, rec.similarity) or q.asked_by, rec.recommendation, rec.lean,
                            rec.confidence, rec.probability_vpt, *_baselines(q)))
    return out


@dataclass(frozen=True)
class Summary:
    """One row of the table."""

    label: str
    asked: int
    levels: dict[str, tuple[int, int]]  # level -> (right, answered); "pilot": lean right
    brier: float
    size_rule: tuple[int, float]
    group_vote: tuple[int, float]

    @property
    def decisive(self) -> tuple[int, int]:
        pairs = [self.levels.get(lv, (0, 0)) for lv in ("high", "medium", "low")]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def _is_right(a: Answered) -> bool:
    return right(a.question, (a.choice, a.lean, a.confidence))  # type: ignore[arg-type]


def summarise(rows: list[Answered], label: str) -> Summary:
    """Counts, Brier scores and baselines of one group of answers."""
    levels: dict[str, tuple[int, int]] = {}
    for a in rows:
        lv = "pilot" if a.choice == "pilot" else a.confidence
        r, n = levels.get(lv, (0, 0))
        levels[lv] = (r + _is_right(a), n + 1)

    def brier(ps: list[float]) -> float:
        return sum((p - (a.question.expected == "VPT")) ** 2 for p, a in zip(ps, rows, strict=True)) / len(rows)

    return Summary(label, len(rows), levels,
                   brier([a.p_vpt if a.p_vpt is not None else 0.5 for a in rows]),
                   (sum(a.size_rule == a.question.expected for a in rows), brier([a.size_p for a in rows])),
                   (sum(a.group_vote == a.question.expected for a in rows), brier([a.group_p for a in rows])))


def groups(answers: list[Answered]) -> Iterator[Summary]:
    """One summary per question kind and backbone."""
    for kind in ("disparity", "task type", "task type + FID"):
        for bb in ("in21k", "swin-in21k", "mae", "mocov3"):
            rows = [a for a in answers if a.kind == kind and a.question.backbone == bb]
            if rows:
                yield summarise(rows, f"{kind} {bb}")


def broken_promises(summaries: list[Summary]) -> list[str]:
    """Every level that breaks its promise, and an ImageNet-21k group below the issue's bar."""
    out = []
    for s in summaries:
        for lv, promise in LEVEL_PROMISE.items():
            r, n = s.levels.get(lv, (0, 0))
            if n and r < promise * n:
                out.append(f"{s.label}: {lv} right {r} of {n}, below its promise {promise:.0%}")
        r, n = s.decisive
        if s.label.endswith(" in21k") and s.asked >= 20 and (r < DECISIVE_BAR * n or n < COVERAGE_BAR * s.asked):
            out.append(f"{s.label}: decisive right {r} of {n} on {s.asked} cells (bar: {DECISIVE_BAR:.0%} right, "
                       f"{COVERAGE_BAR:.0%} answered)")
    return out


def _cell(levels: dict[str, tuple[int, int]], lv: str) -> str:
    r, n = levels.get(lv, (0, 0))
    return f"{r}/{n - r}" if lv != "pilot" else f"{n} ({r})"


def main() -> int:
    """Print the table; exit 1 when a promise is broken."""
    print(f"CPU: {platform.processor() or platform.machine()} ({platform.python_implementation()} "
          f"{platform.python_version()}); pure decision logic")
    start = time.perf_counter()
    answers = ask_all()
    summaries = list(groups(answers))
    took = time.perf_counter() - start
    print("right/wrong per confidence; pilot: answers 'run a pilot' (lean right); decisive = high+medium+low")
    print(f"{'asked by, backbone':<28} {'cells':>5} {'high':>6} {'medium':>7} {'low':>6} {'pilot':>8} "
          f"{'decisive':>9} {'answered':>8} {'Brier':>6} | {'size rule':>10} {'Brier':>6} | {'group vote':>10} "
          f"{'Brier':>6}")
    for s in summaries:
        r, n = s.decisive
        prec = f"{r / n:.0%}" if n else "-"
        print(f"{s.label:<28} {s.asked:>5} {_cell(s.levels, 'high'):>6} {_cell(s.levels, 'medium'):>7} "
              f"{_cell(s.levels, 'low'):>6} {_cell(s.levels, 'pilot'):>8} {prec:>9} {n / s.asked:>8.0%} "
              f"{s.brier:>6.3f} | {s.size_rule[0]:>4}/{s.asked:<5} {s.size_rule[1]:>6.3f} | "
              f"{s.group_vote[0]:>4}/{s.asked:<5} {s.group_vote[1]:>6.3f}")
    print("promises: " + ", ".join(f"{lv} >= {p:.0%}" for lv, p in LEVEL_PROMISE.items())
          + f"; in21k bar: decisive >= {DECISIVE_BAR:.0%} right with >= {COVERAGE_BAR:.0%} answered")
    fgvc = [a for a in answers if a.question.setting == "fgvc"]
    print("\nTable 19, each dataset left out (threshold refitted without it):")
    for a in fgvc:
        said = f"pilot leaning {a.lean}" if a.choice == "pilot" else a.choice
        print(f"  {a.question.label}: paper {a.question.expected}, advisor {said} ({a.confidence}; asked as {a.kind})")
    broken = broken_promises(summaries)
    print(f"\n{len(answers)} questions in {took:.1f} s; " + ("every promise holds" if not broken else "BROKEN:"))
    for line in broken:
        print(f"  {line}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
