"""The VTAB-1k protocol of Han et al. (ICLR 2024) as constants, plus a documented ``quick`` smoke version.

Paper protocol (Sec. 4.1 and the authors' ``tune_vtab.py``, ANCHORS section 1):

* hyper-parameters are searched on the 800/200 train/val split, one run per grid point;
* the best point (highest val accuracy; ties go to the smaller learning rate, then the smaller weight
  decay) is retrained on ``train800val200`` (1000 images) with the five seeds :data:`FINAL_SEEDS` and
  tested on the full test split; the reported number is the mean of the five runs;
* VPT: SGD with momentum 0.9, batch 64, lr grid :data:`VPT_LRS` x wd grid :data:`WEIGHT_DECAYS`;
* FT: AdamW, batch 128 (the README commands), lr grid :data:`FT_LRS` x the same wd grid;
* every grid learning rate is multiplied by ``batch_size / 256`` (the code's hidden rescale);
* 100 epochs including 10 linear warm-up epochs, cosine decay; fp32.

Training details follow the original code by default (per-sample prompt-dropout masks, warm-up/cosine
stepped per epoch with epoch 0 at lr 0, the original head init, backbone dropout 0.1 for FT, a diverged run
keeps its last finite evaluation, sizes below 800 take the first k of the split lists); each is a field with
the other choice as an option. ``benchmarks/vtab/README.md`` tabulates them with the source lines read.

Quirk of the original code kept out on purpose: its ``src/solver/optimizer.py`` replaces any positive
AdamW weight decay by 0.01, so the FT wd grid effectively had only {0.01, 0}. We apply the nominal grid
value; ``Protocol.ft_wd_quirk=True`` reproduces the original behaviour (duplicate points are merged).

``quick`` is a smoke test of the whole pipeline (big_vision's quick-test switch), not a reproduction: a
2-point grid per method, 2 epochs, capped splits and two final seeds. Its numbers are meaningless.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError

from engine.config import FrozenModel
from engine.config.train import FT_DROPOUT, PAPER_SEEDS, DivergencePolicy, HeadInit, LrSchedule, Normalization, PromptDropoutMode
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
    "METHODS",
    "MethodName",
    "ProtocolName",
    "SubsetMode",
    "DETAIL_FIELDS",
    "parse_detail_overrides",
    "Protocol",
    "get_protocol",
    "split_sizes",
    "select_best",
]

SEARCH_SPLIT: tuple[int, int] = (800, 200)
"""Train/val sizes of the hyper-parameter search (VTAB-1k ``train800`` / ``val200``)."""
FINAL_SPLIT: str = "train800val200"
"""Training list of the final runs (tested on ``test``)."""
METHODS: dict[str, str] = {"ft": "full", "vpt": "vpt-deep"}
"""CLI method name -> engine transfer method (the paper uses VPT-deep); both are aliases in the method registry."""
_SPECS = {key: get_method(name) for key, name in METHODS.items()}


def _paper_setting(key: str) -> tuple[tuple[float, ...], int]:
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

MethodName = Literal["ft", "vpt"]
ProtocolName = Literal["paper", "quick"]
SubsetMode = Literal["first-k", "stratified"]


class Protocol(FrozenModel):
    """Everything a sweep needs to know about the protocol; written next to every result."""

    name: ProtocolName = Field("paper", description="Protocol name.")
    vpt_lrs: tuple[float, ...] = Field(VPT_LRS, description="VPT base learning rates (before batch/256).")
    vpt_wds: tuple[float, ...] = Field(WEIGHT_DECAYS, description="VPT weight decays.")
    ft_lrs: tuple[float, ...] = Field(FT_LRS, description="FT base learning rates (before batch/256).")
    ft_wds: tuple[float, ...] = Field(WEIGHT_DECAYS, description="FT weight decays.")
    ft_wd_quirk: bool = Field(False, description="Reproduce the original code's AdamW wd (any wd > 0 -> 0.01).")
    epochs: int = Field(EPOCHS, ge=1, description="Training epochs of every run.")
    warmup_epochs: int = Field(WARMUP_EPOCHS, ge=0, description="Linear warm-up epochs.")
    vpt_batch_size: int = Field(_VPT_BATCH, ge=1, description="VPT batch size (paper: 64).")
    ft_batch_size: int = Field(_FT_BATCH, ge=1, description="FT batch size (README FT commands: 128).")
    lr_scale_batch: bool = Field(True, description="Multiply every lr by batch/256 as the paper's code does.")
    search_seed: int = Field(SEARCH_SEED, description="Seed of the grid-search runs.")
    final_seeds: tuple[int, ...] = Field(FINAL_SEEDS, description="Seeds of the final runs.")
    prompt_dropout: float = Field(_SPECS["vpt"].prompt_dropout, ge=0, lt=1,
                                  description="VPT prompt dropout (README commands: 0.1).")
    max_prompts: int | None = Field(None, ge=1, description="Cap on the paper's per-task prompt length.")
    img_size: int = Field(224, ge=8, description="Input resolution (direct resize, no crop).")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Forward precision (paper: fp32).")
    normalization: Normalization = Field(
        "imagenet", description="Input mean/std (VPT's VTAB loader: imagenet); see TrainConfig.normalization.")
    max_train: int | None = Field(None, ge=1, description="Cap on training images per run (None = all).")
    max_eval: int | None = Field(None, ge=1, description="Cap on val/test images per run (None = all).")
    subset: SubsetMode = Field(
        "first-k", description="Sizes below 800: the first n of train800 / n/4 of val200 (VTAB-1k's train[:800] "
        "style), or a class-stratified draw (seed sample_seed).")
    prompt_dropout_mode: PromptDropoutMode = Field(
        "per-sample", description="Prompt-dropout masks per image (the original) or one per batch (shared).")
    lr_schedule: LrSchedule = Field(
        "per-epoch", description="Warm-up/cosine stepped per epoch, epoch 0 at lr 0 (the original), or per step.")
    head_init: HeadInit = Field("vpt", description="Head init: the original's (vpt) or nn.Linear's (torch).")
    ft_dropout: float = Field(FT_DROPOUT, ge=0, lt=1,
                              description="FT backbone dropout (original ViT-B/16 config: 0.1; timm default: 0).")
    on_divergence: DivergencePolicy = Field(
        "last-finite", description="A diverged run keeps its last finite evaluation (the original) or scores 0.")

    def grid(self, method: MethodName) -> list[tuple[float, float]]:
        """The (lr, wd) points of ``method``'s search, duplicates from ``ft_wd_quirk`` merged."""
        if method == "vpt":
            return [(lr, wd) for lr in self.vpt_lrs for wd in self.vpt_wds]
        wds = self.ft_wds
        if self.ft_wd_quirk:
            wds = tuple(dict.fromkeys(0.01 if wd > 0 else 0.0 for wd in wds))
        return [(lr, wd) for lr in self.ft_lrs for wd in wds]

    def batch_size(self, method: MethodName) -> int:
        """Batch size of ``method``."""
        return self.vpt_batch_size if method == "vpt" else self.ft_batch_size


_PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(),
    "quick": Protocol(
        name="quick", vpt_lrs=(2.5, 0.25), vpt_wds=(0.001,), ft_lrs=(1e-3, 1e-4), ft_wds=(0.0001,),
        epochs=2, warmup_epochs=1, final_seeds=FINAL_SEEDS[:2], max_prompts=10, max_train=200, max_eval=200,
    ),
}


DETAIL_FIELDS: tuple[str, ...] = (
    "subset", "prompt_dropout_mode", "lr_schedule", "head_init", "ft_dropout", "on_divergence")
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
        out[key] = float(value) if key == "ft_dropout" and _is_number(value) else value
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def get_protocol(name: str, **overrides: object) -> Protocol:
    """Return the named protocol, optionally with fields replaced (e.g. ``img_size=32`` for tests).

    Raises:
        ConfigError: unknown name or override field.
    """
    if name not in _PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(_PROTOCOLS)}")
    if not overrides:
        return _PROTOCOLS[name]
    unknown = set(overrides) - set(Protocol.model_fields)
    if unknown:
        raise ConfigError(f"unknown protocol field(s) {sorted(unknown)}; known: {', '.join(Protocol.model_fields)}")
    try:
        return Protocol.model_validate({**_PROTOCOLS[name].model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
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
