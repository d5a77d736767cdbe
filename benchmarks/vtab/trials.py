"""One VTAB-1k trial as a pure function of its config: :class:`TrialConfig` -> :class:`TrialResult`.

A trial reads its task's NOAH list files, decodes (and resizes) the images, builds the backbone
(``engine.train.models.create_backbone``) and the transfer model (``engine.train.transfer.build_model``), trains
it with ``engine.train.loop.fit`` and reports the accuracy on the evaluation split: ``val200`` in the
search phase, ``test`` in the final phase. VPT trials with ``engine="batched"`` that differ only in
lr / weight decay / seed are run together by :func:`run_trials` on one frozen backbone
(``engine.train.batched_vpt``). Decoded images and pristine backbones are cached per process, so a worker
decodes a split once however many trials use it.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from benchmarks.vtab.protocol import METHODS, MethodName, SubsetMode, split_sizes
from benchmarks.vtab.tasks import size_list_files
from engine.config import FrozenModel
from engine.config.train import BackboneSpec, TrainConfig
from engine.config.validate import MIN_TRAIN_SIZE
from engine.data.imageio import decode_images
from engine.data.index import first_k, index_dataset, stratified_subsample
from engine.errors import ConfigError
from engine.io import json_digest

# timm, torch are imported inside the functions that use them: importing this module does not load them.

__all__ = ["TrialConfig", "TrialResult", "config_hash", "split_samples", "run_trials", "group_key", "versions"]

log = logging.getLogger(__name__)


def config_hash(config: FrozenModel) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no whitespace; ``engine.io.json_digest``) of a config.

    A trial's key in the store (``benchmarks.vtab.store``): equal configs share one row, so a rerun resumes.
    """
    return json_digest(config.model_dump(mode="json"))

Phase = Literal["search", "final"]

_ARM_OF: dict[str, MethodName] = {name: arm for arm, name in METHODS.items()}
"""Engine method -> protocol method name (the inverse of ``benchmarks.vtab.protocol.METHODS``)."""

FINAL_MONITOR_IMAGES = 64
"""Training images a final run evaluates after each epoch (our choice: one VPT batch, cheap next to the
test split, which is evaluated once at the end; the per-epoch number only shows the run is learning)."""


class TrialConfig(FrozenModel):
    """Everything that determines one trial's result (its hash is the store's primary key).

    The training itself is the one :class:`~engine.config.train.TrainConfig` (``train``: method, lr, weight
    decay, seed, epochs, batch size, prompts, input and every training detail), read by ``fit`` and by the
    batched VPT sweep alike; the other fields say which data the trial trains and evaluates on.
    """

    root: str = Field(description="Absolute VTAB-1k root.")
    task: str = Field(description="Task key (engine.paper).")
    folder: str = Field(description="Task folder under the root.")
    num_classes: int = Field(ge=1, description="Classes of the task.")
    protocol: str = Field("paper", description="Protocol name (paper or quick).")
    phase: Phase = Field("search", description="search: train/val; final: train+val/test.")
    n_train: int = Field(800, ge=MIN_TRAIN_SIZE, description="Training-set size point (val = n_train/4).")
    train: TrainConfig = Field(description="The training run (Protocol.trial_train).")
    backbone: BackboneSpec = Field(default_factory=BackboneSpec, description="The pretrained backbone.")
    max_train: int | None = Field(None, ge=1, description="Cap on training images.")
    max_eval: int | None = Field(None, ge=1, description="Cap on evaluation images.")
    sample_seed: int = Field(0, description="Seed of subsamples (sizes < 800 and caps).")
    engine: Literal["fit", "batched"] = Field("fit", description="engine.train.loop.fit, or batched VPT.")
    subset: SubsetMode = Field("first-k", description="Sizes below 800: first n of the lists, or stratified.")
    content: dict[str, str] = Field(default_factory=dict, description=(
        "Content fingerprints (engine.fingerprint) of the weights file and of the task's list files and images: "
        "new files at the same paths are new trials, never the stored results of the old ones."))

    @model_validator(mode="after")
    def _protocol_method(self) -> TrialConfig:
        if self.train.method not in _ARM_OF:
            raise ValueError(f"train.method {self.train.method!r} is not a VTAB protocol method "
                             f"({', '.join(_ARM_OF)})")
        return self

    @property
    def method(self) -> MethodName:
        """The protocol's name of the trained method: ``ft`` or ``vpt``."""
        return _ARM_OF[self.train.method]

    @property
    def key(self) -> str:
        """The config hash."""
        return config_hash(self)


