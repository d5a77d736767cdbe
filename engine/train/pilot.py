"""The pilot: short, budgeted FT-vs-VPT runs on a subsample of the user's own data.

Protocol (after the paper's data-size experiments): a stratified subsample split 4:1 into
train/val, a small learning-rate grid per method and ``k`` seeds (``PAPER_SEEDS[:k]``); each
method is reported at its best grid lr (mean validation accuracy over seeds; ties go to the
smaller lr, as in the paper's ``tune_vtab.py``), as mean +- sample std over seeds. The lr is chosen
on the same validation split it is reported on, so pilot accuracies are optimistic; they serve to
*compare* methods, not to predict test accuracy.

``plan_pilot`` measures a short warm-up (one untimed and one or two timed steps per method) and
picks subset size, epochs and grid size to fit the budget; the plan is stored, so a rerun reuses
it instead of re-measuring (timing noise would otherwise change the plan and defeat resuming).
``run_pilot`` saves each finished trial as JSON under ``store_dir`` at once; a rerun skips trials
already on disk, and Ctrl-C (``KeyboardInterrupt``) loses only the trial in progress.
"""

from __future__ import annotations

import copy
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from engine.io import atomic_write_text, json_digest
from engine.config import FrozenModel
from engine.config.train import PAPER_SEEDS, QUICK_EPOCHS, PilotConfig, TrainConfig, method_defaults
from engine.data.index import DatasetIndex, Sample, stratified_subsample, train_val_split
from engine.errors import BudgetError, ConfigError, StoreError
from engine.train.methods import Method, stages_of
from engine.train.models import create_backbone_from
from engine.train.pilot_timing import MethodTiming, measure_method_timing
from engine.progress import ProgressCallback, report
from engine.seed import seed_everything
from engine.data.tensors import load_image_tensors
from engine.train.loop import FitResult, fit
from engine.train.transfer import build_model
from engine.train.vpt import as_vit

__all__ = ["MethodTiming", "TrialSpec", "TrialResult", "PilotPlan", "MethodSummary", "PilotResult", "plan_pilot", "run_pilot",
           "summarize_trials", "check_pilot_data", "load_pilot_backbone"]

logger = logging.getLogger(__name__)

_SIZES = (10000, 5000, 2000, 1000, 800, 500, 400, 250, 200, 100, 50, 25)
_EPOCHS = (50, 30, 20, 10, 5, 3, 2, 1)
PILOT_KEY_CHARS = 16
"""Hex characters of a pilot trial/plan key (64 bits: collisions are negligible for a user's trials)."""
_DECODE_S_PER_IMAGE = 0.01
"""Budget allowance for decoding + resizing one image once (our estimate: PIL decodes and resizes a
~500 px JPEG in a few ms per core; 10 ms leaves headroom on a loaded 2-core machine)."""


class TrialSpec(FrozenModel):
    """One pilot training run."""

    method: Method
    lr: float = Field(description="Base lr (before batch scaling).")
    seed: int


class TrialResult(FrozenModel):
    """A finished trial as stored on disk."""

    key: str = Field(description="Fingerprint of everything that determines the trial.")
    spec: TrialSpec
    fit: FitResult


class PilotPlan(FrozenModel):
    """What the pilot will run and how long it should take."""

    request_key: str
    n_samples: int = Field(description="Subsample size (train + val).")
    n_train: int
    n_val: int
    num_classes: int
    epochs: int
    batch_size: int
    img_size: int
    lr_grid: dict[str, tuple[float, ...]]
    seeds: tuple[int, ...]
    trials: list[TrialSpec]
    timings: list[MethodTiming]
    estimated_s: float = Field(description="Estimated wall time of all trials, decoding included.")
    budget_s: float
    device: str
    precision: str
    model: str
    num_prompts: int

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return len(self.trials)


class MethodSummary(FrozenModel):
    """One method's pilot result."""

    method: Method
    best_lr: float | None = Field(description="Grid lr with the best mean val accuracy (None: no finished trial).")
    mean_acc: float = Field(description="Mean best-epoch val accuracy (%) over seeds at best_lr.")
    std_acc: float = Field(description="Sample std (%) over seeds at best_lr (0 with one seed).")
    n_seeds: int
    per_lr: dict[str, tuple[float, float, int]] = Field(description="lr -> (mean, std, seeds).")
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


