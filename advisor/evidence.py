"""The paper's experiments that answer a question, and what they say (Han et al., ICLR 2024).

Every cell of Tables 1-15 and 19 is an experiment (:mod:`engine.paper.evidence`). A question picks the
comparable ones and the answer is their vote:

* a named VTAB-1k task: the task's own cell at the measured size nearest the user's in log n, from the
  chosen backbone's table (Tables 1-2 and 5-6, one-shot Tables 3-4, or Appendix C Tables 7-15);
* a task type (or a bare ``--disparity``), a task the paper never measured: :func:`estimate`, the
  probability that VPT wins. Each comparable task votes once (a vote counts tasks, not table rows) with
  its cell at the table size nearest the user's in log n; below 400 samples with the nearer in log n of
  its one-shot cell (Tables 3-4, n = its number of classes) and its 400-sample cell; with another
  backbone its 800-sample Appendix C cell. The vote is shrunk towards the size prior, VPT's share among
  every task at that size (Tables 1-2, 5-6, Sec. 4.4), weighted as one task (:data:`PRIOR_WEIGHT`).
  :func:`estimate_level` turns it into an answer (thresholds :data:`ANSWER_SHARE`, :data:`MEDIUM_SHARE`,
  :data:`CATCH_UP_FROM`); every threshold is checked on tasks left out by ``benchmarks.held_out``.

Rules that are ours, not the paper's, for a named task's own cell (:func:`vote_finding`): a gap under
1 point is *narrow* (the paper prints no seed spread for these cells); a cell more than 2x (4x) away
from the user's size caps the confidence at medium (low); below 400 the one-shot and 400-sample cells
of the task vote and must agree by 3/4 (both). Pure, no torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from advisor.schemas import BackboneName, Choice, Confidence, Lean, NearestTask, Reason, Vote
from engine.paper import DATA_SIZES, VTAB_TASKS
from engine.paper.evidence import Experiment, fgvc_cells, task_cells

__all__ = [
    "CLEAR_SHARE",
    "FAR_FACTOR",
    "NARROW_GAP",
    "ONE_SHOT_LIMIT",
    "VERY_FAR_FACTOR",
    "Finding",
    "cap",
    "cell_row",
    "below_400",
    "fgvc_side",
    "fmt_acc",
    "nearest_cell",
    "tally",
    "vote_finding",
]

CLEAR_SHARE = 0.75
"""A vote is clear when at least this share of the voting experiments agree (our rule)."""
NARROW_GAP = 1.0
"""A gap below this many points is narrow: the paper prints no seed spread for VTAB cells (our rule)."""
FAR_FACTOR = 2.0
"""A voting cell more than this factor from the user's size caps the confidence at medium (our rule)."""
VERY_FAR_FACTOR = 4.0
"""... more than this factor caps it at low (our rule)."""
ONE_SHOT_LIMIT = DATA_SIZES[0]
"""Below 400 samples (the smallest size of Tables 5-6) the one-shot Tables 3-4 are evidence too."""
_ORDER: dict[Confidence, int] = {"low": 0, "medium": 1, "high": 2}


def cap(conf: Confidence, limit: Confidence) -> Confidence:
    """The lower of two confidence levels."""
    return conf if _ORDER[conf] <= _ORDER[limit] else limit


def _distance(cell_n: int, n: int) -> float:
    return abs(math.log(cell_n / n))


def nearest_cell(cells: Sequence[Experiment], n: int) -> Experiment:
    """The cell nearest ``n`` in log n (a tie goes to the smaller size, where more tasks are measured)."""
    sized = [c for c in cells if c.n_train is not None]
    return min(sized, key=lambda c: (_distance(c.n_train or 1, n), c.n_train))


def below_400(key: str, n: int) -> list[Experiment]:
    """Below 400 samples: the task's one-shot cell and its 400-sample cell (only the one when n is its size)."""
    cells = [c for c in task_cells(key) if c.setting == "one-shot" or c.n_train == DATA_SIZES[0]]
    exact = [c for c in cells if c.n_train == n]
    return exact or cells


def fgvc_side(side: str, threshold: float) -> list[Experiment]:
    """Table 19 rows on one side of an FID threshold ('similar': FID <= threshold)."""
    return [c for c in fgvc_cells() if c.fid is not None and ((c.fid <= threshold) == (side == "similar"))]


