"""The VTAB-1k protocol of Han et al. (ICLR 2024) as constants, plus a documented ``quick`` smoke version.

Paper protocol (Sec. 4.1 and the authors' ``tune_vtab.py``, ANCHORS section 1):

* hyper-parameters are searched on the 800/200 train/val split, one run per grid point;
* the best point (highest val accuracy; ties go to the smaller learning rate, then the smaller weight
  decay) is retrained on ``train800val200`` (1000 images) with the five seeds :data:`FINAL_SEEDS` and
  tested on the full test split; the reported number is the mean of the five runs;
* VPT: SGD with momentum 0.9, batch 64, 10 warm-up epochs, lr grid :data:`VPT_LRS` x wd grid :data:`WEIGHT_DECAYS`;
* FT: batch 128 (the README commands), :data:`FT_WARMUP_EPOCHS` warm-up epochs (``base-finetune.yaml``), lr
  grid :data:`FT_LRS` x the same wd grid, with the optimiser the original code builds for each point
  (:func:`resolve_optimizer`): AdamW with weight decay 0.01 for every positive grid wd, and SGD with momentum
  0.9 and no weight decay at wd 0;
* every grid learning rate is multiplied by ``batch_size / 256`` (the code's hidden rescale);
* 100 epochs, cosine decay after the linear warm-up; fp32.

The optimiser rule is the original ``src/solver/optimizer.py`` (KMnP/vpt, inherited by VPT-or-FT), lines 36-50
and 100-137: the AdamW branch is taken only when the weight decay is positive, and then hard-codes 0.01; at
weight decay 0 every optimiser but ``adam`` becomes SGD with ``SOLVER.MOMENTUM`` (0.9). So a quarter of the
paper's FT grid points were SGD runs, and the three positive wds were one AdamW run (duplicates are merged
here). ``Protocol.optimizer_rule="nominal"`` trains AdamW with the nominal grid wd at every point instead.

Training details follow the original code by default (per-sample prompt-dropout masks, warm-up/cosine
stepped per epoch with epoch 0 at lr 0, the original head init, backbone dropout 0.1 for FT, a diverged run
keeps its last finite evaluation, sizes below 800 take the first k of the split lists); each is a field with
the other choice as an option. ``benchmarks/vtab/README.md`` tabulates them with the source lines read.

``quick`` is a smoke test of the whole pipeline (big_vision's quick-test switch), not a reproduction: a
2-point grid per method, 2 epochs, capped splits and two final seeds. Its numbers are meaningless.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, model_validator

from engine.config import FrozenModel
from engine.config.train import PAPER_SEEDS, TrainConfig, scale_lr
from engine.errors import ConfigError
from engine.train.methods import get_method

__all__ = [
    "SEARCH_SPLIT",
    "FINAL_SPLIT",
    "VPT_LRS",
    "FT_LRS",
    "WEIGHT_DECAYS",
    "FINAL_SEEDS",
    "SEARCH_SEED",
    "EPOCHS",
    "WARMUP_EPOCHS",
    "FT_WARMUP_EPOCHS",
    "ORIGINAL_ADAMW_WD",
    "OptimizerRule",
    "resolve_optimizer",
    "GridPoint",
    "METHODS",
    "MethodName",
    "ProtocolName",
    "SubsetMode",
    "DETAIL_FIELDS",
    "parse_detail_overrides",
    "TRIAL_FIELDS",
    "PAPER_TRAIN",
    "Protocol",
    "get_protocol",
    "shared_train_fields",
    "split_sizes",
    "select_best",
]

SEARCH_SPLIT: tuple[int, int] = (800, 200)
"""Train/val sizes of the hyper-parameter search (VTAB-1k ``train800`` / ``val200``)."""
FINAL_SPLIT: str = "train800val200"
"""Training list of the final runs (tested on ``test``)."""
MethodName = Literal["ft", "vpt"]
METHODS: dict[MethodName, str] = {"ft": "full", "vpt": "vpt-deep"}
"""CLI method name -> engine transfer method (the paper uses VPT-deep); both are aliases in the method registry."""
_SPECS = {key: get_method(name) for key, name in METHODS.items()}


def _paper_setting(key: MethodName) -> tuple[tuple[float, ...], int]:
    """``(search lrs, batch size)`` of a protocol method, from its registry entry (engine.train.methods)."""
    spec = _SPECS[key]
    if spec.paper_lrs is None or spec.paper_batch_size is None:
        raise ConfigError(f"method {spec.name} has no paper VTAB-1k setting in the registry")
    return spec.paper_lrs, spec.paper_batch_size


VPT_LRS, _VPT_BATCH = _paper_setting("vpt")
"""VPT's search grid and batch size (``MethodSpec.paper_lrs``/``paper_batch_size`` of vpt-deep)."""
FT_LRS, _FT_BATCH = _paper_setting("ft")
"""FT's search grid and batch size (of full)."""
WEIGHT_DECAYS: tuple[float, ...] = (0.01, 0.001, 0.0001, 0.0)
FINAL_SEEDS: tuple[int, ...] = PAPER_SEEDS
"""The five final-run seeds of the paper's ``tune_vtab.py`` (``engine.config.train.PAPER_SEEDS``)."""
SEARCH_SEED: int = PAPER_SEEDS[0]
"""Seed of every grid-search run (the paper does not state one; all grid points share the data order)."""
EPOCHS: int = 100
WARMUP_EPOCHS: int = 10
"""Warm-up epochs of VPT (``configs/base-prompt.yaml`` WARMUP_EPOCH 10; the paper's text says 10 for all models)."""
FT_WARMUP_EPOCHS: int = 5
"""Warm-up epochs of FT: ``configs/base-finetune.yaml`` WARMUP_EPOCH 5 (KMnP/vpt, and VPT-or-FT's copy), which every
per-task FT config inherits (``_BASE_``) and the FT commands do not override. The paper's text says 10 for all
models; we follow the code that produced the numbers, as for the optimiser rule (``Protocol.ft_warmup_epochs``)."""
ORIGINAL_ADAMW_WD: float = 0.01
"""The weight decay the original AdamW branch uses whatever positive wd the grid asks for (KMnP/vpt
``src/solver/optimizer.py`` line 43)."""