class PilotResult(FrozenModel):
    """Everything the pilot measured."""

    plan: PilotPlan
    methods: list[MethodSummary]
    trials: list[TrialResult]
    trials_run: int = Field(description="Trials trained in this call.")
    trials_resumed: int = Field(description="Trials read back from the store.")
    n_skipped_files: int = Field(description="Subsample files that could not be decoded.")
    store_dir: str
    wall_s: float


def _digest(obj: object) -> str:
    return json_digest(obj, length=PILOT_KEY_CHARS)


def _dataset_fingerprint(samples: list[Sample]) -> str:
    return _digest([[str(s.path), s.label] for s in samples])


def _subset(index: DatasetIndex, config: PilotConfig, n: int) -> tuple[list[Sample], list[Sample]]:
    chosen = stratified_subsample(index.samples, n, seed=config.split_seed)
    return train_val_split(chosen, val_fraction=config.val_fraction, seed=config.split_seed)


def _candidate_sizes(available: int, config: PilotConfig, num_classes: int) -> list[int]:
    cap = min(available, config.max_samples)
    floor = min(cap, max(2 * num_classes, 10))
    sizes = sorted({cap, *(s for s in _SIZES if floor <= s <= cap)}, reverse=True)
    return sizes


def _trial_cost(t: MethodTiming, method: Method, epochs: int, n_train: int, n_val: int) -> float:
    per_epoch = n_train * t.train_s_per_image + n_val * t.eval_s_per_image
    return t.setup_s + len(stages_of(method)) * epochs * per_epoch


def _estimate(timings: dict[str, MethodTiming], config: PilotConfig, n: int, epochs: int, grid: int) -> float:
    n_val = max(1, round(n * config.val_fraction))
    n_train = n - n_val
    total = n * _DECODE_S_PER_IMAGE
    for m in config.methods:
        g = min(grid, len(config.grid_for(m)))
        total += g * config.seeds * _trial_cost(timings[m], m, epochs, n_train, n_val)
    return total


def _choose(timings: dict[str, MethodTiming], config: PilotConfig, sizes: list[int]) -> tuple[int, int, int, float]:
    """Pick (n, epochs, grid) that fits the budget.

    Preference: at least 5 epochs first, then more data, then up to 10 epochs, then a larger grid,
    then more epochs.
    """
    epochs_options = (config.epochs,) if config.epochs else (QUICK_EPOCHS,) if config.quick else _EPOCHS
    max_grid = max(len(config.grid_for(m)) for m in config.methods)
    best: tuple[tuple[int, ...], tuple[int, int, int, float]] | None = None
    cheapest: tuple[float, int, int, int] | None = None
    for n in sizes:
        for e in epochs_options:
            for g in range(1, max_grid + 1):
                est = _estimate(timings, config, n, e, g)
                if cheapest is None or est < cheapest[0]:
                    cheapest = (est, n, e, g)
                if est > config.budget_s:
                    continue
                score = (min(e, 5), n, min(e, 10), g, e)
                if best is None or score > best[0]:
                    best = (score, (n, e, g, est))
    if best is None:
        assert cheapest is not None
        est, n, e, g = cheapest
        raise BudgetError(
            f"the budget of {config.budget_s / 60:.1f} min is too small: even {n} images x {e} epoch(s) x "
            f"{config.seeds} seed(s) for {', '.join(config.methods)} needs about {est / 60:.1f} min here; "
            "raise --budget, use fewer --methods/--seeds, or a GPU")
    return best[1]


def load_pilot_backbone(config: PilotConfig) -> nn.Module:
    """Build the backbone ``config`` names (hub, local weights, or an explicit random init)."""
    return create_backbone_from(config.backbone, img_size=config.img_size)


def _img_size(backbone: nn.Module, config: PilotConfig) -> int:
    if config.img_size:
        return config.img_size
    size = as_vit(backbone).patch_embed.img_size
    return int(size[0] if isinstance(size, tuple | list) else size)


def _request_key(index: DatasetIndex, config: PilotConfig, device: torch.device) -> str:
    return _digest({"data": _dataset_fingerprint(index.samples), "config": config.model_dump(mode="json"),
                    "device": device.type})


def _epoch_reporter(on_progress: ProgressCallback | None, base: int,
                    total: int) -> Callable[[int, object, object], None]:
    """``on_epoch`` for :func:`engine.train.loop.fit`: report ``base + epoch`` of ``total`` epochs."""
    return lambda epoch, _train, _val: report(on_progress, base + epoch, total)