def tally(cells: Sequence[Experiment]) -> Vote:
    """Count the winners; the vote is clear when >= 3/4 agree (our rule)."""
    vpt = sum(c.winner == "VPT" for c in cells)
    ft = sum(c.winner == "FT" for c in cells)
    majority: Lean = "VPT" if vpt > ft else "FT" if ft > vpt else None
    top = max(vpt, ft)
    return Vote(n_voters=len(cells), vpt=vpt, ft=ft, ties=len(cells) - vpt - ft, majority=majority,
                clear=majority is not None and top >= CLEAR_SHARE * len(cells),
                unanimous=majority is not None and top == len(cells))


def cell_row(cell: Experiment, why: str, fid: float | None = None) -> NearestTask:
    """One voting experiment as a row of the nearest-task table."""
    return NearestTask(key=cell.key, name=cell.name, group=cell.group, disparity=cell.disparity,
                       n_train=cell.n_train, ft=cell.ft, vpt=cell.vpt, gap=cell.gap, winner=cell.winner,
                       fid=cell.fid if cell.fid is not None else fid, why=why, source=cell.table,
                       backbone=cell.backbone, setting=cell.setting)


@dataclass
class Finding:
    """What a set of voting experiments says, before pilot evidence."""

    choice: Choice
    confidence: Confidence
    lean: Lean = None
    vote: Vote | None = None
    rows: list[NearestTask] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    probability: float | None = None
    """P(VPT wins) for an unseen task (:func:`estimate`); None for a named task's own cell."""


def _label(cell: Experiment) -> str:
    return f"{cell.name} one-shot" if cell.setting == "one-shot" else cell.name


def _names(cells: Sequence[Experiment], winner: str) -> str:
    mixed = len({c.setting for c in cells}) > 1
    return ", ".join(_label(c) if mixed else c.name for c in cells if c.winner == winner)


def fmt_acc(value: float) -> str:
    """An accuracy or gap at the paper's precision: one decimal, two where the paper prints two."""
    return f"{value:.1f}" if abs(value * 10 - round(value * 10)) < 1e-6 else f"{value:.2f}"


def vote_sentence(cells: Sequence[Experiment], vote: Vote, what: str) -> str:
    """One complete sentence describing a vote of several experiments."""
    tables = ", ".join(dict.fromkeys(c.table for c in cells))
    sizes = sorted({c.n_train for c in cells if c.n_train is not None and c.setting == "sized"})
    where = [" and ".join(f"{s:,}" for s in sizes) + " training samples"] if sizes else []
    if any(c.setting == "one-shot" for c in cells):
        where.append("one image per class")
    if any(c.setting == "fgvc" for c in cells):
        where.append("full training sets")
    parts = [f"VPT wins {vote.vpt} ({_names(cells, 'VPT')})" if vote.vpt else "VPT wins none",
             f"FT wins {vote.ft} ({_names(cells, 'FT')})" if vote.ft else "FT wins none"]
    if vote.ties:
        parts.append(f"{vote.ties} {'is a tie' if vote.ties == 1 else 'are ties'} ({_names(cells, 'tie')})")
    if vote.unanimous:
        verdict = f"every one agrees on {vote.majority}"
    elif vote.clear:
        verdict = f"a clear vote for {vote.majority} ({max(vote.vpt, vote.ft)} of {vote.n_voters}, at least 3/4)"
    elif vote.majority is not None:
        verdict = f"a split vote, leaning {vote.majority}, so a pilot of both methods is the reliable answer"
    else:
        verdict = "an even split, so a pilot of both methods is the reliable answer"
    count = (f"{vote.n_voters} {what}" if len({c.key for c in cells}) == vote.n_voters
             else f"{vote.n_voters} experiments on {what}")
    return f"{tables} ({', '.join(where)}): of the {count}, {'; '.join(parts)}: {verdict}."


def single_sentence(cell: Experiment, n: int) -> str:
    """One complete sentence describing a named task's own cell."""
    if cell.setting == "fgvc":
        size, near = f"its full training set, FID {cell.fid:.1f}", ""
    else:
        size = "one image per class" if cell.setting == "one-shot" else f"{cell.n_train:,} training samples"
        near = "" if cell.n_train == n else f", the measured size nearest to {n:,} in log n"
    if cell.winner == "tie":
        result = "the paper prints a tie"
    else:
        result = f"{cell.winner} wins by {fmt_acc(abs(cell.gap))} points"
    return (f"{cell.table} has {cell.name} at {size}{near}, {cell.backbone} backbone: FT {fmt_acc(cell.ft)}, "
            f"VPT {fmt_acc(cell.vpt)}, so {result}.")


