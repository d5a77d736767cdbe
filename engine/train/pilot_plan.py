"""Planning the pilot for power and time: three disjoint splits, sized to the budget and to the question.

The labeled images are split three ways (all stratified, deterministic for ``split_seed``):

* a **comparison** set, scored once per trial by the final model: FT and VPT are compared image by image
  on it (``engine.train.power``); it is never trained on and never used to pick anything;
* a **selection** set, evaluated every epoch, on which each method's learning rate is picked;
* a **training** set (selection + training are the old 4:1 subsample).

The plan first asks how many comparison images make ``min_detectable`` points detectable
(:func:`engine.train.power.compare_images_needed`), then fits comparison size, training size, epochs
and lr-grid size into the budget from the timing probe. When the budget or the labeled images cannot
reach ``min_detectable``, the plan says so (``decisive_by_design=False``) and names the budget and the
number of labeled images that would suffice; the caller decides whether to run it anyway.
"""

from __future__ import annotations

import math

from pydantic import Field

from engine.config import FrozenModel
from engine.config.train import DEFAULT_MIN_DETECTABLE, QUICK_EPOCHS, PilotConfig
from engine.data.index import Sample, stratified_subsample, train_val_split
from engine.errors import BudgetError
from engine.train.methods import Method, stages_of
from engine.train.pilot_timing import MethodTiming, epoch_seconds
from engine.train.power import (
    ALPHA,
    ASSUMED_DISCORDANCE,
    ASSUMED_SEED_SD,
    IMAGE_SHARE,
    POWER,
    compare_images_needed,
    min_detectable_difference,
    seeds_needed,
)

__all__ = ["TrialSpec", "PilotPlan", "Choice", "choose_plan", "split_samples", "estimate_seconds", "MDD_FORMULA",
           "DECODE_S_PER_IMAGE", "seeds_short"]

_SIZES = (10000, 5000, 2000, 1000, 800, 500, 400, 250, 200, 100, 50, 25)
_EPOCHS = (50, 30, 20, 10, 5, 3, 2, 1)
DECODE_S_PER_IMAGE = 0.01
"""Fallback cost of decoding + resizing one image (PIL, 224 px, one core); plans measure it on a few files."""
MDD_FORMULA = ("MDD = (z[1-alpha/2] + z[power]) * sqrt(p_d * (rho + (1-rho)/seeds) / n_compare "
               "+ 2 c * sigma_seed^2 / seeds) * 100; paired test on the same comparison images, p_d = share of "
               "images the methods disagree on, sigma_seed = seed-to-seed SD of a method's accuracy")


class TrialSpec(FrozenModel):
    """One pilot training run."""

    method: Method
    lr: float = Field(description="Base lr (before batch scaling).")
    seed: int


class PilotPlan(FrozenModel):
    """What the pilot will run, how long it should take, and the smallest difference it can detect."""

    request_key: str
    n_samples: int = Field(description="Training + selection images.")
    n_train: int
    n_val: int = Field(description="Selection images: evaluated every epoch, used to pick each method's lr.")
    n_compare: int = Field(0, description="Comparison images: scored once per trial, used only to compare methods.")
    n_labeled: int = Field(0, description="Labeled images available.")
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
    min_detectable: float = Field(math.inf, description="Smallest VPT-FT difference (points) this plan detects.")
    target_detectable: float = Field(DEFAULT_MIN_DETECTABLE,
                                     description="--min-detectable: the difference the user needs detectable.")
    decisive_by_design: bool = Field(False, description="min_detectable <= target_detectable.")
    compare_needed: int = Field(0, description="Comparison images that reach target_detectable.")
    sufficient_labeled: int | None = Field(None, description="Labeled images that would suffice (None: enough).")
    sufficient_budget_s: float | None = Field(None, description="Budget that would suffice (None: enough).")
    assumed_discordance: float = Field(ASSUMED_DISCORDANCE, description="p_d assumed by the power calculation.")
    assumed_seed_sd: float = Field(ASSUMED_SEED_SD, description="Seed-to-seed SD (points) assumed by the power "
                                   "calculation (engine.train.power.ASSUMED_SEED_SD).")
    indicative_only: bool = Field(False, description="One seed: the seed spread cannot be measured, so the verdict "
                                  "can only be indicative (engine.train.verdict).")
    seeds_needed: int | None = Field(None, description="Seeds that would let some number of images reach "
                                     "target_detectable, when these seeds cannot (None: they can, or not even 5).")
    alpha: float = ALPHA
    power: float = POWER
    image_share: float = IMAGE_SHARE
    mdd_formula: str = MDD_FORMULA
    probe_s: float = Field(0.0, description="Wall time of the timing probe (0 when every timing was cached).")
    decode_s_per_image: float = Field(DECODE_S_PER_IMAGE, description="Measured decode + resize seconds per image.")

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return len(self.trials)


class Choice(FrozenModel):
    """One candidate plan shape."""

    n_compare: int
    n: int
    epochs: int
    grid: int
    estimated_s: float


def _split_val(n: int, config: PilotConfig) -> tuple[int, int]:
    n_val = max(1, round(n * config.val_fraction))
    return n - n_val, n_val


def _trial_cost(t: MethodTiming, method: Method, epochs: int, n_train: int, n_val: int, n_compare: int,
                batch: int) -> float:
    eval_batch = max(batch, 64)  # the loop evaluates in batches of max(batch, 64)
    per_epoch = (epoch_seconds(t.train_s_per_step, t.train_s_per_image, n_train, batch)
                 + epoch_seconds(t.eval_s_per_step, t.eval_s_per_image, n_val, eval_batch))
    compare = epoch_seconds(t.eval_s_per_step, t.eval_s_per_image, n_compare, eval_batch)
    return t.setup_s + len(stages_of(method)) * epochs * per_epoch + compare