def check_pilot_data(index: DatasetIndex) -> None:
    """Raise ConfigError unless ``index`` is labeled with at least two classes."""
    if not index.labeled:
        raise ConfigError(f"the pilot needs labeled images (an ImageFolder, or a list/CSV file with labels); "
                          f"{index.root} has none")
    if index.num_classes < 2:
        raise ConfigError(f"the pilot needs at least 2 classes, found {index.num_classes} in {index.root}")


def plan_pilot(
    index: DatasetIndex,
    config: PilotConfig,
    *,
    device: torch.device,
    store_dir: Path | None = None,
    backbone: nn.Module | None = None,
) -> PilotPlan:
    """Measure a warm-up and choose subset size, epochs and lr grid to fit ``config.budget_s``.

    A plan already stored under ``store_dir`` for the same data, config and device is reused.

    Raises:
        ConfigError: unlabeled data or fewer than two classes.
        BudgetError: not even the smallest pilot fits the budget.
    """
    check_pilot_data(index)
    key = _request_key(index, config, device)
    plan_path = store_dir / "plans" / f"{key}.json" if store_dir is not None else None
    if plan_path is not None and plan_path.is_file():
        try:
            return PilotPlan.model_validate_json(plan_path.read_text(encoding="utf-8"))
        except ValueError:
            logger.warning("ignoring unreadable stored plan %s", plan_path)
    if backbone is None:
        backbone = load_pilot_backbone(config)
    img_size = _img_size(backbone, config)
    timings = {m: measure_method_timing(backbone, m, num_classes=index.num_classes, num_prompts=config.num_prompts,
                                        batch_size=config.batch_size, img_size=img_size, precision=config.precision,
                                        device=device)
               for m in config.methods}
    sizes = _candidate_sizes(len(index.samples), config, index.num_classes)
    n, epochs, grid, est = _choose(timings, config, sizes)
    train, val = _subset(index, config, n)
    lr_grid = {m: config.grid_for(m)[:grid] for m in config.methods}
    seeds = PAPER_SEEDS[: config.seeds]
    trials = [TrialSpec(method=m, lr=lr, seed=s) for m in config.methods for lr in lr_grid[m] for s in seeds]
    plan = PilotPlan(
        request_key=key, n_samples=len(train) + len(val), n_train=len(train), n_val=len(val),
        num_classes=index.num_classes, epochs=epochs, batch_size=min(config.batch_size, len(train)),
        img_size=img_size, lr_grid=lr_grid, seeds=seeds, trials=trials, timings=list(timings.values()),
        estimated_s=est, budget_s=config.budget_s, device=str(device), precision=config.precision,
        model=config.backbone.model, num_prompts=config.num_prompts,
    )
    if plan_path is not None:
        atomic_write_text(plan_path, plan.model_dump_json(indent=2))
    return plan


def _train_config(plan: PilotPlan, config: PilotConfig, spec: TrialSpec) -> TrainConfig:
    defaults = method_defaults(spec.method)
    warmup = round(plan.epochs * defaults["warmup_epochs"] / 100)  # the paper's 5 or 10 of 100 epochs
    return TrainConfig.for_method(
        spec.method, epochs=plan.epochs, warmup_epochs=warmup, batch_size=plan.batch_size, lr=spec.lr,
        precision=config.precision, seed=spec.seed, deterministic=config.deterministic,
        num_prompts=config.num_prompts, img_size=plan.img_size, grad_checkpointing=config.grad_checkpointing,
        ft_stage_epochs=plan.epochs if len(stages_of(spec.method)) > 1 else None,
    )


def _trial_key(plan: PilotPlan, config: PilotConfig, data_key: str, tc: TrainConfig) -> str:
    bb = config.backbone
    return _digest({"data": data_key, "model": bb.model, "weights": str(bb.weights),
                    "random_init": bb.random_init, "model_kwargs": bb.model_kwargs,
                    "device": torch.device(plan.device).type, "train": tc.model_dump(mode="json")})


