"""The pilot: budget parsing and planning, per-trial storage, resume after Ctrl-C, summaries."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.train.pilot as pilot_mod
from engine.config.train import PAPER_SEEDS, BackboneSpec, PilotConfig, parse_budget
from engine.data.index import DatasetIndex, Sample, index_dataset
from engine.errors import BudgetError, ConfigError
from engine.train.pilot import MethodTiming, TrialResult, plan_pilot, run_pilot
from engine.train.pilot_plan import split_samples
from engine.train.power import compare_images_needed
from tests.conftest import write_png
from tests.gen_vit import TINY_VIT, TINY_VIT_NAME, make_vit


@pytest.fixture
def colour_dataset(tmp_path: Path) -> Path:
    """Three classes of 32x32 PNGs (20 each), told apart by the bright channel."""
    gen = np.random.default_rng(0)
    root = tmp_path / "colours"
    for c, name in enumerate(["red", "green", "blue"]):
        for i in range(20):
            img = gen.integers(0, 80, (32, 32, 3)).astype(np.uint8)
            img[..., c] += 150
            write_png(root / name / f"{i}.png", img)
    return root


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(**kw: object) -> PilotConfig:
    backbone = BackboneSpec(model=TINY_VIT_NAME, random_init=True, model_kwargs=TINY_VIT)
    base: dict[str, object] = dict(methods=("full", "vpt-deep"), backbone=backbone, num_prompts=2, seeds=2,
                                   batch_size=16, budget_s=600.0,
                                   epochs=2, deterministic=True)
    return PilotConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("90s", 90), ("1h30m", 5400), ("2", 120),
                                               ("1.5h", 5400), (10, 600)])
def test_parse_budget(text: str | int, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "15x", "-5m", "0m"])
def test_parse_budget_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_budget(text)


def _fixed_timing(monkeypatch: pytest.MonkeyPatch, s_per_image: float) -> list[str]:
    calls: list[str] = []

    def fake(backbone: object, method: str, **_: object) -> MethodTiming:
        calls.append(method)
        return MethodTiming(method=method, train_s_per_image=s_per_image, eval_s_per_image=s_per_image / 3,
                            setup_s=0.0, batch=4)

    monkeypatch.setattr(pilot_mod, "measure_method_timing", fake)
    return calls


def test_plan_fits_the_budget_and_shrinks_with_it(colour_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fixed_timing(monkeypatch, 0.01)
    index = index_dataset(colour_dataset)
    backbone = make_vit()
    big = plan_pilot(index, _config(epochs=None, budget_s=3600), device=torch.device("cpu"), backbone=backbone)
    small = plan_pilot(index, _config(epochs=None, budget_s=20), device=torch.device("cpu"), backbone=backbone)
    assert calls == ["full", "vpt-deep", "full", "vpt-deep"]
    assert big.estimated_s <= 3600 and small.estimated_s <= 20
    assert (big.n_compare, big.epochs, len(big.lr_grid["full"])) > (small.n_compare, small.epochs, 0)
    # 60 labeled images: half held out for the comparison, the rest split 4:1 into train / selection
    assert big.n_compare == 30 and big.n_samples == 30 and big.n_train == 24 and big.n_val == 6
    assert big.seeds == PAPER_SEEDS[:2]
    assert len(big.trials) == sum(len(g) for g in big.lr_grid.values()) * 2
    # 30 comparison images cannot detect 3 points: the plan says so and names what would suffice
    assert not big.decisive_by_design and big.min_detectable > 20
    assert big.sufficient_labeled == big.compare_needed + big.n_samples and big.compare_needed > 1000
    # the estimate is the line model's own arithmetic, checked independently (per-step costs are 0 here)
    per_epoch = big.n_train * 0.01 + big.n_val * 0.01 / 3
    trial = big.epochs * per_epoch + big.n_compare * 0.01 / 3
    expected = 60 * big.decode_s_per_image + sum(len(g) for g in big.lr_grid.values()) * 2 * trial
    assert big.estimated_s == pytest.approx(expected)


def _index(n_per_class: int, classes: int = 4) -> DatasetIndex:
    samples = [Sample(Path(f"/virtual/{c}/{i}.png"), c) for c in range(classes) for i in range(n_per_class)]
    return DatasetIndex(root=Path("/virtual"), layout="imagefolder", samples=samples,
                        classes=[str(c) for c in range(classes)], skipped=[])


def test_plan_holds_out_enough_comparison_images_when_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_timing(monkeypatch, 0.001)
    index = _index(1200)  # half of 4,800 may be held out: enough for the 2,140 that 3 points need with 3 seeds
    plan = plan_pilot(index, _config(epochs=None, budget_s=3600, seeds=3), device=torch.device("cpu"),
                      backbone=make_vit())
    needed = compare_images_needed(3.0, 3)
    assert plan.n_compare == plan.compare_needed == needed
    assert plan.decisive_by_design and plan.min_detectable <= 3.0
    assert plan.sufficient_labeled is None and plan.sufficient_budget_s is None
    train, val, cmp = split_samples(index.samples, _config(seeds=3), n_compare=plan.n_compare, n=plan.n_samples)
    assert not ({*train} & {*cmp} or {*val} & {*cmp} or {*train} & {*val})  # three disjoint splits
    assert len(cmp) == plan.n_compare and len(train) + len(val) == plan.n_samples


def test_plan_with_enough_images_but_a_small_budget_names_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_timing(monkeypatch, 0.05)
    plan = plan_pilot(_index(1000), _config(epochs=None, budget_s=40, seeds=1), device=torch.device("cpu"),
                      backbone=make_vit())
    assert not plan.decisive_by_design and plan.sufficient_labeled is None
    assert plan.sufficient_budget_s is not None and plan.sufficient_budget_s > 40


def test_budget_too_small(colour_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_timing(monkeypatch, 10.0)
    with pytest.raises(BudgetError, match="too small.*--budget"):
        plan_pilot(index_dataset(colour_dataset), _config(budget_s=5), device=torch.device("cpu"),
                   backbone=make_vit())


def test_stored_plan_is_reused(colour_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fixed_timing(monkeypatch, 0.01)
    index = index_dataset(colour_dataset)
    first = plan_pilot(index, _config(), device=torch.device("cpu"), store_dir=tmp_path, backbone=make_vit())
    again = plan_pilot(index, _config(), device=torch.device("cpu"), store_dir=tmp_path, backbone=make_vit())
    assert again == first and len(calls) == 2  # no second warm-up
    plan_pilot(index, _config(seeds=1), device=torch.device("cpu"), store_dir=tmp_path, backbone=make_vit())
    assert len(calls) == 4  # another request, another plan


def test_unlabeled_data_is_refused(tiny_image_dir: Path) -> None:
    with pytest.raises(ConfigError, match="labeled"):
        plan_pilot(index_dataset(tiny_image_dir), _config(), device=torch.device("cpu"), backbone=make_vit())


def test_resume_after_interrupt(colour_dataset: Path, tmp_path: Path) -> None:
    index = index_dataset(colour_dataset)
    config = _config(lr_grid={"full": (1e-3,), "vpt-deep": (5.0,)})
    store = tmp_path / "store"
    plan = plan_pilot(index, config, device=torch.device("cpu"), store_dir=store, backbone=make_vit())
    assert plan.n_trials == 4

    def interrupt(result: TrialResult, resumed: bool) -> None:
        if len(list((store / "trials").glob("*.json"))) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pilot(index, config, store_dir=store, device=torch.device("cpu"), backbone=make_vit(), on_trial=interrupt)
    kept = {p: p.stat().st_mtime_ns for p in (store / "trials").glob("*.json")}
    assert len(kept) == 2

    seen: list[tuple[str, int, bool]] = []
    result = run_pilot(index, config, store_dir=store, device=torch.device("cpu"), backbone=make_vit(),
                       on_trial=lambda r, resumed: seen.append((r.spec.method, r.spec.seed, resumed)))
    assert result.trials_resumed == 2 and result.trials_run == 2
    assert [s[2] for s in seen] == [True, True, False, False]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # finished trials were not recomputed
    assert len(list((store / "trials").glob("*.json"))) == 4

    # a resumed trial equals a fresh run of the same trial (seeded, deterministic on CPU)
    fresh = run_pilot(index, config, store_dir=tmp_path / "fresh", device=torch.device("cpu"), backbone=make_vit())
    by_key = {t.key: t.fit.train_losses for t in fresh.trials}
    assert all(by_key[t.key] == t.fit.train_losses for t in result.trials)


def test_summary_is_mean_and_std_over_seeds_at_the_best_lr(colour_dataset: Path, tmp_path: Path) -> None:
    index = index_dataset(colour_dataset)
    config = _config(methods=("linear", "vpt-shallow"), lr_grid={"linear": (20.0, 0.01), "vpt-shallow": (20.0,)},
                     epochs=3)
    progress: list[tuple[int, int]] = []
    result = run_pilot(index, config, store_dir=tmp_path, device=torch.device("cpu"), backbone=make_vit(),
                       on_progress=lambda done, total: progress.append((done, total)))
    assert progress[0] == (0, 6 * 3) and progress[-1] == (6 * 3, 6 * 3)  # 6 trials x 3 epochs
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert [m.method for m in result.methods] == ["linear", "vpt-shallow"]
    linear = result.methods[0]
    per_lr = {lr: [t.fit.best_val_acc for t in result.trials if t.spec.method == "linear" and t.spec.lr == lr]
              for lr in (20.0, 0.01)}
    best = max(per_lr, key=lambda lr: (statistics.fmean(per_lr[lr]), -lr))
    assert linear.best_lr == best
    assert linear.mean_acc == pytest.approx(statistics.fmean(per_lr[best]))
    assert linear.std_acc == pytest.approx(statistics.stdev(per_lr[best]))
    assert linear.n_seeds == 2 and linear.finished_trials == linear.planned_trials == 4
    assert linear.trainable_params == 32 * 3 + 3
    vpt = result.methods[1]
    assert vpt.trainable_params == 2 * 32 + 32 * 3 + 3  # one shallow set of 2 prompts + head
    assert 0 < vpt.trainable_pct < 5
    assert vpt.images_per_s > 0 and vpt.peak_memory_bytes > 0 and vpt.wall_s > 0


def test_probe_fits_a_line_and_is_cached(colour_dataset: Path, tmp_path: Path) -> None:
    from engine.train.pilot_timing import measure_method_timing

    timing = measure_method_timing(make_vit(), "full", num_classes=3, num_prompts=2, batch_size=16, img_size=32,
                                   precision="fp32", device=torch.device("cpu"), budget_s=5.0)
    assert timing.train_s_per_image > 0 and timing.eval_s_per_image > 0 and timing.batch == 16  # affordable
    assert timing.train_s_per_step >= 0 and timing.probe_s < 5.0 + 2.0  # one step may start just before the cap
    assert timing.probe_batches == (2, 16) and timing.timed_runs >= 1  # the plan names this probe
    assert timing.probe_note.startswith("probe at batch 2+16 (") and "warm step" in timing.probe_note
    assert timing.model_copy(update={"source": "trial"}).probe_note == "timed by earlier pilot trials"
    cache = tmp_path / "timing.json"
    index = index_dataset(colour_dataset)
    first = plan_pilot(index, _config(), device=torch.device("cpu"), backbone=make_vit(), timing_cache=cache)
    assert {t.source for t in first.timings} == {"probe"} and first.probe_s > 0
    # another request (other seeds) on the same device/model/methods/size reads the cache: no probe
    again = plan_pilot(index, _config(seeds=1), device=torch.device("cpu"), backbone=make_vit(), timing_cache=cache)
    assert {t.source for t in again.timings} == {"cache"} and again.probe_s == 0.0
    assert [t.train_s_per_image for t in again.timings] == [t.train_s_per_image for t in first.timings]
    other = plan_pilot(index, _config(img_size=24), device=torch.device("cpu"), backbone=make_vit(img_size=24),
                       timing_cache=cache)
    assert {t.source for t in other.timings} == {"probe"}  # another image size is another entry
    # real trials replace the probe's training cost in the cache
    config = _config(lr_grid={"full": (1e-3,), "vpt-deep": (1.0,)}, seeds=1)
    run_pilot(index, config, store_dir=tmp_path / "store", device=torch.device("cpu"), backbone=make_vit(),
              timing_cache=cache)
    later = plan_pilot(index, _config(seeds=1, epochs=3), device=torch.device("cpu"), backbone=make_vit(),
                       timing_cache=cache)
    assert {t.source for t in later.timings} == {"trial"}
