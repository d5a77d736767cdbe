"""The pilot's timing probe: a few measured steps per method, at most ``PROBE_BUDGET_S`` in all, cached.

A step costs a fixed overhead plus a per-image part, so timing one small batch and reading the
per-image cost off it overestimates large-batch runs (the old probe at batch 4 was 2.5x too
pessimistic for batch-64 runs). The probe times batch 2 and the largest batch (up to the real one)
that its time budget affords, and fits ``t(B) = per_step + B * per_image`` for training and evaluation;
a trial's epoch then costs ``ceil(n / B) * per_step + n * per_image``. Results are cached per device
(CPU model and threads, or GPU name), model, method, image size, prompts and precision, in the data home, so the probe
runs once per setup; finished pilot trials then overwrite the training cost with what they measured
(``timing_from_trials``), so a noisy probe does not mislead later plans.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import Field, ValidationError
from torch import nn

from engine.config import FrozenModel
from engine.data.tensors import ImageTensors, TensorLoader
from engine.device import Precision, autocast_context
from engine.io import atomic_write_text, json_digest
from engine.train.loop import evaluate, make_optimizer, make_scheduler, train_one_epoch
from engine.train.methods import Method, stages_of, uses_sgd
from engine.train.transfer import build_model, configure_trainable, set_train_mode

__all__ = ["MethodTiming", "PROBE_BUDGET_S", "measure_method_timing", "timing_cache_key", "cached_timing",
           "store_timing", "epoch_seconds", "timing_from_trials"]

logger = logging.getLogger(__name__)

PROBE_BUDGET_S = 10.0
"""Wall-time cap of the whole probe, all methods together (issue 11: at most 10 s)."""
_FIRST_BATCH = 2
"""First probe batch: on a CPU a batch of 1 overstates the per-image cost (ViT-B/16 FT ~1.4x, measured)."""
_MAX_REPEATS = 5
"""Timed repeats per point when the budget allows (their median counts)."""


class MethodTiming(FrozenModel):
    """Measured cost of one method on this device: ``t(B) = per_step + B * per_image``."""

    method: Method
    train_s_per_image: float = Field(description="Seconds per training image (forward, backward, step).")
    eval_s_per_image: float = Field(description="Seconds per evaluated image.")
    setup_s: float = Field(description="Seconds to copy the backbone and build the model (per trial).")
    batch: int = Field(description="Largest batch size the probe used.")
    train_s_per_step: float = Field(0.0, ge=0, description="Fixed seconds per training step (any batch size).")
    eval_s_per_step: float = Field(0.0, ge=0, description="Fixed seconds per evaluation batch.")
    probe_s: float = Field(0.0, ge=0, description="Wall time the probe took (0 when read from the cache).")
    source: str = Field("probe", description="probe, cache, or trial (measured in a real pilot trial).")
    probe_batches: tuple[int, ...] = Field((), description="Training batch sizes the probe timed.")
    timed_runs: int = Field(0, ge=0, description="Warm timed training steps behind the probe's figures (0: only "
                            "the first, cold step fitted in the probe's time).")

    @property
    def probe_note(self) -> str:
        """Which probe the figures come from, in a few words (the plan names it)."""
        if self.source == "trial":
            return "timed by earlier pilot trials"
        batches = "+".join(str(b) for b in self.probe_batches) or str(self.batch)
        runs = f"{self.timed_runs} warm steps" if self.timed_runs else "one cold step"
        return f"{'cached ' if self.source == 'cache' else ''}probe at batch {batches} ({runs})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _line(points: dict[int, float]) -> tuple[float, float]:
    """(per_step, per_image) through the two (batch, seconds) points; proportional with one point."""
    if len(points) < 2:
        (b, t), = points.items()
        return 0.0, t / b
    (b1, t1), (b2, t2) = sorted(points.items())
    per_image = max((t2 - t1) / (b2 - b1), 1e-9)
    return max(0.0, t1 - b1 * per_image), per_image


def _second_batch(t1: float, b1: int, batch_size: int, *, per_point_s: float) -> int:
    """The largest batch up to ``batch_size`` whose step (extrapolated from ``t1``) fits ``per_point_s``.

    Timing the real batch where it is affordable (GPUs, small models) makes the line exact there;
    on a CPU with ViT-B/16 the budget allows a few images only, and the line extrapolates.
    """
    if t1 <= 0:
        return batch_size
    return max(b1, min(batch_size, int(per_point_s / (t1 / b1))))


class _Probe:
    """One method's model, optimizer and the real loop functions, timed on random uint8 images."""

    def __init__(self, model: nn.Module, method: Method, *, num_classes: int, img_size: int, precision: Precision,
                 device: torch.device, deadline: float) -> None:
        self.model, self.device, self.deadline = model, device, deadline
        self.num_classes, self.img_size = num_classes, img_size
        self.optimizer = make_optimizer(model, kind="sgd" if uses_sgd(method) else "adamw", lr=1e-6,
                                        weight_decay=0.0, device=device)
        self.scheduler = make_scheduler(self.optimizer, warmup_steps=0, total_steps=1000)
        self.autocast = autocast_context(device, precision)
        self.warm_runs = 0
        """Warm timed runs behind the last measurement (0: only the cold first run)."""

    def _loader(self, b: int) -> TensorLoader:
        gen = torch.Generator().manual_seed(b)
        data = ImageTensors(torch.randint(0, 256, (b, 3, self.img_size, self.img_size), generator=gen,
                                          dtype=torch.uint8), torch.randint(0, self.num_classes, (b,), generator=gen))
        return TensorLoader(data, batch_size=b, device=self.device)

    def _timed(self, fn: Callable[[], object]) -> float:
        """Median of up to _MAX_REPEATS runs while the budget lasts.

        The first run pays for allocations and kernel selection: it is discarded when cheap, and kept
        (as the only measurement) when it is expensive and the budget allows no second run, which
        errs on the long side. The median, not the minimum: a pilot runs for minutes on a machine that
        also does other work, and its steps cost what a typical step costs.
        """
        t = time.perf_counter()
        fn()
        _sync(self.device)
        cold = time.perf_counter() - t
        times: list[float] = []
        while len(times) < _MAX_REPEATS and time.perf_counter() + (times[-1] if times else cold) <= self.deadline:
            t = time.perf_counter()
            fn()
            _sync(self.device)
            times.append(time.perf_counter() - t)
        self.warm_runs = len(times)
        return statistics.median(times) if times else cold

    def train(self, b: int) -> float:
        """Seconds of one training step at batch ``b`` through ``train_one_epoch`` (loader, scheduler included)."""
        loader = self._loader(b)
        set_train_mode(self.model)
        return self._timed(lambda: train_one_epoch(self.model, loader, self.optimizer, self.scheduler,
                                                   autocast=self.autocast, device=self.device))

    def eval(self, b: int) -> float:
        """Seconds of evaluating one batch of ``b`` through ``evaluate``."""
        loader = self._loader(b)
        return self._timed(lambda: evaluate(self.model, loader, autocast=self.autocast, device=self.device))


