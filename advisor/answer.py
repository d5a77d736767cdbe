"""The answer to one question, from the paper's experiments (used by ``advisor.decide.recommend``).

:func:`paper_finding` picks the voting experiments (``advisor.evidence``) for the user's question:

* a named VTAB-1k task: its own cell at the nearest measured size, from the chosen backbone's table;
* a task type or a bare disparity (a task the paper never measured): the probability that VPT wins,
  from the vote of its tasks shrunk towards the size prior (``advisor.evidence.estimate``), and the
  answer and confidence that probability earns on tasks left out (``advisor.evidence.estimate_level``);
* low disparity with a verified FID (ImageNet-21k backbone): the FID adds evidence. The Table 19 datasets
  on the user's side of the threshold (Fig. 1: similar -> VPT, dissimilar -> FT; with ``--fid-threshold``
  Fig. 1's rule alone) check the vote: when they disagree the answer is "run a pilot" leaning to their
  side. With a calibration, only the comparable tasks on the user's side vote (when any is).

Confidence caps on top of the vote's own (``advisor.evidence``): at most low below 400 samples (the
one-shot Tables 3-4 and the smallest Tables 5-6 size are the evidence) and for a tie; at most medium
beyond 10,000 samples (the answer extrapolates), with n_train unknown (800 assumed), for a task type
resting on fewer than 3 tasks. A pilot planned for ``--min-detectable`` that finds no significant difference
breaks the tie of a "run a pilot" answer with its sign, at low confidence (ours).

:func:`combine_pilot` adds pilot evidence at its own size. Pure, no torch.
"""

from __future__ import annotations

from advisor.evidence import (
    Estimate,
    Finding,
    below_400,
    cap,
    cell_row,
    estimate,
    estimate_level,
    fgvc_side,
    nearest_cell,
    same_disparity,
    table_size,
    tally,
    vote_finding,
)
from advisor.rules import quadrant_reason, read_pilot, similarity_reason
from advisor.schemas import (
    AdvisorInputs,
    Choice,
    Confidence,
    Lean,
    PilotEvidence,
    PilotVerdict,
    Reason,
    Similarity,
    SimilarityThreshold,
)
from advisor.tasks import resolve_task
from engine.fid.calibration import Calibration, calibration_problem
from engine.paper import DATA_SIZES, VTAB_TASKS
from engine.paper.evidence import Experiment, task_cells

__all__ = ["combine_pilot", "paper_finding", "task_line", "usable_calibration"]

DEFAULT_N = 800
"""The paper's default training size (800/200 split, Tables 1-2), assumed when n_train is unknown."""


def usable_calibration(inputs: AdvisorInputs) -> Calibration | None:
    """The calibration, when it may decide (``engine.fid.calibration.calibration_problem``, the one check)."""
    cal = inputs.calibration
    if cal is None or inputs.fid_threshold is not None:
        return None
    verdict, _ = calibration_problem(cal, inputs.reference, inception_sha256=inputs.fid_weights_sha256,
                                     reference_sha256=inputs.reference_sha256)
    return cal if verdict == "ok" else None


def _task_fids(inputs: AdvisorInputs) -> dict[str, float]:
    cal = usable_calibration(inputs)
    return dict(cal.task_fids) if cal is not None else {}


def _keys(inputs: AdvisorInputs) -> list[str]:
    if inputs.task_kind == "type" and inputs.related_tasks:
        return list(inputs.related_tasks)
    return same_disparity(inputs.disparity)


def task_line(inputs: AdvisorInputs) -> str:
    """What the task was resolved to, e.g. ``counting: task type, high disparity, like Clevr/count``."""
    if inputs.task is None:
        return f"no task named: {inputs.disparity} disparity (from {inputs.disparity_source}), all its VTAB-1k tasks"
    resolved = resolve_task(inputs.task)
    if resolved.kind == "vtab":
        task = VTAB_TASKS[resolved.name]
        return f"{inputs.task}: VTAB-1k task {task.name} ({task.group}, {task.disparity} disparity)"
    like = ", ".join(VTAB_TASKS[k].name for k in resolved.related)
    return f"{inputs.task}: task type, {resolved.disparity} disparity, like {like}"


