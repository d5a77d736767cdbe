"""The pilot compares by the registry's sides: any VPT-side method (even one registered now) can win the VPT
slot of the verdict, and every other method, of any family, is compared with full finetuning beside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.train.loop import FitResult
from engine.train.methods import PAPER_SGD, MethodSpec, register_method, unregister_method
from engine.train.pilot_plan import TrialSpec
from engine.train.pilot_summary import MethodSummary, TrialResult, compare_methods, compare_with_baseline

N = 40


def _trial(method: str, seed: int, correct: list[bool]) -> TrialResult:
    fit = FitResult(method=method, best_val_acc=50.0, best_epoch=1, final_val_acc=50.0, train_losses=[1.0],
                    val_accs=[50.0], diverged=False, effective_lr=1.0, images_per_s=1.0, peak_memory_bytes=1,
                    peak_memory_kind="cpu-peak-rss", wall_s=1.0, trainable_params=1, total_params=2)
    return TrialResult(key=f"{method}-{seed}", spec=TrialSpec(method=method, lr=1.0, seed=seed), fit=fit,
                       compare_correct=correct)


def _summary(method: str, selection_acc: float) -> MethodSummary:
    return MethodSummary(method=method, best_lr=1.0, mean_acc=selection_acc, std_acc=0.0, n_seeds=2, per_lr={},
                         trainable_params=1, total_params=2, trainable_pct=50.0, images_per_s=1.0,
                         peak_memory_bytes=1, peak_memory_kind="cpu-peak-rss", wall_s=1.0, diverged_trials=0,
                         finished_trials=2, planned_trials=2)


def _run(methods: dict[str, tuple[float, int]]) -> tuple[list[MethodSummary], list[TrialResult]]:
    """Per method (selection accuracy, images right of N on the comparison set), two seeds each."""
    summaries = [_summary(m, sel) for m, (sel, _) in methods.items()]
    trials = [_trial(m, s, [i < right for i in range(N)]) for m, (_, right) in methods.items() for s in (42, 44)]
    return summaries, trials


@pytest.fixture
def new_vpt_method() -> Iterator[str]:
    spec = register_method(MethodSpec(**PAPER_SGD, name="prompt-only", summary="prompts, frozen head",
                                      family="prompt", side="VPT", trains=frozenset({"prompts"}), prompts="deep"))
    yield spec.name
    unregister_method(spec.name)


def test_a_newly_registered_vpt_method_is_compared(new_vpt_method: str) -> None:
    """Before, the VPT slot was a fixed pair of names: a new VPT-side method was trained but never compared."""
    summaries, trials = _run({"full": (60.0, 20), "vpt-deep": (55.0, 22), new_vpt_method: (70.0, 30)})
    verdict = compare_methods(summaries, trials)
    assert verdict is not None and (verdict.ft_method, verdict.vpt_method) == ("full", new_vpt_method)
    assert verdict.difference == pytest.approx(100 * (30 - 20) / N)  # picked on selection, measured on comparison


def test_every_other_family_is_compared_with_ft_beside_the_verdict() -> None:
    summaries, trials = _run({"full": (60.0, 20), "vpt-shallow": (50.0, 16), "lora": (65.0, 24), "linear": (40, 10)})
    verdict = compare_methods(summaries, trials)
    assert verdict is not None and verdict.vpt_method == "vpt-shallow"  # LoRA is on neither side: not in it
    others = {p.vpt_method: p.difference for p in compare_with_baseline(summaries, trials)}
    assert others == pytest.approx({"vpt-shallow": -10.0, "lora": 10.0, "linear": -25.0})
    assert all(p.ft_method == "full" for p in compare_with_baseline(summaries, trials))


def test_without_an_ft_side_method_nothing_is_compared() -> None:
    summaries, trials = _run({"vpt-deep": (55.0, 22), "lora": (65.0, 24)})
    assert compare_methods(summaries, trials) is None and compare_with_baseline(summaries, trials) == []


def test_an_exact_selection_tie_goes_to_the_default_vpt_method() -> None:
    summaries, trials = _run({"full": (60.0, 20), "vpt-shallow": (55.0, 16), "vpt-deep": (55.0, 22)})
    verdict = compare_methods(summaries, trials)
    assert verdict is not None and verdict.vpt_method == "vpt-deep"