OptimizerRule = Literal["original", "nominal"]
"""``original``: the optimiser the original code builds for a grid point (:func:`resolve_optimizer`);
``nominal``: the method's own optimiser with the grid's weight decay at every point."""

ProtocolName = Literal["paper", "quick"]
SubsetMode = Literal["first-k", "stratified"]


TRIAL_FIELDS: tuple[str, ...] = (
    "method", "optimizer", "lr", "weight_decay", "seed", "batch_size", "num_prompts")
"""The :class:`~engine.config.train.TrainConfig` fields each trial sets itself (from the grid, the seeds, the
method's batch size and the task's prompt length); a protocol's ``train`` leaves them at their defaults."""

PAPER_TRAIN = TrainConfig(
    epochs=EPOCHS, warmup_epochs=WARMUP_EPOCHS, prompt_dropout=_SPECS["vpt"].prompt_dropout, img_size=224,
    precision="fp32", normalization="imagenet", lr_scale_batch=True)
"""The paper's training settings shared by every VTAB-1k trial (Sec. 4.1; ANCHORS section 1)."""


def resolve_optimizer(optimizer: Literal["sgd", "adamw"], weight_decay: float,
                      rule: OptimizerRule = "original") -> tuple[Literal["sgd", "adamw"], float]:
    """``(optimizer, weight decay)`` that a grid point trains with under ``rule``.

    ``original`` (KMnP/vpt ``src/solver/optimizer.py``): AdamW at a positive wd trains with
    :data:`ORIGINAL_ADAMW_WD` (lines 36-50); at wd 0 the AdamW branch is skipped and the run is SGD with momentum
    and no weight decay (lines 100-137). SGD points are unchanged. The rule is idempotent, so a resolved point
    resolves to itself.
    """
    if rule == "nominal" or optimizer == "sgd":
        return optimizer, weight_decay
    if weight_decay > 0:
        return "adamw", ORIGINAL_ADAMW_WD
    return "sgd", 0.0


class GridPoint(FrozenModel):
    """One point of a method's search grid and the run it becomes (the plan view lists them)."""

    lr: float = Field(description="Grid base learning rate (before batch/256).")
    weight_decay: float = Field(description="Grid weight decay as the grid names it.")
    optimizer: Literal["sgd", "adamw"] = Field(description="Optimiser the run trains with.")
    effective_weight_decay: float = Field(description="Weight decay the run trains with.")
    effective_lr: float = Field(description="Learning rate the optimiser gets (after batch/256).")
    momentum: float | None = Field(None, description="SGD momentum (None for AdamW).")
    same_run_as: tuple[float, float] | None = Field(
        None, description="(lr, wd) of an earlier grid point that trains the identical run (merged: trained once).")