def _named(inputs: AdvisorInputs, n: int) -> Finding:
    key = resolve_task(inputs.task or "").name
    cells = task_cells(key, inputs.backbone)
    cell = nearest_cell(cells, n)
    if inputs.backbone == "in21k" and n < DATA_SIZES[0] and cell.n_train != n:
        pair = below_400(key, n)
        finding = vote_finding(pair, n, what=VTAB_TASKS[key].name, rule="task", why="the task itself")
        if finding.choice == "pilot" and cell.winner != "tie":
            finding.lean = cell.winner
            finding.reasons.append(Reason(rule="task", source=cell.table, favours="pilot", sentence=(
                f"The pilot leans {cell.winner}, the winner of the experiment nearer to {n:,} in log n.")))
        return finding
    finding = vote_finding([cell], n, what="", rule="task", why="the task itself")
    lower = [c for c in cells if c.n_train is not None and c.n_train < n]
    upper = [c for c in cells if c.n_train is not None and c.n_train > n]
    if lower and upper and cell.n_train != n:
        lo, hi = max(lower, key=lambda c: c.n_train or 0), min(upper, key=lambda c: c.n_train or 0)
        if lo.winner != hi.winner:
            finding.confidence = cap(finding.confidence, "low")
            finding.reasons.append(Reason(rule="confidence", source=f"{lo.table}, {hi.table}", sentence=(
                f"The winner changes between {lo.n_train:,} ({lo.winner}) and {hi.n_train:,} ({hi.winner}) samples "
                f"for {cell.name}, and {n:,} lies between them, so the confidence is low.")))
    if cell.winner == "tie":
        finding.choice, finding.lean, finding.confidence = "pilot", None, "low"
    return finding


def _unseen(inputs: AdvisorInputs, n: int, sim: Similarity, thr: SimilarityThreshold, uses_fid: bool) -> Finding:
    """A task the paper never measured (a task type, a bare disparity): :func:`advisor.evidence.estimate`.

    The comparable tasks vote at the nearest table size, shrunk towards the size prior; a verified FID
    on the ImageNet-21k backbone adds the Table 19 datasets on the user's side of the default threshold
    as voters (with a calibration: only the comparable tasks on the user's side vote, when any is).
    """
    keys = [k for k in _keys(inputs) if k not in inputs.held_out]
    what = (f"tasks like '{inputs.task_name}'" if inputs.task_kind == "type"
            else f"{inputs.disparity}-disparity VTAB-1k tasks")
    why = f"like '{inputs.task_name}'" if inputs.task_kind == "type" else f"{inputs.disparity} disparity"
    side: list[Experiment] = []
    fids = _task_fids(inputs) if uses_fid else {}
    if uses_fid and sim in ("similar", "dissimilar"):
        if fids:
            on_side = [k for k in keys if k in fids and (fids[k] <= thr.value) == (sim == "similar")]
            if on_side:
                keys, what, why = on_side, f"{what} on the {sim} side of FID {thr.value:.1f} (calibration)", \
                    f"{sim} side (calibration)"
        elif thr.source == "table19-default":
            side = [c for c in fgvc_side(sim, thr.value) if c.key not in inputs.held_out]
    est = estimate(keys, inputs.backbone, n, exclude=inputs.held_out)
    choice, conf, rule = estimate_level(est, n, inputs.backbone)
    lean = est.choice
    quadrant = tally(side).majority if side else None
    if uses_fid and not fids and thr.source == "user" and sim in ("similar", "dissimilar"):
        # Fig. 1's rule alone: no dataset is placed on a user threshold
        quadrant = "VPT" if sim == "similar" else "FT"
    if uses_fid and sim == "borderline":
        choice, conf, rule = "pilot", "low", "the FID is borderline"
    elif quadrant is not None and quadrant != est.choice:
        choice, conf, lean = "pilot", "low", quadrant
        by = ("the Table 19 datasets on your side of the threshold favour" if side
              else "Fig. 1's rule for your FID gives")
        rule = (f"{by} {quadrant}, against the vote: the evidence conflicts, so a pilot decides, leaning {quadrant} "
                "(Fig. 1's rule for your FID)")
    rows = [cell_row(c, why, fid=fids.get(c.key)) for c in est.voters]
    rows += [cell_row(c, f"{sim} side (Table 19)") for c in side]
    vote = tally([*est.voters, *side])
    reasons = [Reason(rule="task-vote", source=_sources([*est.voters, *side]) or "Tables 5-6",
                      favours=choice if choice != "pilot" else "pilot",
                      sentence=_estimate_sentence(est, n, what, side, sim, thr, choice, lean, rule))]
    return Finding(choice, conf, lean=lean if choice == "pilot" else None, vote=vote, rows=rows,
                   reasons=reasons, probability=est.p_vpt)