def vote_finding(cells: Sequence[Experiment], n: int, *, what: str, rule: str, why: str) -> Finding:
    """Choice and confidence from a vote of experiments (confidence rules in the module docstring)."""
    vote = tally(cells)
    rows = [cell_row(c, why) for c in cells]
    single = len(cells) == 1
    sentence = single_sentence(cells[0], n) if single else vote_sentence(cells, vote, what)
    reasons = [Reason(rule=rule, source=", ".join(dict.fromkeys(c.table for c in cells)),
                      favours=vote.majority if vote.clear and vote.majority else "pilot", sentence=sentence)]
    if not vote.clear or vote.majority is None:
        return Finding("pilot", "low", lean=vote.majority, vote=vote, rows=rows, reasons=reasons)
    conf: Confidence = "high" if vote.unanimous else "medium"
    agreeing = [c for c in cells if c.winner == vote.majority]
    narrow = [c for c in agreeing if abs(c.gap) < NARROW_GAP]
    if narrow:
        conf = cap(conf, "low" if single else "medium")
        reasons.append(Reason(rule="confidence", source="our rule", sentence=(
            f"{_join([c.name for c in narrow])} {'wins' if len(narrow) == 1 else 'win'} by less than "
            f"{NARROW_GAP:g} point, within what seeds can move (the paper prints no seed spread here), "
            "so the confidence is lowered.")))
    # Beyond the largest table size the extrapolation rule (advisor.answer) caps the confidence instead.
    # Below 400 the one-shot rule caps it (the one-shot and 400-sample cells are the designated evidence).
    far = max((_distance(c.n_train, n) for c in cells
               if c.n_train is not None and c.setting == "sized" and not (c.n_train == DATA_SIZES[-1] < n)
               and not (n < ONE_SHOT_LIMIT and c.n_train == ONE_SHOT_LIMIT)), default=0.0)
    if far > math.log(FAR_FACTOR):
        conf = cap(conf, "low" if far > math.log(VERY_FAR_FACTOR) else "medium")
        reasons.append(Reason(rule="confidence", source="our rule", sentence=(
            f"The voting experiments were measured up to {math.exp(far):.1f} times away from your "
            f"{n:,} training samples, so the confidence is lowered.")))
    return Finding(vote.majority, conf, vote=vote, rows=rows, reasons=reasons)


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def same_disparity(disparity: str) -> list[str]:
    """VTAB-1k task keys of one disparity, in paper order."""
    return [k for k, t in VTAB_TASKS.items() if t.disparity == disparity]




# --- Questions about a task the paper never measured (a task type, a bare disparity) -------------------------

PRIOR_WEIGHT = 1.0
"""Our rule: the size prior counts as one more task in the estimate (its weight alpha). Chosen with
``python -m benchmarks.held_out`` among 0.5, 1, 2 and 4 (the Brier score moves by < 0.01 across them;
1 keeps a unanimous vote of even one task on the winning side of 1/2)."""
ANSWER_SHARE = 0.6
"""Our rule: an unseen-task estimate answers FT or VPT when the probability of the winner is at least
this; below it the answer is "run a pilot" with a lean. Checked by ``benchmarks.held_out``."""
MEDIUM_SHARE = 0.75
"""Our rule: ... and with confidence medium when it is at least this, at a size before the catch-up
(:data:`CATCH_UP_FROM`). Checked by ``benchmarks.held_out`` (medium right >= 80 % on held-out tasks)."""
CATCH_UP_FROM = 5000
"""Tables 5-6 (Sec. 4.4): between 800 and 5,000 training samples the winner changes for half of the
tasks measured at both; an unseen-task answer whose nearest table size is 5,000 or more is at most low."""


def task_vote_cells(keys: Sequence[str], backbone: BackboneName, n: int,
                    exclude: Sequence[str] = ()) -> list[Experiment]:
    """One cell per task (a vote counts tasks, not table rows), for a question about an unseen task.

    ImageNet-21k: the cell at the table size nearest ``n`` in log n; tasks not measured there
    (printed '-') do not vote. Below 400 samples each task votes with the nearer (in log n) of its
    one-shot cell (Tables 3-4: one image per class, so n = its number of classes) and its 400-sample
    cell. Other backbones: the 800-sample Appendix C cell.
    """
    out: list[Experiment] = []
    for key in keys:
        if key in exclude:
            continue
        cells = _own_cells(key, backbone)
        if backbone != "in21k":
            out.extend(cells[:1])
        elif n < ONE_SHOT_LIMIT:
            pair = [c for c in cells if c.setting == "one-shot" or c.n_train == ONE_SHOT_LIMIT]
            if pair:
                out.append(min(pair, key=lambda c: (_distance(c.n_train or 1, n), -(c.n_train or 0))))
        else:
            size = table_size(n)
            out.extend(c for c in cells if c.setting == "sized" and c.n_train == size)
    return out