def estimate_seconds(timings: dict[str, MethodTiming], config: PilotConfig, *, n_compare: int, n: int, epochs: int,
                     grid: int, decode_s: float = DECODE_S_PER_IMAGE) -> float:
    """Estimated wall time: decoding once (``decode_s`` per image), then every trial (setup, epochs, comparison)."""
    n_train, n_val = _split_val(n, config)
    batch = min(config.batch_size, n_train)
    total = (n + n_compare) * decode_s
    for m in config.methods:
        g = min(grid, len(config.grid_for(m)))
        total += g * config.seeds * _trial_cost(timings[m], m, epochs, n_train, n_val, n_compare, batch)
    return total


def _options(cap: int, floor: int) -> list[int]:
    floor = min(floor, cap)
    return sorted({cap, floor, *(s for s in _SIZES if floor <= s <= cap)}, reverse=True)


def choose_plan(timings: dict[str, MethodTiming], config: PilotConfig, *, n_labeled: int, num_classes: int,
                decode_s: float = DECODE_S_PER_IMAGE) -> tuple[Choice, int]:
    """Pick (comparison size, training size, epochs, grid) for ``config.budget_s``; also return the needed size.

    Preference: a comparison set that reaches ``min_detectable``, then at least 5 epochs, then a larger
    comparison set (up to the training subsample's size), then more training data, up to 10 epochs, a
    larger grid, more epochs.

    Raises:
        BudgetError: not even the smallest pilot fits the budget.
    """
    needed = compare_images_needed(config.min_detectable, config.seeds, discordance=config.assumed_discordance,
                                   seed_sd=config.assumed_seed_sd)
    floor = max(2 * num_classes, 10)
    cmp_cap = max(1, min(needed, int(n_labeled * config.compare_fraction)))
    epochs_options = (config.epochs,) if config.epochs else (QUICK_EPOCHS,) if config.quick else _EPOCHS
    max_grid = max(len(config.grid_for(m)) for m in config.methods)
    best: tuple[tuple[int, ...], Choice] | None = None
    cheapest: Choice | None = None
    for n_cmp in _options(cmp_cap, num_classes):
        train_cap = min(n_labeled - n_cmp, config.max_samples)
        for n in _options(train_cap, floor):
            for e in epochs_options:
                for g in range(1, max_grid + 1):
                    est = estimate_seconds(timings, config, n_compare=n_cmp, n=n, epochs=e, grid=g, decode_s=decode_s)
                    choice = Choice(n_compare=n_cmp, n=n, epochs=e, grid=g, estimated_s=est)
                    if cheapest is None or est < cheapest.estimated_s:
                        cheapest = choice
                    if est > config.budget_s:
                        continue
                    # below the needed size, a comparison set larger than the training data buys little
                    score = (int(n_cmp >= needed), min(e, 5), min(n_cmp, n), n, min(e, 10), g, e)
                    if best is None or score > best[0]:
                        best = (score, choice)
    if best is None:
        assert cheapest is not None
        c = cheapest
        raise BudgetError(
            f"the budget of {config.budget_s / 60:.1f} min is too small: even {c.n} training + {c.n_compare} "
            f"comparison images x {c.epochs} epoch(s) x {config.seeds} seed(s) for {', '.join(config.methods)} "
            f"needs about {math.ceil(c.estimated_s / 60)} min here; raise --budget, use fewer --methods/--seeds, "
            "or a GPU")
    return best[1], needed


def sufficient(timings: dict[str, MethodTiming], config: PilotConfig, choice: Choice, needed: int,
               n_labeled: int, decode_s: float = DECODE_S_PER_IMAGE) -> tuple[int | None, float | None]:
    """(labeled images, budget seconds) that would reach ``min_detectable`` with the chosen training plan."""
    if choice.n_compare >= needed:
        return None, None
    images = needed + choice.n
    budget = estimate_seconds(timings, config, n_compare=needed, n=choice.n, epochs=choice.epochs, grid=choice.grid,
                              decode_s=decode_s)
    # Name only what is short: a budget the user already has is not advice (the images are the limit then).
    return (images if images > n_labeled else None), (budget if budget > config.budget_s else None)


def mdd_of(config: PilotConfig, n_compare: int) -> float:
    """The plan's minimum detectable difference (points) at ``n_compare`` images and ``config.seeds``."""
    return min_detectable_difference(n_compare, config.seeds, discordance=config.assumed_discordance,
                                     seed_sd=config.assumed_seed_sd)


def seeds_short(config: PilotConfig) -> int | None:
    """Seeds that ``min_detectable`` needs when ``config.seeds`` cannot reach it with any number of images."""
    need = seeds_needed(config.min_detectable, seed_sd=config.assumed_seed_sd)
    return need if need is not None and need > config.seeds else None


def split_samples(samples: list[Sample], config: PilotConfig, *, n_compare: int,
                  n: int) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, selection, comparison): comparison drawn first, then the training subsample from the rest."""
    compare = stratified_subsample(samples, n_compare, seed=config.split_seed + 1) if n_compare else []
    held = {id(s) for s in compare}
    rest = [s for s in samples if id(s) not in held]
    chosen = stratified_subsample(rest, n, seed=config.split_seed)
    train, val = train_val_split(chosen, val_fraction=config.val_fraction, seed=config.split_seed)
    return train, val, compare