def measure_method_timing(
    backbone: nn.Module,
    method: Method,
    *,
    num_classes: int,
    num_prompts: int,
    batch_size: int,
    img_size: int,
    precision: Precision,
    device: torch.device,
    budget_s: float = PROBE_BUDGET_S,
) -> MethodTiming:
    """Time training and evaluation at batch 1 and the largest affordable batch, within ``budget_s``.

    Steps go through the real loop (``train_one_epoch``/``evaluate`` over a ``TensorLoader``), so the
    loader, scheduler and bookkeeping are in the measurement. The backbone is copied, never modified.
    For ``ft-then-pt`` the slower (fine-tuning) stage is timed.
    """
    t0 = time.perf_counter()
    model = build_model(copy.deepcopy(backbone), method, num_classes, num_prompts=num_prompts)
    if len(stages_of(method)) > 1:
        configure_trainable(model, method, stage="ft")
    model.to(device)
    setup_s = time.perf_counter() - t0
    probe = _Probe(model, method, num_classes=num_classes, img_size=img_size, precision=precision, device=device,
                   deadline=t0 + budget_s)
    b1 = min(_FIRST_BATCH, batch_size)
    train = {b1: probe.train(b1)}
    warm = probe.warm_runs
    b2 = _second_batch(train[b1], b1, batch_size, per_point_s=(probe.deadline - time.perf_counter()) / 4)
    if b2 > b1:
        train[b2] = probe.train(b2)
        warm += probe.warm_runs
    evals: dict[int, float] = {}
    if time.perf_counter() < probe.deadline:
        evals[b1] = probe.eval(b1)
        if b2 > b1 and time.perf_counter() < probe.deadline:
            evals[b2] = probe.eval(b2)
    del model, probe
    t_step, t_img = _line(train)
    # out of time: forward-only cost from the step's FLOP split (backward = 2x forward when weights train,
    # 1x when only prompts and head do, as in benchmarks.perf.train_throughput.vit_step_flops)
    share = 1 / 2 if uses_sgd(method) else 1 / 3
    e_step, e_img = _line(evals) if evals else (t_step * share, t_img * share)
    return MethodTiming(method=method, train_s_per_image=t_img, eval_s_per_image=e_img, setup_s=setup_s,
                        batch=max(train), train_s_per_step=t_step, eval_s_per_step=e_step,
                        probe_s=time.perf_counter() - t0, source="probe", probe_batches=tuple(sorted(train)),
                        timed_runs=warm)


