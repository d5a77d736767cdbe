"""The pilot: short, budgeted FT-vs-VPT runs on the user's own data, planned for power and for time.

Protocol: three disjoint stratified splits (``engine.train.pilot_plan``): training, *selection*
(evaluated every epoch; each method's lr is the grid value with the best mean selection accuracy
over seeds, ties to the smaller lr as in the paper's ``tune_vtab.py``) and *comparison* (scored once by
each trial's final model, per image). FT and VPT are compared on the comparison images only, with a
paired bootstrap over images and seeds (``engine.train.power``), so the lr choice does not flatter
the comparison. Seeds are ``PAPER_SEEDS[:k]``.

``plan_pilot`` runs the timing probe (cached per device/model/method/size) and sizes the splits, epochs
and grid to the budget and to ``min_detectable``; the plan is stored, so a rerun reuses it (timing noise
would otherwise change the plan and defeat resuming). ``run_pilot`` saves each finished trial as JSON
under ``store_dir`` at once (its comparison probabilities beside it, for the FT+VPT ensemble); a rerun
skips trials already on disk, and Ctrl-C (``KeyboardInterrupt``) loses only the trial in progress. The
verdict, the ensemble and ``--save`` are ``engine.train.pilot_outcome``'s.
"""

from __future__ import annotations

import copy
import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch import nn

from engine.config import FrozenModel
from engine.config.train import PAPER_SEEDS, PILOT_TRIAL_FIELDS, PilotConfig, TrainConfig, method_defaults
from engine.data.imageio import decode_images, display_path
from engine.data.index import DatasetIndex, Sample
from engine.data.tensors import DecodeMemo, ImageTensors, TensorLoader, load_image_tensors
from engine.device import autocast_context
from engine.errors import StoreError
from engine.fingerprint import files_fingerprint, path_fingerprint
from engine.io import atomic_write_text, json_digest
from engine.progress import ProgressCallback, report
from engine.seed import seed_everything
from engine.train.ensemble import PROBS_SUFFIX, EnsembleResult, load_probs, save_probs
from engine.train.loop import fit
from engine.train.methods import Method, stages_of
from engine.train.models import create_backbone_from
from engine.train.pilot_checks import check_pilot_data
from engine.train.pilot_outcome import (
    SavedWeights,
    WeightKeeper,
    ensemble_of,
    save_winner,
    verdict_of,
    weights_metadata,
)
from engine.train.pilot_plan import (
    DECODE_S_PER_IMAGE,
    PilotPlan,
    TrialSpec,
    choose_plan,
    mdd_of,
    seeds_short,
    split_samples,
    sufficient,
)
from engine.train.pilot_summary import (
    MethodSummary,
    TrialResult,
    compare_methods,
    compare_with_baseline,
    summarize_trials,
)
from engine.train.pilot_timing import (
    PROBE_BUDGET_S,
    MethodTiming,
    cached_timing,
    measure_method_timing,
    store_timing,
    timing_cache_key,
    timing_from_trials,
)
from engine.train.power import PairedComparison
from engine.train.transfer import build_model
from engine.train.verdict import Verdict
from engine.train.vpt import as_vit

__all__ = ["MethodTiming", "TrialSpec", "TrialResult", "PilotPlan", "MethodSummary", "PilotResult", "plan_pilot",
           "run_pilot", "summarize_trials", "compare_methods", "check_pilot_data", "load_pilot_backbone"]

logger = logging.getLogger(__name__)

_DECODE_PROBE_FILES = 8
"""Files decoded to time decoding when planning (a few: the probe must stay short)."""



class PilotResult(FrozenModel):
    """Everything the pilot measured."""

    plan: PilotPlan
    methods: list[MethodSummary]
    trials: list[TrialResult]
    paired: PairedComparison | None = Field(
        None, description="The verdict: best VPT-side minus best FT-side method on the comparison images (None "
        "without a method on each side or without comparison images).")
    comparisons: list[PairedComparison] = Field(
        default_factory=list, description="Every other method (any family, e.g. LoRA) minus the best FT-side "
        "method on the comparison images.")
    trials_run: int = Field(description="Trials trained in this call.")
    trials_resumed: int = Field(description="Trials read back from the store.")
    n_skipped_files: int = Field(description="Subsample files that could not be decoded.")
    trials_unsaved: int = Field(0, description="Trials run now that could not be written to the store (full or "
                                "read-only disk): their results count here, but a rerun trains them again.")
    store_dir: str
    wall_s: float
    verdict: Verdict | None = Field(None, description="What the pilot may claim: status, decisive, seed-aware "
                                    "interval, post-hoc power (engine.train.verdict).")
    ensemble: EnsembleResult | None = Field(None, description="FT+VPT ensemble on the comparison images.")
    saved: SavedWeights | None = Field(None, description="The winner's weights written by --save.")