class TrialResult(FrozenModel):
    """Outcome of one trial (accuracies in %)."""

    key: str = Field(description="Config hash.")
    config: TrialConfig = Field(description="The config.")
    eval_split: str = Field(description="val (search) or test (final).")
    eval_acc: float = Field(description="Accuracy on the evaluation split after the last epoch (%).")
    n_train: int = Field(description="Training images used.")
    n_eval: int = Field(description="Evaluation images used.")
    n_skipped: int = Field(0, description="Images that could not be decoded.")
    losses: list[float | None] = Field(default_factory=list,
                                       description="Mean training loss per epoch (None where not finite).")
    wall_s: float = Field(description="Training + evaluation seconds (shared by a batched group).")
    train_images_per_s: float = Field(0.0, description="Training images per second.")
    group_size: int = Field(1, description="Configurations trained together (batched VPT).")
    device: str = Field(description="Device.")
    versions: dict[str, str] = Field(default_factory=dict, description="Library versions.")

    def metrics(self) -> dict[str, Any]:
        """The store's metrics column."""
        return {"eval_acc": self.eval_acc, "eval_split": self.eval_split, "n_train": self.n_train,
                "n_eval": self.n_eval, "n_skipped": self.n_skipped, "losses": self.losses,
                "group_size": self.group_size}

    def timings(self) -> dict[str, float]:
        """The store's timings column."""
        return {"wall_s": self.wall_s, "train_images_per_s": self.train_images_per_s}


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def versions() -> dict[str, str]:
    """Versions recorded with every result."""
    import timm
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}


def group_key(cfg: TrialConfig) -> tuple[Any, ...] | None:
    """Configs with the same key can train together (batched VPT); ``None`` for trials that run alone."""
    if cfg.method != "vpt" or cfg.engine != "batched":
        return None
    d = cfg.model_dump(mode="json")
    for name in ("lr", "weight_decay", "seed"):
        d["train"].pop(name)
    return tuple(sorted((k, repr(v)) for k, v in d.items()))


def _list(cfg: TrialConfig, name: str) -> list[Any]:
    return index_dataset(Path(cfg.root) / cfg.folder / name).samples


def split_samples(cfg: TrialConfig) -> tuple[list[Any], list[Any]]:
    """(training samples, evaluation samples) of a trial, following the protocol.

    Size 800 uses the VTAB-1k lists; smaller sizes take the first ``n`` / ``n/4`` entries of train800/val200
    (``subset="first-k"``, VTAB-1k's own rule) or a stratified subsample (seed ``sample_seed``); larger sizes
    need ``train{n}.txt`` / ``val{n/4}.txt`` / ``train{n}val{n/4}.txt``.
    Caps (``max_train`` / ``max_eval``, the quick protocol) subsample the result.
    """
    n_train, n_val = split_sizes(cfg.n_train)
    if n_train > 800:
        tr_name, va_name, trva_name = size_list_files(n_train)
        train, val = _list(cfg, tr_name), _list(cfg, va_name)
    else:
        train, val = _list(cfg, "train800.txt"), _list(cfg, "val200.txt")
        if n_train < 800 and cfg.subset == "first-k":
            train, val = first_k(train, n_train), first_k(val, n_val)
        elif n_train < 800:
            train = stratified_subsample(train, n_train, seed=cfg.sample_seed)
            val = stratified_subsample(val, n_val, seed=cfg.sample_seed + 1)
    if cfg.phase == "search":
        fit_on, eval_on = train, val
    elif n_train == 800:
        fit_on, eval_on = _list(cfg, "train800val200.txt"), _list(cfg, "test.txt")
    elif n_train > 800:
        fit_on, eval_on = _list(cfg, size_list_files(n_train)[2]), _list(cfg, "test.txt")
    else:
        fit_on, eval_on = train + val, _list(cfg, "test.txt")
    if cfg.max_train is not None and len(fit_on) > cfg.max_train:
        fit_on = stratified_subsample(fit_on, cfg.max_train, seed=cfg.sample_seed + 2)
    if cfg.max_eval is not None and len(eval_on) > cfg.max_eval:
        eval_on = stratified_subsample(eval_on, cfg.max_eval, seed=cfg.sample_seed + 3)
    return fit_on, eval_on


@functools.lru_cache(maxsize=3)  # units arrive task by task; a large test split (dSprites: 73,728 images,
def _decode(paths: tuple[str, ...], labels: tuple[int, ...], size: int) -> tuple[Any, Any, int]:
    """Decode + resize once per process: ``(uint8 (N, 3, H, W), int64 (N,), n_skipped)``.

    The cache holds three splits (about 11 GB uint8 at 224 px for dSprites' test split), enough for the
    train, val and test lists of the task being run.
    """
    import torch


    dec = decode_images([Path(p) for p in paths], size=size, resample="bicubic")
    if not dec.ok:
        raise ConfigError(f"none of the {len(paths)} images of this split could be decoded "
                          f"(first problem: {dec.skipped[0].path}: {dec.skipped[0].reason})")
    images = torch.from_numpy(np.ascontiguousarray(dec.stack().transpose(0, 3, 1, 2)))
    y = torch.tensor([labels[i] for i in dec.ok], dtype=torch.long)
    return images, y, len(dec.skipped)


def _tensors(samples: list[Any], size: int) -> tuple[Any, Any, int]:
    return _decode(tuple(str(s.path) for s in samples), tuple(int(s.label) for s in samples), size)


@functools.lru_cache(maxsize=2)
def _pristine_backbone(spec_json: str, img_size: int) -> Any:
    """The backbone of a :class:`BackboneSpec` (passed as JSON: the cache key must be hashable)."""
    import torch

    from engine.train.models import create_backbone_from

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a random-init backbone must be the same in every process
        return create_backbone_from(BackboneSpec.model_validate_json(spec_json), img_size=img_size)


