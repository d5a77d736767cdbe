"""Per-method pilot summaries and the paired comparisons of finished trials.

Each method is reported at the lr with the best mean *selection* accuracy over seeds (ties to the
smaller lr, as the paper's ``tune_vtab.py``). Which method counts for which side is the registry's
(``MethodSpec.side``), so every registered method is compared, on the held-out comparison images only
(``engine.train.power.paired_bootstrap``):

* the verdict (:func:`compare_methods`): the best FT-side method against the best VPT-side method, each
  picked on the selection split (the paper's question: FT against the better VPT variant);
* against the baseline (:func:`compare_with_baseline`): every other method with scores, whatever its family
  (VPT variants, Mixed, LoRA...), minus the best FT-side method. A method on neither side (LoRA) never enters
  the verdict: it is reported beside it.
"""

from __future__ import annotations

import statistics

from pydantic import Field

from engine.config import FrozenModel
from engine.train.loop import FitResult
from engine.train.methods import Method, get_method, side_of
from engine.train.pilot_plan import PilotPlan, TrialSpec
from engine.train.power import PairedComparison, paired_bootstrap
from engine.vocab import Side

__all__ = ["TrialResult", "MethodSummary", "summarize_trials", "compare_methods", "compare_with_baseline"]


class TrialResult(FrozenModel):
    """A finished trial as stored on disk."""

    key: str = Field(description="Fingerprint of everything that determines the trial.")
    spec: TrialSpec
    fit: FitResult
    compare_correct: list[bool] = Field(
        default_factory=list, description="Per comparison image (plan order): did the final model get it right?")

    @property
    def compare_acc(self) -> float:
        """Accuracy (%) of the final model on the comparison images."""
        return 100.0 * sum(self.compare_correct) / len(self.compare_correct) if self.compare_correct else 0.0


class MethodSummary(FrozenModel):
    """One method's pilot result."""

    method: Method
    best_lr: float | None = Field(description="Grid lr with the best mean selection accuracy (None: no trial).")
    mean_acc: float = Field(description="Mean best-epoch selection accuracy (%) over seeds at best_lr.")
    std_acc: float = Field(description="Sample std (%) over seeds at best_lr (0 with one seed).")
    compare_acc: float = Field(0.0, description="Mean final-model accuracy (%) on the comparison images at best_lr.")
    compare_std: float = Field(0.0, description="Sample std (%) over seeds of compare_acc.")
    n_seeds: int
    per_lr: dict[str, tuple[float, float, int]] = Field(description="lr -> (mean, std, seeds) on the selection split.")
    trainable_params: int
    total_params: int
    trainable_pct: float
    images_per_s: float = Field(description="Mean training throughput over the method's trials.")
    peak_memory_bytes: int
    peak_memory_kind: str
    wall_s: float = Field(description="Summed wall time of the method's trials.")
    diverged_trials: int
    finished_trials: int
    planned_trials: int


def _at_best_lr(trials: list[TrialResult], method: str) -> tuple[str | None, dict[str, tuple[float, float, int]]]:
    mine = [t for t in trials if t.spec.method == method and not t.fit.diverged]  # a diverged 0% says nothing
    per_lr: dict[str, tuple[float, float, int]] = {}
    for lr in sorted({t.spec.lr for t in mine}):
        accs = [t.fit.best_val_acc for t in mine if t.spec.lr == lr]
        per_lr[repr(lr)] = (statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0, len(accs))
    best_lr = max(sorted(per_lr, key=float), key=lambda k: per_lr[k][0]) if per_lr else None
    return best_lr, per_lr


def summarize_trials(plan: PilotPlan, trials: list[TrialResult]) -> list[MethodSummary]:
    """Per-method summary at the lr with the best mean selection accuracy (ties to the smaller lr)."""
    out = []
    for name in plan.lr_grid:
        method = get_method(name).name
        mine = [t for t in trials if t.spec.method == method]
        best_lr, per_lr = _at_best_lr(trials, method)
        mean, std, k = per_lr[best_lr] if best_lr is not None else (0.0, 0.0, 0)
        cmp = [t.compare_acc for t in mine
               if best_lr is not None and repr(t.spec.lr) == best_lr and t.compare_correct and not t.fit.diverged]
        fits = [t.fit for t in mine]
        trainable = fits[0].trainable_params if fits else 0
        total = fits[0].total_params if fits else 0
        out.append(MethodSummary(
            method=method, best_lr=float(best_lr) if best_lr is not None else None, mean_acc=mean, std_acc=std,
            compare_acc=statistics.fmean(cmp) if cmp else 0.0,
            compare_std=statistics.stdev(cmp) if len(cmp) > 1 else 0.0,
            n_seeds=k, per_lr=per_lr, trainable_params=trainable, total_params=total,
            trainable_pct=100.0 * trainable / total if total else 0.0,
            images_per_s=statistics.fmean([f.images_per_s for f in fits]) if fits else 0.0,
            peak_memory_bytes=max((f.peak_memory_bytes for f in fits), default=0),
            peak_memory_kind=fits[0].peak_memory_kind if fits else "",
            wall_s=sum(f.wall_s for f in fits), diverged_trials=sum(f.diverged for f in fits),
            finished_trials=len(fits), planned_trials=sum(1 for t in plan.trials if t.method == method),
        ))
    return out


def _best_on(side: Side, by_name: dict[str, MethodSummary]) -> MethodSummary | None:
    """The ``side`` method with the best selection accuracy (never picked on the comparison set)."""
    mine = [m for name, m in by_name.items() if side_of(name) == side]
    # an exact tie goes to the method the pilot runs by default (VPT-deep before VPT-shallow, as the paper compares)
    return max(mine, key=lambda m: (m.mean_acc, get_method(m.method).pilot_default)) if mine else None


def _paired(base: MethodSummary, other: MethodSummary, trials: list[TrialResult]) -> PairedComparison | None:
    """``other`` minus ``base`` on the comparison images, trials at each method's selected lr only."""
    def rows(m: MethodSummary) -> list[list[bool]]:
        return [t.compare_correct for t in trials
                if t.spec.method == m.method and t.spec.lr == m.best_lr and t.compare_correct]

    base_rows, other_rows = rows(base), rows(other)
    if not base_rows or not other_rows or len({len(r) for r in base_rows + other_rows}) != 1:
        return None
    return paired_bootstrap(base_rows, other_rows, ft_method=base.method, vpt_method=other.method)


def _scored(methods: list[MethodSummary]) -> dict[str, MethodSummary]:
    return {m.method: m for m in methods if m.best_lr is not None}


def compare_methods(methods: list[MethodSummary], trials: list[TrialResult]) -> PairedComparison | None:
    """The verdict's comparison: the best FT-side method vs the best VPT-side one, paired on the comparison images.

    Sides come from the registry; ``None`` without a method on each side or without comparison scores.
    """
    by_name = _scored(methods)
    ft, vpt = _best_on("FT", by_name), _best_on("VPT", by_name)
    return _paired(ft, vpt, trials) if ft is not None and vpt is not None else None


def compare_with_baseline(methods: list[MethodSummary], trials: list[TrialResult]) -> list[PairedComparison]:
    """Every other scored method minus the baseline (the best FT-side method), in the pilot's method order.

    Empty without an FT-side method; a method without comparison scores is left out.
    """
    by_name = _scored(methods)
    base = _best_on("FT", by_name)
    if base is None:
        return []
    pairs = (_paired(base, m, trials) for name, m in by_name.items() if name != base.method)
    return [p for p in pairs if p is not None]