_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""Errors of a disk that cannot take the store (full, over quota, read-only): the pilot goes on without it."""


def save_to_store(path: Path, text: str, what: str) -> bool:
    """Write a pilot-store file; on a full or read-only disk warn and go on (False).

    The store only lets a rerun resume: losing it must never cost the results of the run that computed them.
    """
    try:
        atomic_write_text(path, text)
        return True
    except OSError as exc:
        logger.warning("cannot save the pilot's %s in %s (%s); the pilot goes on, but a rerun cannot resume "
                       "what was not saved", what, display_path(path.parent), exc.strerror or exc)
        return False


def _digest(obj: object) -> str:
    return json_digest(obj, 16)


def _dataset_fingerprint(samples: list[Sample], *, content: bool = False) -> str:
    """Paths and labels (the plan's key); with ``content``, also the images' bytes (a trial's key: new images at
    the same paths are new trials, never the stored results of the old ones)."""
    rows: list[object] = [[str(s.path), s.label] for s in samples]
    if content:
        rows.append(files_fingerprint(s.path for s in samples))
    return _digest(rows)


def _splits(index: DatasetIndex, config: PilotConfig, plan: PilotPlan) -> tuple[list[Sample], ...]:
    return split_samples(index.samples, config, n_compare=plan.n_compare, n=plan.n_samples)


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


def _cache_key(config: PilotConfig, method: Method, img_size: int, device: torch.device) -> str:
    return timing_cache_key(device, config.backbone.model, dict(config.backbone.model_kwargs), method,
                            img_size=img_size, num_prompts=config.train.num_prompts, precision=config.train.precision,
                            batch_size=config.train.batch_size)


def _probe(backbone: nn.Module, config: PilotConfig, *, num_classes: int, img_size: int, device: torch.device,
           timing_cache: Path | None) -> dict[str, MethodTiming]:
    """Timing per method: from the cache, else measured (the whole probe within PROBE_BUDGET_S)."""
    out: dict[str, MethodTiming] = {}
    todo: list[tuple[Method, str]] = []
    for m in config.methods:
        key = _cache_key(config, m, img_size, device)
        hit = cached_timing(timing_cache, key)
        if hit is not None:
            out[m] = hit if hit.source == "trial" else hit.model_copy(update={"source": "cache"})
        else:
            todo.append((m, key))
    deadline = time.perf_counter() + PROBE_BUDGET_S
    for i, (m, key) in enumerate(todo):
        share = max(0.0, deadline - time.perf_counter()) / (len(todo) - i)  # what earlier methods left
        out[m] = measure_method_timing(backbone, m, num_classes=num_classes, num_prompts=config.train.num_prompts,
                                       batch_size=config.train.batch_size, img_size=img_size,
                                       precision=config.train.precision,
                                       device=device, budget_s=share)
        store_timing(timing_cache, key, out[m])
    return {m: out[m] for m in config.methods}


def _decode_seconds(samples: list[Sample], img_size: int, workers: int, memo: DecodeMemo) -> float:
    """Seconds per image to decode and resize, timed on a few evenly spaced files (fallback: the constant).

    The decoded files go into ``memo``, so the run that follows does not decode them again."""
    step = max(1, len(samples) // _DECODE_PROBE_FILES)
    few = samples[::step][:_DECODE_PROBE_FILES]
    if not few:
        return DECODE_S_PER_IMAGE
    t = time.perf_counter()
    decoded = decode_images([s.path for s in few], size=img_size, workers=workers, fingerprint=True)
    seconds = (time.perf_counter() - t) / len(few)
    if not decoded.ok:  # none decodable: the run itself will say so; plan with the fallback
        return DECODE_S_PER_IMAGE
    memo.update({(few[i].path, img_size): a for i, a in zip(decoded.ok, decoded.arrays, strict=True)})
    return seconds


def plan_pilot(
    index: DatasetIndex,
    config: PilotConfig,
    *,
    device: torch.device,
    store_dir: Path | None = None,
    backbone: nn.Module | None = None,
    timing_cache: Path | None = None,
    memo: DecodeMemo | None = None,
) -> PilotPlan:
    """Probe timings and size the comparison/selection/training splits, epochs and lr grid.

    The files the decode-time probe reads go into ``memo`` (pass the same one to :func:`run_pilot`). A plan already
    stored under ``store_dir`` for the same data, config and device is reused. The plan states its minimum detectable
    difference; when that misses ``config.min_detectable`` it is still returned (``decisive_by_design=False``, with
    the budget and labeled images that would suffice): refusing is the caller's decision.

    Raises:
        ConfigError: a pilot that cannot work (:func:`engine.train.pilot_checks.check_pilot_data`).
        BudgetError: not even the smallest pilot fits the budget.
    """
    check_pilot_data(index, config)
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
    t0 = time.perf_counter()
    timings = _probe(backbone, config, num_classes=index.num_classes, img_size=img_size, device=device,
                     timing_cache=timing_cache)
    probe_s = time.perf_counter() - t0 if any(t.source == "probe" for t in timings.values()) else 0.0
    decode_s = _decode_seconds(index.samples, img_size, config.workers, memo if memo is not None else {})
    n_labeled = len(index.samples)
    choice, needed = choose_plan(timings, config, n_labeled=n_labeled, num_classes=index.num_classes, decode_s=decode_s)
    enough_images, enough_budget = sufficient(timings, config, choice, needed, n_labeled, decode_s=decode_s)
    train, val, compare = split_samples(index.samples, config, n_compare=choice.n_compare, n=choice.n)
    lr_grid: dict[str, tuple[float, ...]] = {m: config.grid_for(m)[: choice.grid] for m in config.methods}
    seeds = PAPER_SEEDS[: config.seeds]
    mdd = mdd_of(config, len(compare))
    plan = PilotPlan(
        request_key=key, n_samples=len(train) + len(val), n_train=len(train), n_val=len(val),
        n_compare=len(compare), n_labeled=n_labeled, num_classes=index.num_classes, epochs=choice.epochs,
        batch_size=min(config.train.batch_size, len(train)), img_size=img_size, lr_grid=lr_grid, seeds=seeds,
        trials=[TrialSpec(method=m, lr=lr, seed=s) for m in config.methods for lr in lr_grid[m] for s in seeds],
        timings=list(timings.values()), estimated_s=choice.estimated_s, budget_s=config.budget_s,
        device=str(device), precision=config.train.precision, model=config.backbone.model,
        num_prompts=config.train.num_prompts, min_detectable=mdd, target_detectable=config.min_detectable,
        decisive_by_design=mdd <= config.min_detectable,
        compare_needed=needed, sufficient_labeled=enough_images, sufficient_budget_s=enough_budget,
        assumed_discordance=config.assumed_discordance, probe_s=probe_s, decode_s_per_image=decode_s,
        assumed_seed_sd=config.assumed_seed_sd, indicative_only=config.seeds < 2, seeds_needed=seeds_short(config),
    )
    if plan_path is not None:
        save_to_store(plan_path, plan.model_dump_json(indent=2), "plan")
    return plan


def _train_config(plan: PilotPlan, config: PilotConfig, spec: TrialSpec) -> TrainConfig:
    """One trial's TrainConfig: the shared ``config.train``, then its method's settings, lr, seed and plan sizes."""
    defaults = method_defaults(spec.method)
    warmup = round(plan.epochs * defaults["warmup_epochs"] / 100)  # the paper's 5 or 10 of 100 epochs
    shared = config.train.model_dump(exclude={*PILOT_TRIAL_FIELDS, "batch_size"})
    return TrainConfig.for_method(
        spec.method, **shared, epochs=plan.epochs, warmup_epochs=warmup, batch_size=plan.batch_size, lr=spec.lr,
        seed=spec.seed, img_size=plan.img_size,
        ft_stage_epochs=plan.epochs if len(stages_of(spec.method)) > 1 else None,
    )


def _trial_key(plan: PilotPlan, config: PilotConfig, data_key: str, tc: TrainConfig) -> str:
    bb = config.backbone
    return _digest({"data": data_key, "model": bb.model, "weights": str(bb.weights),
                    "weights_content": path_fingerprint(bb.weights),  # new weights at the same path: new trials
                    "random_init": bb.random_init, "init_seed": bb.init_seed if bb.random_init else None,
                    "model_kwargs": bb.model_kwargs,
                    "device": torch.device(plan.device).type, "train": tc.model_dump(mode="json")})


def _score_compare(model: nn.Module, data: ImageTensors, tc: TrainConfig,
                   device: torch.device) -> tuple[list[bool], np.ndarray]:
    """Per-image correctness of ``model`` on ``data`` (input order) and its softmax probabilities (float32)."""
    if len(data) == 0:
        return [], np.zeros((0, 0), dtype=np.float32)
    loader = TensorLoader(data, batch_size=max(tc.batch_size, 64), device=device, normalization=tc.normalization)
    autocast = autocast_context(device, tc.precision)
    model.eval()
    out: list[bool] = []
    probs: list[np.ndarray] = []
    with torch.inference_mode():
        for x, y in loader:
            with autocast():
                logits = model(x).float()
            out.extend(bool(v) for v in (logits.argmax(dim=-1) == y).cpu().tolist())
            probs.append(torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float32))
    return out, np.concatenate(probs)


def _load_trial(path: Path) -> TrialResult | None:
    if not path.is_file():
        return None
    try:
        return TrialResult.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError:
        logger.warning("re-running trial with unreadable result file %s", path)
        return None


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
    timing_cache: Path | None = None,
    memo: DecodeMemo | None = None, save_dir: Path | None = None,
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
        timing_cache: the probe's cache; trials run now replace their method's training cost in it.
        save_dir: ``--save``: where the winner's trainable weights go (``pilot_outcome.save_winner``).

    Returns:
        A :class:`PilotResult`. A ``KeyboardInterrupt`` propagates after the finished trials are on disk.
    """
    start = time.perf_counter()
    store_dir = Path(store_dir)
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise StoreError(f"cannot create the pilot store {store_dir}: {exc}") from exc
        logger.warning("cannot create the pilot store %s (%s); the pilot goes on without saving its trials",
                       display_path(store_dir), exc.strerror or exc)
    if backbone is None:
        backbone = load_pilot_backbone(config)
    if plan is None:
        plan = plan_pilot(index, config, device=device, store_dir=store_dir, backbone=backbone, memo=memo)
    data = _decode(index, config, plan, keep_in=store_dir if save_dir is not None else None, memo=memo)
    backbone.to("cpu")
    results, fresh = _run_trials(backbone, plan, config, data, device=device, store_dir=store_dir,
                                 on_progress=on_progress, on_trial=on_trial)
    _record_timings(plan, config, [r for r in results if r.key in fresh], device, timing_cache)
    methods = summarize_trials(plan, results)
    paired = compare_methods(methods, results)
    verdict = verdict_of(plan, methods, results, paired)
    labels = data.compare.labels.numpy() if data.compare is not None else None
    saved = (save_winner(data.keeper, Path(save_dir), results, _winner(verdict, methods))
             if data.keeper is not None and save_dir is not None else None)
    return PilotResult(
        plan=plan, methods=methods, trials=results, paired=paired, verdict=verdict, saved=saved, trials_run=len(fresh),
        comparisons=compare_with_baseline(methods, results), trials_resumed=len(results) - len(fresh),
        ensemble=ensemble_of(plan, methods, results, paired, data.probs, labels), trials_unsaved=data.unsaved,
        n_skipped_files=data.skipped, store_dir=str(store_dir), wall_s=time.perf_counter() - start,
    )


def _decode(index: DatasetIndex, config: PilotConfig, plan: PilotPlan, *, keep_in: Path | None,
            memo: DecodeMemo | None = None) -> _Data:
    """Decode the three splits once; the data key fingerprints the training and comparison files.

    The key is taken after the decode, which hashes the bytes it reads into the fingerprint memo: each file is
    opened once here, not once to decode and once to fingerprint.
    ``keep_in``: the store in which ``--save`` keeps each method's best trial (None: no weights kept).
    """
    train_s, val_s, cmp_s = _splits(index, config, plan)
    data = _Data(data_key="")
    load = partial(load_image_tensors, size=plan.img_size, workers=config.workers, memo=memo, fingerprint=True)
    data.train, skipped = load(train_s)
    data.val, skipped_val = load(val_s)
    data.compare, skipped_cmp = load(cmp_s) if cmp_s else (None, [])
    data.data_key = _digest([_dataset_fingerprint(train_s + val_s, content=True),
                             _dataset_fingerprint(cmp_s, content=True)])
    data.skipped = len(skipped) + len(skipped_val) + len(skipped_cmp)
    if keep_in is not None:
        data.keeper = WeightKeeper(keep_in, weights_metadata(config, plan, index.classes, data.data_key))
    return data


def _winner(verdict: Verdict, methods: list[MethodSummary]) -> str | None:
    """The decisive winner, else the method with the best comparison (or, without one, selection) accuracy."""
    if verdict.winner is not None:
        return verdict.winner
    done = [m for m in methods if m.n_seeds]
    return max(done, key=lambda m: (m.compare_acc, m.mean_acc)).method if done else None


@dataclass
class _Data:
    """The decoded splits of one pilot and the fingerprint that keys its trials."""

    data_key: str
    train: ImageTensors | None = None
    val: ImageTensors | None = None
    compare: ImageTensors | None = None
    unsaved: int = 0
    """Trials trained now that could not be written to the store."""
    skipped: int = 0
    """Files of the splits that could not be decoded."""
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    """Comparison probabilities per trial key (trained now, or read from the store's sidecars)."""
    keeper: WeightKeeper | None = None
    """``--save``: keeps each method's best trial's weights."""


def _run_trials(backbone: nn.Module, plan: PilotPlan, config: PilotConfig, data: _Data, *, device: torch.device,
                store_dir: Path, on_progress: ProgressCallback | None,
                on_trial: Callable[[TrialResult, bool], None] | None) -> tuple[list[TrialResult], set[str]]:
    """Every planned trial, read back from the store or trained and stored at once; (results, keys run now)."""
    results: list[TrialResult] = []
    fresh: set[str] = set()
    # progress is counted in epochs (a CPU trial can take minutes); resumed trials count at once
    units = {spec: len(stages_of(spec.method)) * plan.epochs for spec in plan.trials}
    total, done = sum(units.values()), 0
    report(on_progress, 0, total)
    for spec in plan.trials:
        tc = _train_config(plan, config, spec)
        path = store_dir / "trials" / f"{_trial_key(plan, config, data.data_key, tc)}.json"
        result = _load_trial(path)
        was_resumed = result is not None
        probs_path = path.with_name(path.stem + PROBS_SUFFIX)
        if result is not None and (stored := load_probs(probs_path)) is not None:
            data.probs[result.key] = stored
        if result is None:
            def on_epoch(epoch: int, base: int = done) -> None:
                report(on_progress, base + epoch, total)

            result = _run_trial(backbone, plan, config, spec, tc, data, device, key=path.stem, on_epoch=on_epoch)
            if not save_to_store(path, result.model_dump_json(), "trials"):
                data.unsaved += 1
            elif result.key in data.probs:
                save_probs(probs_path, data.probs[result.key])
            fresh.add(result.key)
        results.append(result)
        done += units[spec]
        if on_trial is not None:
            on_trial(result, was_resumed)
        report(on_progress, done, total)
    return results, fresh


def _record_timings(plan: PilotPlan, config: PilotConfig, fresh: list[TrialResult], device: torch.device,
                    timing_cache: Path | None) -> None:
    if timing_cache is None:
        return
    for t in plan.timings:
        fits = [r.fit for r in fresh if r.spec.method == t.method and not r.fit.diverged]
        if not fits or len(stages_of(t.method)) != 1:
            continue
        measured = [(f.images_per_s, f.wall_s - len(f.val_accs) * plan.n_train / f.images_per_s,
                     len(f.val_accs) * plan.n_val) for f in fits if f.images_per_s > 0]
        store_timing(timing_cache, _cache_key(config, t.method, plan.img_size, device),
                     timing_from_trials(t, measured))


def _run_trial(backbone: nn.Module, plan: PilotPlan, config: PilotConfig, spec: TrialSpec, tc: TrainConfig,
               data: _Data, device: torch.device, *, key: str, on_epoch: Callable[[int], None]) -> TrialResult:
    seed_everything(spec.seed, deterministic=config.train.deterministic)
    model = build_model(copy.deepcopy(backbone), spec.method, plan.num_classes, **tc.model_options())
    assert data.train is not None and data.val is not None  # decoded by run_pilot
    fitted = fit(model, data.train, data.val, tc, device=device, on_epoch=lambda epoch, _t, _v: on_epoch(epoch))
    correct, probs = _score_compare(model, data.compare, tc, device) if data.compare is not None else ([], None)
    result = TrialResult(key=key, spec=spec, fit=fitted, compare_correct=correct)
    if probs is not None and len(probs):
        data.probs[key] = probs
    if data.keeper is not None:
        data.keeper.offer(result, model)
    del model
    return result