class Protocol(FrozenModel):
    """Everything a sweep needs to know about the protocol; written next to every result.

    ``train`` holds the training settings every trial shares (epochs, schedule, precision, input, dropout, head
    init, divergence policy) as the one :class:`~engine.config.train.TrainConfig`; :meth:`trial_train` adds a
    trial's own method, lr, weight decay, seed, batch size and prompt length.
    """

    name: ProtocolName = Field("paper", description="Protocol name.")
    train: TrainConfig = Field(PAPER_TRAIN, description="Training settings shared by every trial; the fields "
                               "in TRIAL_FIELDS stay at their defaults (each trial sets them).")
    vpt_lrs: tuple[float, ...] = Field(VPT_LRS, description="VPT base learning rates (before batch/256).")
    vpt_wds: tuple[float, ...] = Field(WEIGHT_DECAYS, description="VPT weight decays.")
    ft_lrs: tuple[float, ...] = Field(FT_LRS, description="FT base learning rates (before batch/256).")
    ft_wds: tuple[float, ...] = Field(WEIGHT_DECAYS, description="FT weight decays.")
    optimizer_rule: OptimizerRule = Field(
        "original", description="original: the original code's optimiser per grid point (AdamW with wd 0.01 at "
        "any positive wd, SGD with momentum at wd 0); nominal: AdamW with the grid's wd at every FT point.")
    vpt_batch_size: int = Field(_VPT_BATCH, ge=1, description="VPT batch size (paper: 64).")
    ft_batch_size: int = Field(_FT_BATCH, ge=1, description="FT batch size (README FT commands: 128; the authors' "
                               "base-finetune.yaml: 224, KMnP/vpt's: 384).")
    ft_warmup_epochs: int = Field(FT_WARMUP_EPOCHS, ge=0, description="FT warm-up epochs (base-finetune.yaml: 5; "
                                  "the paper's text: 10). VPT uses train.warmup_epochs.")
    search_seed: int = Field(SEARCH_SEED, description="Seed of the grid-search runs.")
    final_seeds: tuple[int, ...] = Field(FINAL_SEEDS, description="Seeds of the final runs.")
    max_prompts: int | None = Field(None, ge=1, description="Cap on the paper's per-task prompt length.")
    max_train: int | None = Field(None, ge=1, description="Cap on training images per run (None = all).")
    max_eval: int | None = Field(None, ge=1, description="Cap on val/test images per run (None = all).")
    subset: SubsetMode = Field(
        "first-k", description="Sizes below 800: the first n of train800 / n/4 of val200 (VTAB-1k's train[:800] "
        "style), or a class-stratified draw (seed sample_seed).")

    @model_validator(mode="after")
    def _trial_fields_unset(self) -> Protocol:
        default = TrainConfig()
        set_here = [k for k in TRIAL_FIELDS if getattr(self.train, k) != getattr(default, k)]
        if set_here:
            raise ValueError(f"train.{set_here[0]} is set per trial (grid, seeds, batch sizes, prompt length); "
                             "leave it at its default in a protocol")
        return self

    def grid_points(self, method: MethodName) -> list[GridPoint]:
        """Every (lr, wd) point of ``method``'s grid with the optimiser and weight decay it trains with."""
        lrs, wds = (self.vpt_lrs, self.vpt_wds) if method == "vpt" else (self.ft_lrs, self.ft_wds)
        batch, spec = self.batch_size(method), _SPECS[method]
        seen: dict[tuple[float, float, str], tuple[float, float]] = {}
        out = []
        for lr in lrs:
            for wd in wds:
                optimizer, eff_wd = resolve_optimizer(spec.optimizer, wd, self.optimizer_rule)
                first = seen.setdefault((lr, eff_wd, optimizer), (lr, wd))
                out.append(GridPoint(
                    lr=lr, weight_decay=wd, optimizer=optimizer, effective_weight_decay=eff_wd,
                    effective_lr=scale_lr(lr, batch, self.train.lr_scale_batch),
                    momentum=self.train.momentum if optimizer == "sgd" else None,
                    same_run_as=None if first == (lr, wd) else first))
        return out

    def grid(self, method: MethodName) -> list[tuple[float, float]]:
        """The (lr, wd) runs of ``method``'s search, as trained: points that train the same run are merged.

        Under the ``original`` rule the FT weight decays are the ones the runs train with (0.01 or 0).
        """
        return [(p.lr, p.effective_weight_decay) for p in self.grid_points(method) if p.same_run_as is None]

    def batch_size(self, method: MethodName) -> int:
        """Batch size of ``method``."""
        return self.vpt_batch_size if method == "vpt" else self.ft_batch_size

    def trial_train(self, method: MethodName, *, lr: float, weight_decay: float, seed: int,
                    num_prompts: int) -> TrainConfig:
        """The training configuration of one trial: the shared ``train`` plus the trial's own fields.

        The optimiser is the method's registry entry resolved by ``optimizer_rule`` (:func:`resolve_optimizer`:
        FT at wd 0 trains with SGD under the original rule); a method without prompts gets no prompt dropout;
        FT warms up for ``ft_warmup_epochs``.
        """
        spec = _SPECS[method]
        optimizer, weight_decay = resolve_optimizer(spec.optimizer, weight_decay, self.optimizer_rule)
        own: dict[str, object] = dict(
            method=spec.name, optimizer=optimizer, lr=lr, weight_decay=weight_decay, seed=seed,
            batch_size=self.batch_size(method), num_prompts=num_prompts)
        if spec.prompts == "none":
            own["prompt_dropout"] = 0.0
        if method == "ft":
            own["warmup_epochs"] = self.ft_warmup_epochs
        return TrainConfig.model_validate({**self.train.model_dump(), **own})


_PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(),
    "quick": Protocol(
        name="quick", vpt_lrs=(2.5, 0.25), vpt_wds=(0.001,), ft_lrs=(1e-3, 1e-4), ft_wds=(0.0001,),
        train=TrainConfig.model_validate({**PAPER_TRAIN.model_dump(), "epochs": 2, "warmup_epochs": 1}),
        ft_warmup_epochs=1, final_seeds=FINAL_SEEDS[:2],
        max_prompts=10, max_train=200, max_eval=200,
    ),
}


DETAIL_FIELDS: tuple[str, ...] = (
    "subset", "prompt_dropout_mode", "lr_schedule", "head_init", "ft_dropout", "on_divergence", "optimizer_rule",
    "ft_warmup_epochs", "ft_batch_size", "adamw_eps")
"""Training details that follow the original code by default (benchmarks/vtab/README.md); the CLI can set them."""


def parse_detail_overrides(items: list[str] | None) -> dict[str, object]:
    """``["lr_schedule=per-step", "ft_dropout=0"]`` -> protocol overrides (values checked by :class:`Protocol`).

    Raises:
        ConfigError: not ``KEY=VALUE``, or a key outside :data:`DETAIL_FIELDS`.
    """
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise ConfigError(f"--protocol-set {item!r} must be KEY=VALUE, e.g. lr_schedule=per-step")
        if key not in DETAIL_FIELDS:
            raise ConfigError(f"--protocol-set cannot change {key!r}; choose from {', '.join(DETAIL_FIELDS)}")
        out[key] = float(value) if key in ("ft_dropout", "adamw_eps") and _is_number(value) else value
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def shared_train_fields() -> tuple[str, ...]:
    """The training settings a protocol sets for all its trials: TrainConfig's fields but :data:`TRIAL_FIELDS`."""
    return tuple(k for k in TrainConfig.model_fields if k not in TRIAL_FIELDS)


def get_protocol(name: str, **overrides: object) -> Protocol:
    """Return the named protocol, optionally with fields replaced (e.g. ``img_size=32`` for tests).

    An override names a :class:`Protocol` field (``subset``, ``final_seeds`` ...) or a shared training setting
    (``epochs``, ``img_size``, ``lr_schedule`` ...), which goes into ``Protocol.train``.

    Raises:
        ConfigError: unknown name or override field, or a value the field refuses.
    """
    if name not in _PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(_PROTOCOLS)}")
    if not overrides:
        return _PROTOCOLS[name]
    train_keys = shared_train_fields()
    known = [k for k in Protocol.model_fields if k != "train"] + list(train_keys)
    unknown = set(overrides) - set(known)
    if unknown:
        raise ConfigError(f"unknown protocol field(s) {sorted(unknown)}; known: {', '.join(known)}")
    base = _PROTOCOLS[name].model_dump()
    base["train"].update({k: v for k, v in overrides.items() if k in train_keys})
    base.update({k: v for k, v in overrides.items() if k not in train_keys})
    try:
        return Protocol.model_validate(base)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(x) for x in first["loc"]]
        field = ".".join(loc[1:] if loc[:1] == ["train"] and len(loc) > 1 else loc)
        raise ConfigError(f"protocol field {field}={first.get('input')!r}: {first['msg']}") from None


def split_sizes(n_train: int) -> tuple[int, int]:
    """Train/val sizes for a data-size point: the paper keeps train:val at 4:1 (800/200, 400/100 ...)."""
    if n_train < 4:
        raise ConfigError(f"training size {n_train} is too small; use at least 4 (train:val is 4:1)")
    return n_train, n_train // 4


def select_best(points: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Pick the best ``(lr, wd, val_acc)``: highest accuracy, ties to the smaller lr, then the smaller wd.

    Raises:
        ConfigError: no points.
    """
    if not points:
        raise ConfigError("no finished search trials to select from")
    return min(points, key=lambda p: (-p[2], p[0], p[1]))