def _sources(cells: list[Experiment]) -> str:
    return ", ".join(dict.fromkeys(c.table for c in cells))


def _wins(cells: list[Experiment]) -> str:
    vpt = [c.name for c in cells if c.winner == "VPT"]
    ft = [c.name for c in cells if c.winner == "FT"]
    tie = [c.name for c in cells if c.winner == "tie"]
    parts = [f"VPT wins {len(vpt)}" + (f" ({', '.join(vpt)})" if vpt else ""),
             f"FT wins {len(ft)}" + (f" ({', '.join(ft)})" if ft else "")]
    if tie:
        parts.append(f"{len(tie)} tie ({', '.join(tie)})")
    return "; ".join(parts)


def _estimate_sentence(est: Estimate, n: int, what: str, side: list[Experiment], sim: Similarity,
                       thr: SimilarityThreshold, choice: Choice, lean: Lean, rule: str) -> str:
    size = (f"{table_size(n):,} training samples" if n >= DATA_SIZES[0] or est.voters and
            est.voters[0].backbone != "in21k" else "the nearer of one image per class and 400 samples")
    if est.voters and est.voters[0].backbone != "in21k":
        size = "800 training samples"
    count = f"the {len(est.voters)} {what}" if len(est.voters) > 1 else f"the one task {what.removeprefix('tasks ')}"
    head = (f"of {count} measured at {size}, {_wins(est.voters)}" if est.voters
            else f"no {what} are measured at {size}")
    on_side = (f" Of the Table 19 datasets on the {sim} side of FID {thr.value:.1f}, {_wins(side)}." if side else "")
    prior = (f"; across all {est.prior_cells} tasks at that size VPT wins {est.prior_vpt:g} (the size prior, "
             "Tables 1-2, 5-6)")
    answer = f"answer {choice}" if choice != "pilot" else f"run a pilot, leaning {lean or 'neither way'}"
    return (f"VPT wins with probability {est.p_vpt:.0%}: {head}{prior}.{on_side} So {answer} ({rule}).")


def paper_finding(inputs: AdvisorInputs, sim: Similarity, thr: SimilarityThreshold, *,
                  n_train: int | None) -> tuple[Finding, str, list[Reason]]:
    """The paper-only answer: the voting experiments, the quadrant in words and the context reasons."""
    n = DEFAULT_N if n_train is None else n_train
    quadrant, q_reason = quadrant_reason(inputs, sim)
    context = [similarity_reason(inputs, thr, sim), q_reason]
    uses_fid = (inputs.task_kind != "vtab" and inputs.disparity == "low" and inputs.backbone == "in21k"
                and sim in ("similar", "dissimilar", "borderline"))
    if inputs.task_kind == "vtab":
        finding = _named(inputs, n)
    else:
        finding = _unseen(inputs, n, sim, thr, uses_fid)
    if not uses_fid and inputs.disparity == "low" and sim in ("similar", "dissimilar", "borderline"):
        why = ("a named task answers from its own results" if inputs.task_kind == "vtab"
               else f"the quadrant analysis is for the ImageNet-21k ViT-B/16 only, not {inputs.backbone}")
        context.append(Reason(rule="similarity", source="Fig. 1", sentence=(
            f"The FID is shown but does not decide here: {why}.")))
    _apply_caps(finding, inputs, n, n_train is None)
    return finding, quadrant, context


def _apply_caps(f: Finding, inputs: AdvisorInputs, n: int, assumed: bool) -> None:
    # (cap, source, sentence, always): range caps are always stated, the others only when they lower the answer
    caps: list[tuple[Confidence, str, str, bool]] = []
    if assumed:
        caps.append(("medium", "Tables 1-2", f"n_train is unknown, so the paper's default {DEFAULT_N} is assumed.",
                     True))
    if n < DATA_SIZES[0] and inputs.backbone == "in21k":
        caps.append(("low", "Tables 3-4, 5-6", (
            f"Below {DATA_SIZES[0]} training samples the evidence is the one-shot Tables 3-4 (one image per class, "
            f"chosen by iterative testing, App. G.4) and the smallest size of Tables 5-6, so the confidence is "
            "at most low."), True))
    if n > DATA_SIZES[-1]:
        caps.append(("medium", "Tables 5-6", (
            f"{n:,} training samples is beyond the largest size the paper measures ({DATA_SIZES[-1]:,}): the "
            "answer extrapolates, so the confidence is at most medium."), True))
    n_tasks = len({r.key for r in f.rows})
    if inputs.task_kind == "type" and f.rows and f.rows[0].setting != "fgvc" and n_tasks < 3:
        caps.append(("medium", "our rule", (
            f"The task type rests on {n_tasks} paper task{'s' if n_tasks > 1 else ''} only, so the confidence "
            "is at most medium."), False))
    for limit, source, sentence, always in caps:
        if always or f.confidence != cap(f.confidence, limit):
            f.reasons.append(Reason(rule="confidence", source=source, sentence=sentence))
        f.confidence = cap(f.confidence, limit)
    if f.choice == "pilot":
        f.confidence = "low"


