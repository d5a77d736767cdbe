"""Per-method pilot summaries and the paired FT-vs-VPT comparison of finished trials.

Each method is reported at the lr with the best mean *selection* accuracy over seeds (ties to the
smaller lr, as the paper's ``tune_vtab.py``); FT is compared with the VPT variant that is best on the
selection split, on the held-out comparison images only (``engine.train.power.paired_bootstrap``).
"""

from __future__ import annotations

import statistics

from pydantic import Field

from engine.config import FrozenModel
from engine.train.loop import FitResult
from engine.train.methods import Method, parse_method
from engine.train.pilot_plan import PilotPlan, TrialSpec
from engine.train.power import PairedComparison, paired_bootstrap

__all__ = ["TrialResult", "MethodSummary", "summarize_trials", "compare_methods", "FT_METHOD", "VPT_METHODS"]

FT_METHOD: Method = "full"
VPT_METHODS: tuple[Method, ...] = ("vpt-deep", "vpt-shallow")
"""The paper's comparison: full finetuning against the better VPT variant (picked on the selection split)."""


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
    mine = [t for t in trials if t.spec.method == method]
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
        method = parse_method(name)
        mine = [t for t in trials if t.spec.method == method]
        best_lr, per_lr = _at_best_lr(trials, method)
        mean, std, k = per_lr[best_lr] if best_lr is not None else (0.0, 0.0, 0)
        cmp = [t.compare_acc for t in mine if best_lr is not None and repr(t.spec.lr) == best_lr and t.compare_correct]
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


def compare_methods(methods: list[MethodSummary], trials: list[TrialResult]) -> PairedComparison | None:
    """FT vs the VPT variant with the best selection accuracy, paired on the comparison images.

    Only trials at each method's selected lr count; ``None`` without FT, a VPT variant or comparison scores.
    """
    by_name = {m.method: m for m in methods if m.best_lr is not None}
    vpts = [by_name[v] for v in VPT_METHODS if v in by_name]
    if FT_METHOD not in by_name or not vpts:
        return None
    vpt = max(vpts, key=lambda m: m.mean_acc)  # picked on the selection split, never on the comparison set

    def rows(m: MethodSummary) -> list[list[bool]]:
        return [t.compare_correct for t in trials
                if t.spec.method == m.method and t.spec.lr == m.best_lr and t.compare_correct]

    ft_rows, vpt_rows = rows(by_name[FT_METHOD]), rows(vpt)
    if not ft_rows or not vpt_rows or len({len(r) for r in ft_rows + vpt_rows}) != 1:
        return None
    return paired_bootstrap(ft_rows, vpt_rows, ft_method=FT_METHOD, vpt_method=vpt.method)
