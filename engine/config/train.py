"""Training and pilot configurations, with the paper code's optimiser choices as named fields.

The Elephant paper's code (inherited from VPT) trains prompts and heads with SGD (momentum 0.9,
10 warm-up epochs) and full fine-tuning with AdamW (5 warm-up epochs), both with a cosine
schedule, and scales every grid learning rate by ``batch_size / 256``. Those choices live in the
method registry (``engine.train.methods``) and become fields here through
:meth:`TrainConfig.for_method`, so nothing is hidden in the loop.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from engine.config import FrozenModel
from engine.errors import ConfigError, UnknownNameError
from engine.train.methods import Method, get_method
from engine.train.power import ASSUMED_DISCORDANCE, ASSUMED_SEED_SD
from engine.vocab import Precision

__all__ = [
    "BackboneSpec",
    "TrainConfig",
    "PilotConfig",
    "PAPER_SEEDS",
    "DEFAULT_BACKBONE",
    "Normalization",
    "LR_SCALE_BATCH",
    "ADAMW_EPS",
    "scale_lr",
    "DEFAULT_NUM_PROMPTS",
    "MAX_NUM_PROMPTS",
    "MAX_IMG_SIZE",
    "QUICK_EPOCHS",
    "DEFAULT_MIN_DETECTABLE",
    "DEFAULT_BUDGET",
    "method_defaults",
    "parse_budget",
    "PromptDropoutMode",
    "LrSchedule",
    "HeadInit",
    "DivergencePolicy",
    "FT_DROPOUT",
]

PromptDropoutMode = Literal["per-sample", "shared"]
"""``per-sample``: every image of a batch gets its own prompt-dropout mask (the original applies dropout
after expanding the prompts to the batch, KMnP/vpt ``src/models/vit_prompt/vit.py`` lines 82 and 114-115);
``shared``: one mask per prompt set for the whole batch."""

LrSchedule = Literal["per-epoch", "per-step"]
"""``per-epoch``: the warm-up/cosine factor changes once per epoch and epoch 0 runs at the warm-up's start
value 0 (KMnP/vpt ``src/solver/lr_scheduler.py`` lines 56-65, stepped at ``src/engine/trainer.py`` line 221);
``per-step``: a smooth per-optimiser-step version (the pilot's short runs use it)."""

HeadInit = Literal["vpt", "torch"]
"""``vpt``: head weight ~ kaiming-normal (fan-out), bias -log(99) (KMnP/vpt ``src/models/mlp.py`` lines 52-57,
used with ``special_bias=True`` by ``src/models/vit_models.py`` lines 159-165); ``torch``: ``nn.Linear``'s default."""

DivergencePolicy = Literal["last-finite", "zero"]
"""``last-finite``: a run whose loss becomes non-finite stops and keeps its last finite evaluation (and its
parameters from then); ``zero``: it scores 0 %."""

FT_DROPOUT = 0.1
"""Dropout after the position embedding and inside every MLP block while the backbone trains end to end: the
original ViT-B/16 config's ``dropout_rate`` (KMnP/vpt ``src/configs/vit_configs.py`` line 35; attention dropout
is 0.0, line 34)."""

DEFAULT_BACKBONE = "vit_base_patch16_224.orig_in21k"
"""timm name of the original Google ImageNet-21k ViT-B/16 (VPT's ``imagenet21k_ViT-B_16.npz``); the default
backbone of the pilot, ``reproduce-vtab`` and ``engine.train.models.create_backbone``."""

Normalization = Literal["imagenet", "inception"]
"""Input mean/std choices (``engine.data.tensors.NORMALIZATION``)."""

ADAMW_EPS = 1e-6
"""AdamW's epsilon in the paper's code: its own ``AdamW`` class defaults to ``eps=1e-6`` (KMnP/vpt
``src/solver/optimizer.py``, class ``AdamW``, taken from Hugging Face transformers) and ``make_optimizer`` never
passes another; torch's default is 1e-8. It bounds the step of weights whose gradients are tiny."""

LR_SCALE_BATCH = 256
"""The paper's code (from VPT) trains with ``lr * batch_size / 256`` for every grid lr (ANCHORS section 1)."""


def scale_lr(lr: float, batch_size: int, enabled: bool = True) -> float:
    """The learning rate the optimiser gets: ``lr * batch_size / LR_SCALE_BATCH`` when ``enabled``."""
    return lr * batch_size / LR_SCALE_BATCH if enabled else lr


PAPER_SEEDS: tuple[int, ...] = (42, 44, 82, 100, 800)
"""The final-run seeds of the paper's ``tune_vtab.py``; pilot trial ``i`` uses ``PAPER_SEEDS[i]``."""

QUICK_EPOCHS = 2
"""Epochs per trial of a ``quick`` pilot: the fewest that still exercise a warm-up and a decay step."""

DEFAULT_NUM_PROMPTS = 10
"""Prompt length when no VTAB task names the paper's per-task length (VPT's README examples use 10)."""

MAX_NUM_PROMPTS = 1000
"""Largest prompt length accepted: 5x the longest the paper uses (200, App. E). Prompts are tokens of the
sequence, so a length used by mistake as a size (1e9) would exhaust memory instead of failing."""

MAX_IMG_SIZE = 1024
"""Largest input size accepted: above every timm ViT's pretrained resolution (at most 518). The sequence
grows with the square of the size, so a size typed by mistake (100000) would exhaust memory."""


def method_defaults(method: str) -> dict[str, Any]:
    """The paper code's optimiser settings for ``method``, from its registry entry."""
    spec = get_method(method)
    return {"optimizer": spec.optimizer, "lr": spec.lr, "weight_decay": spec.weight_decay,
            "warmup_epochs": spec.warmup_epochs, "prompt_dropout": spec.prompt_dropout}


DEFAULT_BUDGET = "15m"
"""Default pilot time budget (``--budget``): about what a user waits for an answer before a coffee is done; a
budget too small for the asked difference is refused up front with the budget that would suffice."""

DEFAULT_MIN_DETECTABLE = 3.0
"""Default --min-detectable in accuracy points (issue 11: below ~3 points a pilot rarely changes a choice)."""


class BackboneSpec(FrozenModel):
    """Which pretrained ViT a run starts from; shared by the pilot, ``reproduce-vtab`` and its trials."""

    model: str = Field(DEFAULT_BACKBONE, description="timm backbone name.")
    weights: Path | None = Field(None, description="Local .npz/.safetensors/.pth weights (instead of the hub).")
    random_init: bool = Field(False, description="Allow a random-init backbone (tests only; results meaningless).")
    init_seed: int = Field(0, description="Seed of a random-init backbone, so a rerun (and a resumed store) builds "
                           "the same one; recorded with every result.")
    model_kwargs: dict[str, int | float | bool | str] = Field(
        default_factory=dict, description="Extra timm.create_model arguments (e.g. depth for small test models).")


class TrainConfig(FrozenModel):
    """One training run (one method, one learning rate, one seed).

    ``num_prompts``, ``prompt_dropout``, ``prompt_dropout_mode``, ``ft_dropout`` and ``head_init`` shape the
    model: callers pass :meth:`model_options` to ``engine.train.transfer.build_model``; the loop applies the rest.
    """

    method: Method = Field("vpt-deep", description="Transfer method (a name in engine.train.methods).")
    epochs: int = Field(100, ge=1, description="Training epochs (the paper: 100).")
    warmup_epochs: int = Field(10, ge=0, description="Linear warm-up epochs before the cosine decay (VPT 10, FT 5).")
    batch_size: int = Field(64, ge=1, description="Images per optimiser step (paper: 64 for VPT).")
    lr: float = Field(1.0, gt=0, description="Base learning rate, before lr_scale_batch.")
    lr_scale_batch: bool = Field(
        True, description="Use lr * batch_size / 256 as the actual learning rate (the VPT/Elephant code scales "
        "every grid value this way; VTAB reproduction depends on it).")
    weight_decay: float = Field(1e-3, ge=0, description="Weight decay (not applied to 1-D parameters: biases, norms).")
    optimizer: Literal["sgd", "adamw"] = Field(
        "sgd", description="sgd (momentum) for prompts/head as in VPT's code; adamw for full fine-tuning.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (VPT: 0.9).")
    adamw_eps: float = Field(ADAMW_EPS, gt=0, le=1e-3, description="AdamW epsilon (the original code's AdamW: 1e-6; "
                             "torch's default is 1e-8).")
    precision: Precision = Field(
        "fp32", description="Forward-pass precision: bf16 autocast (GPU default), fp16 (CUDA only, with a GradScaler).")
    seed: int = Field(PAPER_SEEDS[0], description="Seed for head/prompt init, batch order and dropout.")
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms (tests switch it on).")
    num_prompts: int = Field(DEFAULT_NUM_PROMPTS, ge=1, le=MAX_NUM_PROMPTS,
                             description="Prompt tokens per set (prompt methods).")
    prompt_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on prompts (VPT: 0.1 deep, 0 shallow).")
    img_size: int = Field(224, ge=8, le=MAX_IMG_SIZE,
                          description="Square input size images are resized to (no crop, as VTAB).")
    normalization: Normalization = Field(
        "imagenet", description="Input mean/std: imagenet (0.485,0.456,0.406)/(0.229,0.224,0.225) as VPT's VTAB "
        "loader, or inception (0.5,0.5,0.5)/(0.5,0.5,0.5) as timm's cfg for the Google weights.")
    frozen_eval: bool = Field(
        True, description="Keep a frozen backbone in eval() during training (dropout/drop-path off), as VPT does.")
    grad_checkpointing: bool = Field(False, description="Recompute blocks in backward to save activation memory.")
    ft_stage_epochs: int | None = Field(
        None, ge=1, description="ft-then-pt only: epochs of the fine-tuning stage (None = epochs).")
    ft_stage_lr: float = Field(5e-4, gt=0, description="ft-then-pt only: AdamW base lr of the fine-tuning stage.")
    ft_stage_weight_decay: float = Field(1e-2, ge=0, description="ft-then-pt only: fine-tuning-stage weight decay.")
    prompt_dropout_mode: PromptDropoutMode = Field(
        "per-sample", description="per-sample: each image gets its own prompt-dropout mask (the original); "
        "shared: one mask per batch.")
    lr_schedule: LrSchedule = Field(
        "per-epoch", description="per-epoch: warm-up/cosine stepped once per epoch, epoch 0 at the warm-up start "
        "value 0 (the original); per-step: stepped every optimiser step.")
    ft_dropout: float = Field(
        FT_DROPOUT, ge=0, lt=1, description="Backbone dropout (after the position embedding and in every MLP) "
        "while the backbone trains end to end: full and ft-then-pt's FT stage (original ViT-B/16 config: 0.1).")
    head_init: HeadInit = Field(
        "vpt", description="vpt: kaiming-normal fan-out weight, bias -log(99) (the original head); "
        "torch: nn.Linear's default init.")
    on_divergence: DivergencePolicy = Field(
        "last-finite", description="last-finite: a non-finite loss stops the run, which keeps its last finite "
        "evaluation and parameters (the original); zero: the run scores 0.")

    @classmethod
    def for_method(cls, method: Method, **overrides: Any) -> TrainConfig:
        """A config with the paper code's optimiser settings for ``method``, then ``overrides``."""
        return cls(method=method, **{**method_defaults(method), **overrides})

    def model_options(self) -> dict[str, Any]:
        """The keyword arguments of ``engine.train.transfer.build_model`` that this config decides."""
        return {"num_prompts": self.num_prompts, "prompt_dropout": self.prompt_dropout,
                "prompt_dropout_mode": self.prompt_dropout_mode, "ft_dropout": self.ft_dropout,
                "head_init": self.head_init}

    @property
    def effective_lr(self) -> float:
        """The learning rate the optimiser gets."""
        return scale_lr(self.lr, self.batch_size, self.lr_scale_batch)

    def scaled(self, lr: float) -> float:
        """Apply this config's batch scaling to another base lr (the FT stage of ft-then-pt)."""
        return scale_lr(lr, self.batch_size, self.lr_scale_batch)


_BUDGET_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s|min)?", re.IGNORECASE)