def summarize_trials(plan: PilotPlan, trials: list[TrialResult]) -> list[MethodSummary]:
    """Per-method summary at the best grid lr (ties to the smaller lr)."""
    out = []
    for method in plan.lr_grid:
        mine = [t for t in trials if t.spec.method == method]
        planned = sum(1 for t in plan.trials if t.method == method)
        per_lr: dict[str, tuple[float, float, int]] = {}
        for lr in sorted({t.spec.lr for t in mine}):
            accs = [t.fit.best_val_acc for t in mine if t.spec.lr == lr]
            per_lr[repr(lr)] = (statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0, len(accs))
        best_lr = max(sorted(per_lr, key=float), key=lambda k: per_lr[k][0]) if per_lr else None
        mean, std, k = per_lr[best_lr] if best_lr is not None else (0.0, 0.0, 0)
        fits = [t.fit for t in mine]
        trainable = fits[0].trainable_params if fits else 0
        total = fits[0].total_params if fits else 0
        out.append(MethodSummary(
            method=method, best_lr=float(best_lr) if best_lr is not None else None, mean_acc=mean, std_acc=std,
            n_seeds=k, per_lr=per_lr, trainable_params=trainable, total_params=total,
            trainable_pct=100.0 * trainable / total if total else 0.0,
            images_per_s=statistics.fmean([f.images_per_s for f in fits]) if fits else 0.0,
            peak_memory_bytes=max((f.peak_memory_bytes for f in fits), default=0),
            peak_memory_kind=fits[0].peak_memory_kind if fits else "",
            wall_s=sum(f.wall_s for f in fits), diverged_trials=sum(f.diverged for f in fits),
            finished_trials=len(fits), planned_trials=planned,
        ))
    return out


def run_pilot(
    index: DatasetIndex,
    config: PilotConfig,
    *,
    store_dir: Path,
    device: torch.device,
    plan: PilotPlan | None = None,
    backbone: nn.Module | None = None,
    on_progress: ProgressCallback | None = None,
    on_trial: Callable[[TrialResult, bool], None] | None = None,
) -> PilotResult:
    """Run (or resume) the pilot described by ``plan`` (made by :func:`plan_pilot` when ``None``).

    Args:
        index: the labeled dataset.
        config: the pilot settings.
        store_dir: where plans and finished trials are kept (created).
        device: where to train.
        plan: a plan from :func:`plan_pilot` (the CLI shows it before starting).
        backbone: a ready backbone (tests); built from ``config`` when ``None``.
        on_progress: ``on_progress(done, total)`` in epochs over all trials; also called once at start.
        on_trial: ``on_trial(result, resumed)`` for every trial, resumed ones included.

    Returns:
        A :class:`PilotResult`. A ``KeyboardInterrupt`` propagates after the finished trials are on disk.
    """
    start = time.perf_counter()
    store_dir = Path(store_dir)
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the pilot store {store_dir}: {exc}") from exc
    if backbone is None:
        backbone = load_pilot_backbone(config)
    if plan is None:
        plan = plan_pilot(index, config, device=device, store_dir=store_dir, backbone=backbone)
    train_s, val_s = _subset(index, config, plan.n_samples)
    data_key = _dataset_fingerprint(train_s + val_s)
    train, skipped_train = load_image_tensors(train_s, size=plan.img_size, workers=config.workers)
    val, skipped_val = load_image_tensors(val_s, size=plan.img_size, workers=config.workers)
    backbone.to("cpu")
    results: list[TrialResult] = []
    resumed = run = 0
    # progress is counted in epochs (a CPU trial can take minutes); resumed trials count at once
    units = {spec: len(stages_of(spec.method)) * plan.epochs for spec in plan.trials}
    total = sum(units.values())
    done = 0
    report(on_progress, 0, total)
    for spec in plan.trials:
        tc = _train_config(plan, config, spec)
        key = _trial_key(plan, config, data_key, tc)
        path = store_dir / "trials" / f"{key}.json"
        if path.is_file():
            try:
                result = TrialResult.model_validate_json(path.read_text(encoding="utf-8"))
                results.append(result)
                resumed += 1
                done += units[spec]
                if on_trial is not None:
                    on_trial(result, True)
                report(on_progress, done, total)
                continue
            except ValueError:
                logger.warning("re-running trial with unreadable result file %s", path)
        seed_everything(spec.seed, deterministic=config.deterministic)
        model = build_model(copy.deepcopy(backbone), spec.method, plan.num_classes,
                            num_prompts=config.num_prompts, prompt_dropout=tc.prompt_dropout)
        fitted = fit(model, train, val, tc, device=device, on_epoch=_epoch_reporter(on_progress, done, total))
        del model
        done += units[spec]
        result = TrialResult(key=key, spec=spec, fit=fitted)
        atomic_write_text(path, result.model_dump_json(indent=2))
        results.append(result)
        run += 1
        if on_trial is not None:
            on_trial(result, False)
        report(on_progress, done, total)
    return PilotResult(
        plan=plan, methods=summarize_trials(plan, results), trials=results, trials_run=run, trials_resumed=resumed,
        n_skipped_files=len(skipped_train) + len(skipped_val), store_dir=str(store_dir),
        wall_s=time.perf_counter() - start,
    )