def _backbone(cfg: TrialConfig) -> Any:
    return copy.deepcopy(_pristine_backbone(cfg.backbone.model_dump_json(), cfg.train.img_size))


def _run_fit(cfg: TrialConfig, device: Any) -> TrialResult:
    from engine.data.tensors import ImageTensors, TensorLoader
    from engine.device import autocast_context
    from engine.seed import seed_everything
    from engine.train.loop import evaluate, fit
    from engine.train.transfer import build_model

    tc = cfg.train
    fit_on, eval_on = split_samples(cfg)
    x_tr, y_tr, skip_tr = _tensors(fit_on, tc.img_size)
    x_ev, y_ev, skip_ev = _tensors(eval_on, tc.img_size)
    seed_everything(tc.seed)
    model = build_model(_backbone(cfg), tc.method, cfg.num_classes, **tc.model_options())
    t0 = time.perf_counter()
    if cfg.phase == "search":
        res = fit(model, ImageTensors(x_tr, y_tr), ImageTensors(x_ev, y_ev), tc, device=device)
        acc = float(res.final_val_acc)
    else:
        # fit evaluates after every epoch; on a large test split that would cost more than training, so the
        # final run monitors a small slice of its own training data and the test split is evaluated once.
        monitor = ImageTensors(x_tr[:FINAL_MONITOR_IMAGES], y_tr[:FINAL_MONITOR_IMAGES])
        res = fit(model, ImageTensors(x_tr, y_tr), monitor, tc, device=device)
        loader = TensorLoader(ImageTensors(x_ev, y_ev), batch_size=max(64, tc.batch_size), device=device,
                              normalization=tc.normalization)
        acc = float(evaluate(model, loader, autocast=autocast_context(device, tc.precision), device=device).accuracy)
        if res.diverged and (tc.on_divergence == "zero" or not res.val_accs):
            acc = 0.0  # no finite epoch to keep (or the zero policy): the run scores 0, as in the search phase
    wall = time.perf_counter() - t0
    return TrialResult(
        key=cfg.key, config=cfg, eval_split="val" if cfg.phase == "search" else "test",
        eval_acc=acc, n_train=len(y_tr), n_eval=len(y_ev), n_skipped=skip_tr + skip_ev,
        losses=[_finite(v) for v in res.train_losses], wall_s=wall,
        train_images_per_s=float(res.images_per_s), device=str(device), versions=versions())


def _run_batched(cfgs: Sequence[TrialConfig], device: Any, max_rows: int) -> list[TrialResult]:
    from engine.train.batched_vpt import VptRunSpec, fit_batched_vpt

    first = cfgs[0]
    fit_on, eval_on = split_samples(first)
    x_tr, y_tr, skip_tr = _tensors(fit_on, first.train.img_size)
    x_ev, y_ev, skip_ev = _tensors(eval_on, first.train.img_size)
    specs = [VptRunSpec(lr=c.train.lr, weight_decay=c.train.weight_decay, seed=c.train.seed) for c in cfgs]
    t0 = time.perf_counter()
    out = fit_batched_vpt(_backbone(first), (x_tr, y_tr), (x_ev, y_ev), specs, first.train,
                          num_classes=first.num_classes, device=device,
                          config_chunk=max(1, max_rows // first.train.batch_size))
    wall = time.perf_counter() - t0
    vers = versions()
    return [TrialResult(key=c.key, config=c, eval_split="val" if c.phase == "search" else "test",
                        eval_acc=float(r.eval_acc or 0.0), n_train=len(y_tr),
                        n_eval=len(y_ev), n_skipped=skip_tr + skip_ev, losses=[_finite(v) for v in r.losses],
                        wall_s=wall,
                        train_images_per_s=r.train_images_per_s, group_size=len(cfgs), device=str(device),
                        versions=vers) for c, r in zip(cfgs, out, strict=True)]


def run_trials(cfgs: Sequence[TrialConfig], device: str = "auto", *, max_rows: int = 512) -> list[TrialResult]:
    """Run one unit of work: a single trial, or a batched-VPT group (same :func:`group_key`).

    Args:
        cfgs: one config, or several sharing a :func:`group_key`.
        device: ``"auto"``, ``"cpu"``, ``"cuda:1"`` ... (resolved here, inside the worker).
        max_rows: sequences per forward pass in a batched group (bounds memory; results unchanged).

    Returns:
        One :class:`TrialResult` per config, in order.

    Raises:
        ConfigError: an empty unit, or configs that cannot train together.
    """
    from engine.device import resolve_device

    if not cfgs:
        raise ConfigError("run_trials needs at least one config")
    dev = resolve_device(device)
    if len(cfgs) == 1 and cfgs[0].engine == "fit":
        return [_run_fit(cfgs[0], dev)]
    keys = {group_key(c) for c in cfgs}
    if None in keys or len(keys) != 1:
        raise ConfigError("only batched VPT trials that differ in lr, weight decay and seed can run together")
    return _run_batched(list(cfgs), dev, max_rows)