def parse_budget(text: str | float | int) -> float:
    """Parse ``"15m"``, ``"90s"``, ``"1h30m"`` or a bare number of minutes into seconds."""
    if isinstance(text, int | float):
        seconds = float(text) * 60
    else:
        s = text.strip().lower().replace(" ", "")
        pos, seconds, matched = 0, 0.0, False
        while pos < len(s):
            m = _BUDGET_RE.match(s, pos)
            if not m or m.end() == pos:
                raise ConfigError(f"cannot read budget {text!r}; use e.g. 15m, 90s, 1h30m")
            unit = (m.group(2) or "m").lower()
            seconds += float(m.group(1)) * {"h": 3600, "m": 60, "min": 60, "s": 1}[unit]
            pos, matched = m.end(), True
        if not matched:
            raise ConfigError(f"cannot read budget {text!r}; use e.g. 15m, 90s, 1h30m")
    if not math.isfinite(seconds):  # "999...9m" overflows to inf
        raise ConfigError(f"budget {str(text)[:40]!r} is not a finite time; use e.g. 15m, 90s, 1h30m")
    if seconds <= 0:
        raise ConfigError(f"budget must be positive, got {text!r}")
    return seconds


class PilotConfig(FrozenModel):
    """A pilot: short FT-vs-VPT runs on a subsample of the user's data within a time budget."""

    methods: tuple[Method, ...] = Field(("full", "vpt-deep"), min_length=1, description="Methods to compare.")
    backbone: BackboneSpec = Field(default_factory=BackboneSpec, description="The pretrained backbone.")
    num_prompts: int = Field(DEFAULT_NUM_PROMPTS, ge=1, le=MAX_NUM_PROMPTS, description="Prompt tokens per set.")
    seeds: int = Field(3, ge=1, le=len(PAPER_SEEDS), description="Seeds per (method, lr); PAPER_SEEDS[:seeds].")
    split_seed: int = Field(0, description="Seed of the stratified subsample and the 4:1 train/val split.")
    budget_s: float = Field(parse_budget(DEFAULT_BUDGET), gt=0,
                            description="Wall-clock budget in seconds for all trials.")
    precision: Precision = Field("fp32", description="Training precision.")
    batch_size: int = Field(64, ge=1, description="Images per step.")
    img_size: int | None = Field(None, ge=8, le=MAX_IMG_SIZE,
                                 description="Input size (None = the model's default, 224 for ViT-B/16).")
    max_samples: int = Field(1000, ge=10, description="Largest subsample (train+val); 1000 = VTAB-1k's 800/200.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Validation share of the subsample (4:1 as the paper).")
    epochs: int | None = Field(None, ge=1, description="Epochs per trial (None = chosen from the budget).")
    lr_grid: dict[str, tuple[float, ...]] | None = Field(
        None, description="Base learning rates per method (None = each method's pilot_lrs, trimmed by the budget).")
    workers: int = Field(0, ge=0, description="Image-decoding threads (0 = automatic).")
    deterministic: bool = Field(False, description="Deterministic algorithms (CPU tests).")
    grad_checkpointing: bool = Field(False, description="Gradient checkpointing in every trial.")
    quick: bool = Field(
        False, description="Smoke test of the whole pipeline (big_vision's quick-test switch): at most "
        "QUICK_EPOCHS epochs and the first lr of each method's grid. Results are meaningless.")
    min_detectable: float = Field(
        DEFAULT_MIN_DETECTABLE, gt=0, le=100,
        description="Smallest VPT-FT difference (points) the pilot must be able to detect to count as decisive.")
    assumed_discordance: float = Field(
        ASSUMED_DISCORDANCE, gt=0, le=1, description="Share of images FT and VPT disagree on, assumed when planning "
        "(engine.train.power.ASSUMED_DISCORDANCE).")
    assumed_seed_sd: float = Field(
        ASSUMED_SEED_SD, ge=0, le=100, description="Seed-to-seed SD (points) of a method's accuracy assumed when "
        "planning (engine.train.power.ASSUMED_SEED_SD); the verdict never counts the measured spread below it.")
    compare_fraction: float = Field(
        0.5, gt=0, lt=1, description="Largest share of the labeled images held out to compare the methods "
        "(never trained on, never used to pick the lr).")

    @model_validator(mode="after")
    def _check(self) -> PilotConfig:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods repeat: {self.methods}")
        for key in (self.lr_grid or {}):
            try:
                get_method(key)
            except UnknownNameError as exc:
                raise ValueError(f"lr_grid: {exc}") from None
        return self

    def grid_for(self, method: Method) -> tuple[float, ...]:
        """The full lr grid for ``method`` (before budget trimming)."""
        grid = tuple((self.lr_grid or {}).get(method) or get_method(method).pilot_lrs)
        return grid[:1] if self.quick else grid