def combine_pilot(inputs: AdvisorInputs, sim: Similarity, thr: SimilarityThreshold, prior: Finding,
                  pilot: PilotEvidence) -> tuple[PilotVerdict, list[Reason], tuple[Choice, Lean, Confidence]]:
    """Pilot evidence on m images speaks for n ~ m; beyond 2m it is combined with the paper's trend at n."""
    verdict, reason = read_pilot(pilot)
    reasons = [reason]
    keep: tuple[Choice, Lean, Confidence] = (prior.choice, prior.lean, prior.confidence)
    if not verdict.decisive or verdict.winner is None:
        # a tie-break by the sign of a non-decisive difference, never from a pilot not decisive by design
        if (prior.choice == "pilot" and verdict.by_design and verdict.difference is not None
                and verdict.difference != 0):
            sign: Choice = "VPT" if verdict.difference > 0 else "FT"
            reasons.append(Reason(rule="pilot", source="our rule", favours=sign, sentence=(
                f"The paper's evidence asks for a pilot and the pilot, planned to detect --min-detectable, found "
                f"no significant difference: the methods are that close on your data, so the sign of its "
                f"difference breaks the tie ({sign}, confidence low).")))
            return verdict, reasons, (sign, None, "low")
        return verdict, reasons, keep
    won, conf = verdict.winner, _pilot_confidence(verdict)
    m, n = pilot.n_train, inputs.n_train
    if n is None or n <= 2 * m:
        size = "your training-set size is unknown" if n is None else f"your {n:,} is at most twice its {m:,}"
        reasons.append(Reason(rule="pilot", source="pilot (your data)", favours=won, sentence=(
            f"The pilot speaks for your data at your size ({size}), so its {won} outranks the paper's "
            "experiments.")))
        return verdict, reasons, (won, None, conf)
    at_m, _, _ = paper_finding(inputs, sim, thr, n_train=m)
    trend = (f"the paper's comparable experiments favour {_said(at_m)} at {m:,} samples and "
             f"{_said(prior)} at {n:,}")
    if prior.choice in (won, "pilot"):
        reasons.append(Reason(rule="pilot", source="pilot (your data); " + _tables(prior), favours=won, sentence=(
            f"Your pilot used {m:,} training images, less than half of your {n:,}, so it speaks for {m:,}: "
            f"{trend}, which does not contradict the pilot's {won}, so the answer is {won} with at most medium "
            "confidence.")))
        return verdict, reasons, (won, None, cap(conf, "medium"))
    reasons.append(Reason(rule="pilot", source="pilot (your data); " + _tables(prior), favours="pilot", sentence=(
        f"Your pilot used {m:,} training images, less than half of your {n:,}, so it speaks for {m:,}: "
        f"{trend}. The pilot's {won} and the paper's {prior.choice} at your size disagree, so repeat the pilot "
        f"on a training set closer to {n:,} images.")))
    return verdict, reasons, ("pilot", prior.choice if prior.choice != "pilot" else prior.lean, "low")


def _pilot_confidence(verdict: PilotVerdict) -> Confidence:
    """Confidence of a decisive pilot at its own size: it follows the interval (``advisor.rules.read_pilot``:
    high when the 99 % interval also excludes zero, else medium)."""
    return verdict.confidence or "medium"


def _said(f: Finding) -> str:
    if f.choice == "pilot":
        return f"neither clearly (leaning {f.lean})" if f.lean else "neither"
    return f.choice


def _tables(f: Finding) -> str:
    return ", ".join(dict.fromkeys(r.source for r in f.rows)) or "Tables 5-6"

