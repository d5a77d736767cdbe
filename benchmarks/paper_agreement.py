"""Ask the advisor every question the paper can answer and count where it agrees with the paper.

Questions (Han et al., ICLR 2024):

* **named-task cells**: each VTAB-1k task at each measured size with each backbone (Tables 1-2, 5-6 for
  the ImageNet-21k ViT-B/16; Tables 7-15 at 800 for Swin-B, MAE and MoCo v3) and each one-shot cell
  (Tables 3-4, asked at n = number of classes). The paper's winner is the expected answer; a printed
  tie expects "pilot".
* **task-type cells**: each task type (and each disparity) at each table size where all its measured
  tasks agree; the expected answer is that winner.
* **similarity cells**: each Table 19 dataset, asked as ``fine-grained`` with its FID.

A task-type or similarity question is a claim about a task the paper did not name, so "run a pilot,
leaning <the paper's winner>" agrees with it (counted apart, column "lean"): the advisor answers so when
the evidence for such a question conflicts (e.g. a type resting on one task whose winner goes against the
size trend). A named-task question agrees only with the winner itself.

It also checks that no answer with confidence high is contradicted by a voting experiment. Run with
``python -m benchmarks.paper_agreement``; it prints the CPU capability line like every benchmark,
the agreement table, and every miss.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from advisor.decide import build_inputs, recommend
from advisor.schemas import BackboneName, Recommendation
from advisor.tasks import TASK_TYPES
from engine.paper import DATA_SIZES, VTAB_TASKS
from engine.paper.evidence import experiments, fgvc_cells

__all__ = ["Question", "Outcome", "questions", "ask", "run", "main"]


@dataclass(frozen=True)
class Question:
    """One question with the paper's answer."""

    kind: str  # "named", "one-shot", "type", "similarity"
    label: str
    expected: str  # "FT", "VPT" or "pilot" (for a printed tie)
    source: str
    n_train: int
    task: str | None = None
    disparity: str | None = None
    fid: float | None = None
    backbone: BackboneName = "in21k"


@dataclass(frozen=True)
class Outcome:
    """The advisor's answer to a question."""

    question: Question
    answer: str
    confidence: str
    agrees: bool
    contradicted_high: bool
    by_lean: bool = False


def _named() -> Iterator[Question]:
    for cell in experiments():
        if cell.setting == "fgvc" or cell.n_train is None:
            continue
        kind = "one-shot" if cell.setting == "one-shot" else "named"
        expected = "pilot" if cell.winner == "tie" else cell.winner
        yield Question(kind, f"{cell.key} n={cell.n_train} {cell.backbone}", expected, cell.table,
                       n_train=cell.n_train, task=cell.key, backbone=cell.backbone)


def _types() -> Iterator[Question]:
    groups: dict[str, tuple[str, ...]] = {name: t.related for name, t in TASK_TYPES.items()}
    for disp in ("low", "high"):
        groups[f"--disparity {disp}"] = tuple(k for k, t in VTAB_TASKS.items() if t.disparity == disp)
    cells = [c for c in experiments() if c.setting == "sized"]
    backbones: tuple[BackboneName, ...] = ("in21k", "swin-in21k", "mae", "mocov3")
    for name, keys in groups.items():
        for backbone in backbones:
            for n in DATA_SIZES if backbone == "in21k" else (800,):
                at = [c for c in cells if c.key in keys and c.n_train == n and c.backbone == backbone]
                winners = {c.winner for c in at}
                if not at or len(winners) != 1 or "tie" in winners:
                    continue
                by_disparity = name.startswith("--")
                yield Question("type", f"{name} n={n} {backbone}", winners.pop(),
                               ", ".join(sorted({c.table for c in at})), n_train=n,
                               task=None if by_disparity else name,
                               disparity=name.split()[-1] if by_disparity else None, backbone=backbone)


def _similarity() -> Iterator[Question]:
    for cell in fgvc_cells():
        yield Question("similarity", f"fine-grained FID {cell.fid} ({cell.name})", cell.winner, "Table 19",
                       n_train=800, task="fine-grained", fid=cell.fid)


def questions() -> list[Question]:
    """Every question the paper answers."""
    return [*_named(), *_types(), *_similarity()]


def ask(q: Question) -> Recommendation:
    """The advisor's recommendation for one question (paper evidence only, no pilot)."""
    return recommend(build_inputs(task=q.task, disparity=q.disparity, n_train=q.n_train, fid=q.fid,
                                  backbone=q.backbone))


def run() -> list[Outcome]:
    """Ask every question."""
    out = []
    for q in questions():
        rec = ask(q)
        contradicted = rec.confidence == "high" and any(
            t.winner not in (rec.recommendation, "tie") for t in rec.nearest_tasks)
        by_lean = (q.kind in ("type", "similarity") and rec.recommendation == "pilot" and rec.lean == q.expected)
        out.append(Outcome(q, rec.recommendation, rec.confidence, rec.recommendation == q.expected or by_lean,
                           contradicted, by_lean))
    return out


def main() -> int:
    """Print the agreement table and every miss; exit 1 when a named-task cell misses."""
    print(f"CPU: {platform.processor() or platform.machine()} ({platform.python_implementation()} "
          f"{platform.python_version()}); pure decision logic, no timing")
    outcomes = run()
    print(f"{'questions':<22} {'asked':>5} {'agree':>5} {'lean':>4} {'miss':>4}   "
          "high medium  low   high contradicted")
    backbones = ("in21k", "swin-in21k", "mae", "mocov3")
    groups = [(f"{kind} {bb}", [o for o in outcomes if o.question.kind == kind and o.question.backbone == bb])
              for kind in ("named", "one-shot", "type", "similarity") for bb in backbones]
    for label, rows in groups:
        if not rows:
            continue
        agree = sum(o.agrees for o in rows)
        conf = [sum(o.confidence == c for o in rows) for c in ("high", "medium", "low")]
        lean = sum(o.by_lean for o in rows)
        print(f"{label:<22} {len(rows):>5} {agree:>5} {lean:>4} {len(rows) - agree:>4}   "
              f"{conf[0]:>4} {conf[1]:>6} {conf[2]:>4}   "
              f"{sum(o.contradicted_high for o in rows):>4}")
    misses = [o for o in outcomes if not o.agrees or o.contradicted_high]
    leans = [o for o in outcomes if o.by_lean]
    if leans:
        print("\nagree by lean (question: paper -> advisor)")
    for o in leans:
        print(f"  {o.question.kind:<10} {o.question.label}: {o.question.expected} -> pilot leaning "
              f"{o.question.expected}, {o.confidence}; {o.question.source}")
    if misses:
        print("\nmisses (question: paper -> advisor, confidence; source)")
    for o in misses:
        flag = " [high confidence contradicted]" if o.contradicted_high else ""
        print(f"  {o.question.kind:<10} {o.question.label}: {o.question.expected} -> {o.answer}, "
              f"{o.confidence}; {o.question.source}{flag}")
    named_miss = any(not o.agrees for o in outcomes if o.question.kind in ("named", "one-shot"))
    return 1 if named_miss else 0


if __name__ == "__main__":
    sys.exit(main())