@functools.cache
def _own_cells(key: str, backbone: BackboneName) -> tuple[Experiment, ...]:
    return tuple(task_cells(key, backbone))


@functools.lru_cache(maxsize=4096)
def table_size(n: int) -> int:
    """The Tables 5-6 size nearest ``n`` in log n (a tie goes to the smaller size)."""
    return min(DATA_SIZES, key=lambda s: (_distance(s, n), s))


def _vpt_share(cells: Sequence[Experiment]) -> float:
    return sum(1.0 if c.winner == "VPT" else 0.5 if c.winner == "tie" else 0.0 for c in cells)


@dataclass
class Estimate:
    """The probability that VPT wins on an unseen task, and the evidence it rests on."""

    p_vpt: float
    voters: list[Experiment]
    """The comparable tasks' cells (one per task) that voted."""
    prior: float
    """The size prior: VPT's share among every task of the backbone at this size (Laplace-smoothed)."""
    prior_cells: int
    prior_vpt: float

    @property
    def choice(self) -> Lean:
        return "VPT" if self.p_vpt > 0.5 else "FT" if self.p_vpt < 0.5 else None

    @property
    def share(self) -> float:
        """The probability of the more likely winner."""
        return max(self.p_vpt, 1.0 - self.p_vpt)


def estimate(keys: Sequence[str], backbone: BackboneName, n: int, *, exclude: Sequence[str] = ()) -> Estimate:
    """P(VPT wins) for an unseen task like ``keys`` at ``n`` samples (rules in the module docstring).

    ``p = (VPT wins among the voters + alpha * prior) / (voters + alpha)``: the comparable tasks' vote at
    the nearest table size, shrunk towards
    the size prior, VPT's share among every task of the backbone at that size (Tables 1-2, 5-6; Laplace
    smoothed). A tie counts half. ``exclude`` removes tasks from the evidence (the held-out benchmark).
    """
    voters = task_vote_cells(keys, backbone, n, exclude)
    pool = task_vote_cells(list(VTAB_TASKS), backbone, n, exclude)
    pool_vpt = _vpt_share(pool)
    prior = (pool_vpt + 1.0) / (len(pool) + 2.0)
    p = (_vpt_share(voters) + PRIOR_WEIGHT * prior) / (len(voters) + PRIOR_WEIGHT)
    return Estimate(p_vpt=p, voters=voters, prior=prior, prior_cells=len(pool),
                    prior_vpt=pool_vpt)


def estimate_level(est: Estimate, n: int, backbone: BackboneName) -> tuple[Choice, Confidence, str]:
    """Answer and confidence of an unseen-task estimate, with the rule that set them (one clause).

    No unseen-task answer is ever high: a unanimous vote can be wrong for the task left out (SVHN at
    800 samples goes against all 6 other Natural tasks, Tables 1-2).
    """
    if backbone == "in21k" and n < ONE_SHOT_LIMIT:
        return "pilot", "low", (f"below {ONE_SHOT_LIMIT} samples the answers of this kind are right too rarely on "
                                "tasks left out (benchmarks.held_out)")
    if est.choice is None or est.share < ANSWER_SHARE:
        return "pilot", "low", f"the probability of either winner is below {ANSWER_SHARE:.0%}"
    if backbone == "in21k" and table_size(n) >= CATCH_UP_FROM:
        return est.choice, "low", (f"at {CATCH_UP_FROM:,} samples or more the winner changes for many tasks "
                                   "(Tables 5-6), so the confidence is at most low")
    if est.share >= MEDIUM_SHARE:
        return est.choice, "medium", f"the probability of {est.choice} is at least {MEDIUM_SHARE:.0%}"
    if backbone != "in21k":
        return "pilot", "low", (f"on the Appendix C backbones an answer below {MEDIUM_SHARE:.0%} is right too rarely "
                                "on tasks left out (benchmarks.held_out)")
    return est.choice, "low", f"the probability of {est.choice} is below {MEDIUM_SHARE:.0%}"
