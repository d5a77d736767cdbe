"""Batched VPT sweeps: K prompt-tuning configurations trained together on one frozen backbone.

Visual prompt tuning (Jia et al., ECCV 2022; KMnP semantics: prompts inserted after the CLS token,
after the position embedding, deep prompts replacing the previous layer's prompt outputs) freezes
the whole ViT. Every configuration of a learning-rate / weight-decay / seed sweep therefore runs the
*same* backbone function; only the prompts and the linear head differ. This module stacks the K
configurations along the batch axis: the images of a step are patch-embedded once (once per distinct
data order), expanded K times, each chunk gets its own prompts and head, and one backward pass
serves all K. Each configuration owns separate SGD parameter groups, so its learning rate, weight
decay and momentum buffers are exactly those of a single run; the K losses are summed, and because
the parameter sets are disjoint each configuration receives exactly its own gradient. Randomness
(prompt/head init, data order, prompt dropout) comes from per-configuration generators seeded with
the configuration's seed, drawn in the order a single ``engine.train.loop.fit`` run draws them from its
seeded global generator, so a configuration's trajectory does not depend on which others share the
batch and equals a single run, prompt-dropout masks included (tested against sequential
single-configuration runs in ``tests/engine/test_batched_vpt.py``).

The savings are per-step overheads (data preparation, patch embedding, Python and kernel-launch
cost, small-matrix inefficiency), not FLOPs: the transformer blocks still process K x B sequences.
``benchmarks/perf/vtab_sweep.py`` measures the effect on the machine at hand.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from engine.config import FrozenModel
from engine.config.train import TrainConfig, scale_lr
from engine.data.tensors import NORMALIZATION
from engine.device import autocast_context
from engine.errors import ConfigError
from engine.progress import ProgressCallback, report
from engine.train.loop import make_scheduler
from engine.train.methods import get_method
from engine.train.transfer import init_head
from engine.train.vpt import as_vit, drop_prompts, embed_tokens, prompt_init_bound, remove_prompts, vit_geometry

__all__ = [
    "VptRunSpec",
    "check_batched_config",
    "BatchedVptResult",
    "BatchedPromptModel",
    "fit_batched_vpt",
]

log = logging.getLogger(__name__)

PREFIX_TOKENS = 1
"""Tokens before the prompts: the CLS token (the batched model supports plain ViTs with token pooling)."""
DROPOUT_SEED_OFFSET = 7919
"""Offset from a run's seed to its dropout-mask generator's seed: any fixed value keeps the masks independent
of the init stream (seeded with the run's seed); 7919 (the 1000th prime) is arbitrary but frozen, so
stored results stay reproducible."""


class VptRunSpec(FrozenModel):
    """One configuration of a sweep: what differs between the K stacked runs."""

    lr: float = Field(0.1, gt=0, description="Base learning rate (before the optional batch/256 scaling).")
    weight_decay: float = Field(0.0, ge=0, description="SGD weight decay (not applied to the head bias).")
    seed: int = Field(42, description="Seeds prompt/head init, data order and prompt dropout of this run.")


def check_batched_config(config: TrainConfig) -> None:
    """Check that runs of ``config`` can be stacked in one batched sweep.

    Raises:
        ConfigError: ``config``'s method has no prompts or does not train with SGD in one stage, or it asks
            for the frozen backbone in training mode (``frozen_eval=False``), which the batched model never uses,
            or for fp16, which needs a loss scaler the stacked step does not have.
    """
    spec = get_method(config.method)
    if spec.prompts == "none" or config.optimizer != "sgd" or len(spec.stage_names) != 1:
        raise ConfigError(f"batched VPT trains one SGD prompt stage; {spec.name} with {config.optimizer} does not")
    if not config.frozen_eval:
        raise ConfigError("batched VPT keeps the frozen backbone in eval mode; frozen_eval=False needs "
                          "single runs (engine.train.loop.fit)")
    if config.precision == "fp16":  # fit scales fp16 losses with a GradScaler; the stacked step has none
        raise ConfigError("batched VPT has no fp16 loss scaling (small fp16 gradients would underflow to 0); "
                          "use bf16 or fp32, or single runs (engine.train.loop.fit)")


@dataclass
class BatchedVptResult:
    """Outcome of one configuration of a batched sweep (accuracies in %)."""

    spec: VptRunSpec
    losses: list[float] = field(default_factory=list)
    eval_acc: float | None = None
    wall_s: float = 0.0
    train_images_per_s: float = 0.0
    trainable_params: int = 0
    diverged: bool = False
    """The loss became non-finite; as ``engine.train.loop.fit``, the configuration then keeps its last finite
    epoch's parameters (``on_divergence="last-finite"``; 0 % when no epoch was finite) or scores 0 %."""
    params: dict[str, torch.Tensor] | None = None
    """Trained ``prompts`` ``(L, P, D)``, ``head.weight`` and ``head.bias`` (CPU), when asked for."""


class BatchedPromptModel(nn.Module):
    """K independent prompt sets and linear heads around one frozen timm ``VisionTransformer``.

    Configuration ``k`` owns ``prompts[k]`` (``(L, P, D)`` deep, ``(1, P, D)`` shallow, the layout of
    :class:`engine.train.vpt.PromptedViT`) and a head ``head_w[k]``/``head_b[k]``. Its initial values are
    drawn exactly as ``engine.train.transfer.build_model`` draws them after ``seed_everything(seed)`` (head
    as ``nn.Linear`` re-initialised by ``init_head``, then the prompts), so a batched run starts where a
    single run starts. Prompt-dropout masks come from a generator per configuration on the training
    device, seeded with its seed, as ``fit`` draws them from the global generator it seeds.
    ``forward`` returns logits ``(k, B, num_classes)``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, seeds: Sequence[int], *,
                 num_prompts: int, deep: bool = True, prompt_dropout: float = 0.0,
                 prompt_dropout_mode: str = "per-sample", head_init: str = "vpt") -> None:
        super().__init__()
        pool, prefix = getattr(backbone, "global_pool", "token"), getattr(backbone, "num_prefix_tokens", 1)
        if pool != "token" or prefix != PREFIX_TOKENS:
            raise ConfigError("batched VPT needs a ViT with one CLS token and token pooling "
                              f"(got global_pool={getattr(backbone, 'global_pool', None)!r}); use a vit_* model")
        self.backbone = as_vit(backbone)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()  # frozen encoder kept in eval mode (as the original VPT does): no dropout
        self.k = len(seeds)
        self.num_prompts = num_prompts
        self.deep = deep
        self.prompt_dropout = prompt_dropout
        self.per_sample_dropout = prompt_dropout_mode == "per-sample"
        self.seeds = [int(seed) for seed in seeds]
        depth, dim, patch_size = vit_geometry(self.backbone)
        n_sets = depth if deep else 1
        bound = prompt_init_bound(patch_size, dim)
        self.prompts = nn.ParameterList()
        self.head_w = nn.ParameterList()
        self.head_b = nn.ParameterList()
        self._generators: dict[int, torch.Generator] = {}
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))  # the global-RNG order of seed_everything + build_model
                head = nn.Linear(dim, num_classes)
                init_head(head, head_init)
                prompts = torch.empty(n_sets, num_prompts, dim)
                nn.init.uniform_(prompts, -bound, bound)
            self.head_w.append(nn.Parameter(head.weight.detach().clone()))
            self.head_b.append(nn.Parameter(head.bias.detach().clone()))
            self.prompts.append(nn.Parameter(prompts))

    def train(self, mode: bool = True) -> BatchedPromptModel:
        """Set training mode for the prompts (dropout) while the frozen backbone stays in eval mode."""
        self.training = mode
        return self

    def config_params(self, k: int) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Parameters of configuration ``k``: (weight-decayed, not decayed). As ``engine.train.loop``, 1-D
        parameters (the head bias) get no decay."""
        return [self.prompts[k], self.head_w[k]], [self.head_b[k]]

    def _generator(self, k: int, device: torch.device) -> torch.Generator:
        """Configuration ``k``'s dropout generator: created on first use, seeded as ``fit`` seeds the global one."""
        if k not in self._generators:
            self._generators[k] = torch.Generator(device=device).manual_seed(self.seeds[k])
        return self._generators[k]

    def _prompt_rows(self, ks: Sequence[int], index: int, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """Prompt set ``index`` of configurations ``ks`` expanded to ``(len(ks) * batch, P, D)``, with dropout
        drawn per configuration in the order a single run draws it (set 0, 1, ... every step)."""
        p = self.prompt_dropout if self.training else 0.0
        rows = [drop_prompts(self.prompts[k][index], batch, p, per_sample=self.per_sample_dropout,
                             generator=self._generator(k, self.prompts[k].device) if p > 0 else None)
                for k in ks]
        return torch.cat(rows).to(dtype)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding + CLS + position embedding of normalised images ``(B, 3, H, W)``."""
        return embed_tokens(self.backbone, x)

    def forward_tokens(self, tokens: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
        """Run configurations ``ks`` on embedded tokens ``(len(ks), B, T, D)``; return logits ``(k, B, C)``."""
        kk, b, t, d = tokens.shape
        p = self.num_prompts
        first = self._prompt_rows(ks, 0, b, tokens.dtype).reshape(kk, b, p, d)
        x = torch.cat([tokens[:, :, :1], first, tokens[:, :, 1:]], dim=2)
        x = x.reshape(kk * b, t + p, d)
        for i, block in enumerate(self.backbone.blocks):
            if i > 0 and self.deep:
                x = torch.cat([x[:, :1], self._prompt_rows(ks, i, b, tokens.dtype), x[:, 1 + p:]], dim=1)
            x = block(x)
        x = remove_prompts(self.backbone.norm(x), PREFIX_TOKENS, p)
        cls = self.backbone.forward_head(x, pre_logits=True).reshape(kk, b, d)  # timm's pool, fc_norm, head_drop
        w = torch.stack([self.head_w[k] for k in ks])  # (k, C, D)
        bias = torch.stack([self.head_b[k] for k in ks])  # (k, C)
        return torch.baddbmm(bias[:, None].to(cls.dtype), cls, w.transpose(1, 2).to(cls.dtype))

    def forward(self, x: torch.Tensor, ks: Sequence[int] | None = None) -> torch.Tensor:
        """Logits ``(k, B, C)``; ``x`` is ``(B, 3, H, W)`` shared, or ``(k, B, 3, H, W)`` per configuration."""
        ks = list(range(self.k)) if ks is None else list(ks)
        if x.dim() == 4:
            tokens = self.embed(x)
            tokens = tokens[None].expand(len(ks), *tokens.shape)
        else:
            kk, b = x.shape[:2]
            tokens = self.embed(x.reshape(kk * b, *x.shape[2:]))
            tokens = tokens.reshape(kk, b, *tokens.shape[1:])
        return self.forward_tokens(tokens, ks)


def _normalize(images: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # the arithmetic of engine.data.tensors.TensorLoader: (x - 255 mean) / (255 std)
    return images.float().sub_(shift).div_(scale)


def fit_batched_vpt(backbone: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                    evaluate: tuple[torch.Tensor, torch.Tensor] | None, specs: Sequence[VptRunSpec],
                    config: TrainConfig, *, num_classes: int, device: torch.device, config_chunk: int = 0,
                    eval_batch_size: int = 256, on_progress: ProgressCallback | None = None,
                    keep_params: bool = False) -> list[BatchedVptResult]:
    """Train ``len(specs)`` runs of ``config`` together on one frozen backbone, one per spec.

    Each run follows ``engine.train.loop.fit`` of ``config`` with the spec's lr, weight decay and seed (the
    ones in ``config`` are not used): the same initial values, data order (``torch.randperm`` from a
    generator seeded with its seed, a new permutation per epoch), SGD with momentum and weight decay on
    every parameter with more than one dimension, warm-up + cosine schedule
    (``engine.train.loop.make_scheduler``), prompt-dropout masks and handling of divergence.

    Args:
        backbone: a timm ``VisionTransformer`` (frozen; its weights are not modified).
        train: ``(images uint8 (N, 3, H, W), labels int64 (N,))`` at the model's input size.
        evaluate: the same for the evaluation split (val in the search, test in final runs), or None.
        specs: one :class:`VptRunSpec` per run.
        config: the training configuration every run shares (see :func:`check_batched_config`).
        num_classes: classes of the task.
        device: where to train (the caller resolves ``"auto"``).
        config_chunk: runs per forward/backward (0 = all at once); bounds memory, results unchanged
            because gradients are accumulated exactly.
        eval_batch_size: images per evaluation forward (results unchanged).
        on_progress: ``(steps_done, steps_total)`` callback.
        keep_params: return each run's trained prompts and head in ``params``.

    Returns:
        One :class:`BatchedVptResult` per spec, in order; ``eval_acc`` is the accuracy (%) after the last epoch.

    Raises:
        ConfigError: ``config`` fails :func:`check_batched_config`, empty ``specs`` or training split, a
            negative ``config_chunk`` or ``eval_batch_size`` below 1, or a backbone VPT cannot wrap.
    """
    _check_inputs(config, specs, train, config_chunk=config_chunk, eval_batch_size=eval_batch_size)
    state = _start_sweep(backbone, train, specs, config, num_classes=num_classes, device=device,
                         chunk=config_chunk or len(specs), eval_batch_size=eval_batch_size, on_progress=on_progress)
    t0 = time.perf_counter()
    for _epoch in range(config.epochs):
        epoch_losses = _train_epoch(state)
        if config.lr_schedule == "per-epoch":
            state.scheduler.step()
        _record_epoch(state, epoch_losses)
    wall = time.perf_counter() - t0
    _finish(state, evaluate, wall=wall, keep_params=keep_params)
    log.info("batched VPT: %d configs x %d epochs on %d images in %.1fs", len(specs), config.epochs,
             len(train[0]), wall)
    return state.results


def _check_inputs(config: TrainConfig, specs: Sequence[VptRunSpec], train: tuple[torch.Tensor, torch.Tensor], *,
                  config_chunk: int, eval_batch_size: int) -> None:
    """Validate :func:`fit_batched_vpt`'s arguments before any work (see its Raises)."""
    check_batched_config(config)
    if not specs:
        raise ConfigError("batched VPT needs at least one configuration")
    if len(train[0]) == 0:
        raise ConfigError("batched VPT got an empty training split")
    if config_chunk < 0:
        raise ConfigError(f"config_chunk must be 0 (all runs at once) or positive, got {config_chunk}")
    if eval_batch_size < 1:
        raise ConfigError(f"eval_batch_size must be at least 1, got {eval_batch_size}")


@dataclass
class _Sweep:
    """The state of one :func:`fit_batched_vpt` call, shared by its epochs and its evaluation."""

    model: BatchedPromptModel
    specs: list[VptRunSpec]
    config: TrainConfig
    chunk: int
    """Runs per forward/backward."""
    eval_batch_size: int
    device: torch.device
    norm: tuple[torch.Tensor, torch.Tensor]
    """``(255 mean, 255 std)`` of ``config.normalization``, shaped ``(1, 3, 1, 1)`` on ``device``."""
    data: tuple[torch.Tensor, torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    results: list[BatchedVptResult]
    keep: list[dict[str, torch.Tensor]] | None
    """Each run's parameters at the end of its last finite epoch (``on_divergence="last-finite"`` only)."""
    on_progress: ProgressCallback | None
    total: int
    step: int = 0
    generators: dict[int, torch.Generator] = field(default_factory=dict)


def _start_sweep(backbone: nn.Module, train: tuple[torch.Tensor, torch.Tensor], specs: Sequence[VptRunSpec],
                 config: TrainConfig, *, num_classes: int, device: torch.device, chunk: int, eval_batch_size: int,
                 on_progress: ProgressCallback | None) -> _Sweep:
    """Build the stacked model, its optimiser and schedule, the normalisation and the empty results."""
    images, labels = train
    model = BatchedPromptModel(backbone, num_classes, [s.seed for s in specs], num_prompts=config.num_prompts,
                               deep=get_method(config.method).prompts == "deep",
                               prompt_dropout=config.prompt_dropout, prompt_dropout_mode=config.prompt_dropout_mode,
                               head_init=config.head_init).to(device)
    mean, std = NORMALIZATION[config.normalization]
    norm = (torch.tensor(mean, device=device).mul(255).view(1, 3, 1, 1),
            torch.tensor(std, device=device).mul(255).view(1, 3, 1, 1))
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    optimizer, scheduler = _optimizer(model, specs, config, steps_per_epoch=steps_per_epoch)
    results = [BatchedVptResult(spec=s, trainable_params=sum(p.numel() for ps in model.config_params(k) for p in ps))
               for k, s in enumerate(specs)]
    keep = [_params_of(model, k) for k in range(model.k)] if config.on_divergence == "last-finite" else None
    return _Sweep(model=model, specs=list(specs), config=config, chunk=chunk, eval_batch_size=eval_batch_size,
                  device=device, norm=norm, data=(images.to(device), labels.to(device)), optimizer=optimizer,
                  scheduler=scheduler, results=results, keep=keep, on_progress=on_progress,
                  total=steps_per_epoch * config.epochs)


def _optimizer(model: BatchedPromptModel, specs: Sequence[VptRunSpec], config: TrainConfig, *,
               steps_per_epoch: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with one pair of parameter groups per configuration, and the shared warm-up + cosine schedule."""
    factor = scale_lr(1.0, config.batch_size, config.lr_scale_batch)
    groups: list[dict[str, object]] = []
    for k, spec in enumerate(specs):
        decayed, plain = model.config_params(k)
        groups.append({"params": decayed, "lr": spec.lr * factor, "weight_decay": spec.weight_decay})
        groups.append({"params": plain, "lr": spec.lr * factor, "weight_decay": 0.0})
    optimizer = torch.optim.SGD(groups, lr=specs[0].lr * factor, momentum=config.momentum)
    units = 1 if config.lr_schedule == "per-epoch" else steps_per_epoch
    scheduler = make_scheduler(optimizer, warmup_steps=min(config.warmup_epochs, config.epochs // 2) * units,
                               total_steps=config.epochs * units, schedule=config.lr_schedule)
    return optimizer, scheduler


def _params_of(model: BatchedPromptModel, k: int) -> dict[str, torch.Tensor]:
    return {"prompts": model.prompts[k].detach().clone(), "head.weight": model.head_w[k].detach().clone(),
            "head.bias": model.head_b[k].detach().clone()}


def _train_epoch(state: _Sweep) -> list[float]:
    """One epoch of every configuration; returns the mean training loss of each."""
    model, config, specs, device = state.model, state.config, state.specs, state.device
    images, labels = state.data
    n = len(images)
    autocast = autocast_context(device, config.precision)
    seeds = sorted({s.seed for s in specs})
    for seed in seeds:  # data order: one generator per seed, as fit's loader generator
        state.generators.setdefault(seed, torch.Generator().manual_seed(seed))
    slot = {seed: i for i, seed in enumerate(seeds)}
    model.train()
    orders = torch.stack([torch.randperm(n, generator=state.generators[seed]) for seed in seeds]).to(device)
    sums = torch.zeros(model.k, dtype=torch.float64, device=device)
    for b in range(math.ceil(n / config.batch_size)):
        idx = orders[:, b * config.batch_size:(b + 1) * config.batch_size]  # (seeds, B)
        # one patch embedding per distinct data order (one in a grid search), shared by its configs
        with torch.no_grad(), autocast():  # frozen, parameter-free for the prompts: no graph needed
            x = _normalize(images[idx.reshape(-1)], *state.norm)
            emb = model.embed(x).reshape(len(seeds), idx.shape[1], -1, model.backbone.embed_dim)
        state.optimizer.zero_grad(set_to_none=True)
        for c0 in range(0, model.k, state.chunk):
            ks = list(range(c0, min(model.k, c0 + state.chunk)))
            which = torch.tensor([slot[specs[k].seed] for k in ks], device=device)
            with autocast():
                logits = model.forward_tokens(emb[which] if len(seeds) > 1 else emb.expand(len(ks), *emb.shape[1:]),
                                              ks)
            y = labels[idx[which]]
            per_cfg = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                      reduction="none").reshape(len(ks), -1).mean(-1)
            per_cfg.sum().backward()  # disjoint parameters: each config gets exactly its own gradient
            sums[c0:c0 + len(ks)] += per_cfg.detach().double() * idx.shape[1]
        state.optimizer.step()
        if config.lr_schedule == "per-step":
            state.scheduler.step()
        state.step += 1
        report(state.on_progress, state.step, state.total)
    return [float(v) for v in (sums / n).cpu().tolist()]


def _record_epoch(state: _Sweep, epoch_losses: list[float]) -> None:
    """Append each run's epoch loss and track divergence: a run whose loss is not finite stops its history
    there (as a single run stops training); under ``last-finite`` the others' parameters are kept."""
    for k, loss in enumerate(epoch_losses):
        res = state.results[k]
        if res.diverged:
            continue  # a single run stops here: later epochs are not its history
        res.losses.append(loss)
        if not math.isfinite(loss):
            res.diverged = True
        elif state.keep is not None:
            state.keep[k] = _params_of(state.model, k)


def _finish(state: _Sweep, evaluate: tuple[torch.Tensor, torch.Tensor] | None, *, wall: float,
            keep_params: bool) -> None:
    """Restore diverged configurations (last-finite policy), evaluate, and fill the results in place."""
    model, results, keep = state.model, state.results, state.keep
    no_finite_epoch = [res.diverged and len(res.losses) == 1 for res in results]
    if keep is not None:
        with torch.no_grad():
            for k, res in enumerate(results):
                if res.diverged:  # back to the end of its last finite epoch, as a single run restores
                    model.prompts[k].copy_(keep[k]["prompts"])
                    model.head_w[k].copy_(keep[k]["head.weight"])
                    model.head_b[k].copy_(keep[k]["head.bias"])
    accs = _evaluate(state, *evaluate) if evaluate is not None and len(evaluate[0]) else None
    n = len(state.data[0])
    for k, res in enumerate(results):
        res.wall_s = wall
        res.train_images_per_s = n * state.config.epochs * model.k / wall if wall > 0 else 0.0
        res.eval_acc = accs[k] if accs is not None else None
        if res.diverged and res.eval_acc is not None and (keep is None or no_finite_epoch[k]):
            res.eval_acc = 0.0
        if keep_params:
            res.params = {name: t.cpu() for name, t in _params_of(model, k).items()}


@torch.no_grad()
def _evaluate(state: _Sweep, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Accuracy (%) of every configuration on ``(images, labels)``; one patch embedding per batch serves all."""
    model, device, step = state.model, state.device, state.eval_batch_size
    model.eval()
    correct = torch.zeros(model.k, dtype=torch.long, device=device)
    autocast = autocast_context(device, state.config.precision)
    for start in range(0, len(images), step):
        x = _normalize(images[start:start + step].to(device), *state.norm)
        y = labels[start:start + step].to(device)
        tokens = model.embed(x)  # shared by every configuration
        for c0 in range(0, model.k, state.chunk):
            ks = list(range(c0, min(model.k, c0 + state.chunk)))
            with autocast():
                logits = model.forward_tokens(tokens[None].expand(len(ks), *tokens.shape), ks)
            correct[c0:c0 + len(ks)] += (logits.argmax(-1) == y[None]).sum(-1)
    return (correct.double().cpu() * 100.0 / max(1, len(images))).tolist()