def timing_from_trials(probe: MethodTiming, fits: list[tuple[float, float, int]]) -> MethodTiming:
    """``probe`` with training and evaluation costs replaced by what real trials measured.

    Each entry of ``fits`` is ``(images_per_s, eval_seconds, eval_images)`` of one trial: its training
    throughput at the real batch size, and the rest of its wall time (evaluations plus per-epoch
    bookkeeping) over the images it evaluated, which is how the estimate scales that rest.
    """
    fits = [f for f in fits if f[0] > 0]
    if not fits:
        return probe
    update: dict[str, object] = {"train_s_per_image": 1.0 / statistics.median(f[0] for f in fits),
                                 "train_s_per_step": 0.0, "probe_s": 0.0, "source": "trial"}
    evals = [max(0.0, e) / n for _, e, n in fits if n > 0]
    if evals:
        update.update(eval_s_per_image=statistics.median(evals), eval_s_per_step=0.0)
    return probe.model_copy(update=update)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} x{torch.get_num_threads()} threads"


def timing_cache_key(device: torch.device, model: str, model_kwargs: dict[str, object], method: Method, *,
                     img_size: int, num_prompts: int, precision: str, batch_size: int) -> str:
    """The cache key: device (CPU model + threads, or GPU), model, method, image size, prompts, precision, batch."""
    parts = {"device": _device_name(device), "model": model, "kwargs": model_kwargs, "method": method,
             "img_size": img_size, "prompts": num_prompts, "precision": precision, "batch": batch_size,
             "torch": torch.__version__}
    return json_digest(parts, 20)


def _read_cache(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_timing(path: Path | None, key: str) -> MethodTiming | None:
    """The cached timing under ``key`` (None when absent or unreadable)."""
    if path is None:
        return None
    entry = _read_cache(path).get(key)
    try:
        return MethodTiming.model_validate(entry).model_copy(update={"probe_s": 0.0}) if entry else None
    except ValidationError:
        logger.warning("ignoring an unreadable timing-cache entry in %s", path)
        return None


def store_timing(path: Path | None, key: str, timing: MethodTiming) -> None:
    """Write ``timing`` under ``key`` (atomic replace; a failure to write only logs)."""
    if path is None:
        return
    data = _read_cache(path)
    data[key] = timing.model_dump(mode="json")
    try:
        atomic_write_text(path, json.dumps(data, indent=1))
    except OSError as exc:
        logger.warning("cannot write the timing cache %s: %s", path, exc)


def epoch_seconds(per_step: float, per_image: float, n: int, batch: int) -> float:
    """Cost of one pass over ``n`` images in batches of ``batch`` under the line model."""
    return math.ceil(n / max(1, batch)) * per_step + n * per_image if n > 0 else 0.0
