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
from engine.config.train import DivergencePolicy, HeadInit, LrSchedule, Normalization, PromptDropoutMode, TrainConfig, scale_lr
from engine.device import Precision, autocast_context
from engine.errors import ConfigError
from engine.progress import ProgressCallback, report
from engine.train.methods import get_method
from engine.train.transfer import init_head
from engine.train.vpt import as_vit, drop_prompts, embed_tokens, prompt_init_bound, remove_prompts, vit_geometry

__all__ = [
    "VptRunSpec",
    "BatchedVptConfig",
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


class BatchedVptConfig(FrozenModel):
    """What the K stacked runs share (the protocol), mirroring the paper's VPT recipe."""

    num_prompts: int = Field(10, ge=1, description="Prompt tokens per layer.")
    deep: bool = Field(True, description="VPT-deep (new prompts before every block) or VPT-shallow.")
    prompt_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the prompt tokens while training.")
    prompt_dropout_mode: PromptDropoutMode = Field(
        "per-sample", description="As TrainConfig.prompt_dropout_mode: a mask per image (the original) or per batch.")
    lr_schedule: LrSchedule = Field(
        "per-epoch", description="As TrainConfig.lr_schedule: stepped per epoch (the original) or per step.")
    head_init: HeadInit = Field("vpt", description="As TrainConfig.head_init: the original head init or torch's.")
    on_divergence: DivergencePolicy = Field(
        "last-finite", description="As TrainConfig.on_divergence: a diverged configuration is evaluated with its "
        "parameters from the end of its last finite epoch (the original), or scores 0.")
    epochs: int = Field(100, ge=1, description="Training epochs.")
    warmup_epochs: int = Field(10, ge=0, description="Linear warm-up epochs before the cosine decay.")
    batch_size: int = Field(64, ge=1, description="Images per step per configuration.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (the paper's VPT optimiser).")
    lr_scale_batch: bool = Field(True, description="Use lr * batch_size / 256, as the paper's code does.")
    precision: Precision = Field("fp32", description="Autocast precision of the forward pass.")
    config_chunk: int = Field(0, ge=0, description="Configurations per forward/backward (0 = all K at once); "
                              "bounds memory, result unchanged because gradients are accumulated exactly.")
    eval_batch_size: int = Field(256, ge=1, description="Images per evaluation forward.")
    normalization: Normalization = Field(
        "imagenet", description="Input mean/std, as TrainConfig.normalization: imagenet (VPT's VTAB loader) "
        "or inception (0.5/0.5, timm's cfg for the Google weights).")

    @classmethod
    def from_train_config(cls, config: TrainConfig, **overrides: object) -> BatchedVptConfig:
        """The shared protocol of K runs of ``config`` (a prompt method trained with SGD), then ``overrides``.

        Raises:
            ConfigError: ``config``'s method has no prompts or does not train with SGD in one stage.
        """
        spec = get_method(config.method)
        if spec.prompts == "none" or config.optimizer != "sgd" or len(spec.stage_names) != 1:
            raise ConfigError(f"batched VPT trains one SGD prompt stage; {spec.name} with {config.optimizer} does not")
        fields = dict(num_prompts=config.num_prompts, deep=spec.prompts == "deep",
                      prompt_dropout=config.prompt_dropout, epochs=config.epochs,
                      warmup_epochs=config.warmup_epochs, batch_size=config.batch_size,
                      momentum=config.momentum, lr_scale_batch=config.lr_scale_batch, precision=config.precision,
                      normalization=config.normalization, prompt_dropout_mode=config.prompt_dropout_mode,
                      lr_schedule=config.lr_schedule, head_init=config.head_init, on_divergence=config.on_divergence)
        return cls.model_validate({**fields, **overrides})


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


@torch.no_grad()
def _evaluate(model: BatchedPromptModel, images: torch.Tensor, labels: torch.Tensor, config: BatchedVptConfig,
              shift: torch.Tensor, scale: torch.Tensor, device: torch.device) -> list[float]:
    model.eval()
    correct = torch.zeros(model.k, dtype=torch.long, device=device)
    autocast = autocast_context(device, config.precision)
    chunk = config.config_chunk or model.k
    for start in range(0, len(images), config.eval_batch_size):
        x = _normalize(images[start:start + config.eval_batch_size].to(device), shift, scale)
        y = labels[start:start + config.eval_batch_size].to(device)
        tokens = model.embed(x)  # shared by every configuration
        for c0 in range(0, model.k, chunk):
            ks = list(range(c0, min(model.k, c0 + chunk)))
            with autocast():
                logits = model.forward_tokens(tokens[None].expand(len(ks), *tokens.shape), ks)
            correct[c0:c0 + len(ks)] += (logits.argmax(-1) == y[None]).sum(-1)
    return (correct.double().cpu() * 100.0 / max(1, len(images))).tolist()


def fit_batched_vpt(backbone: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                    evaluate: tuple[torch.Tensor, torch.Tensor] | None, specs: Sequence[VptRunSpec],
                    config: BatchedVptConfig, *, num_classes: int, device: torch.device,
                    on_progress: ProgressCallback | None = None,
                    keep_params: bool = False) -> list[BatchedVptResult]:
    """Train ``len(specs)`` VPT configurations together on one frozen backbone.

    Each configuration follows ``engine.train.loop.fit`` for VPT-deep: the same initial values, data order
    (``torch.randperm`` from a generator seeded with its seed, a new permutation per epoch), SGD with
    momentum and weight decay on every parameter with more than one dimension, the same warm-up + cosine
    schedule (``engine.train.loop.make_scheduler``, per epoch or per step), the backbone in eval mode, the
    same prompt-dropout masks (a per-configuration generator seeded as ``fit`` seeds its global one) and
    the same handling of a diverged configuration (``config.on_divergence``).

    Args:
        backbone: a timm ``VisionTransformer`` (frozen; its weights are not modified).
        train: ``(images uint8 (N, 3, H, W), labels int64 (N,))`` at the model's input size.
        evaluate: the same for the evaluation split (val in the search, test in final runs), or None.
        specs: one :class:`VptRunSpec` per configuration.
        config: the shared protocol.
        num_classes: classes of the task.
        device: where to train (the caller resolves ``"auto"``).
        on_progress: ``(steps_done, steps_total)`` callback.
        keep_params: return each configuration's trained prompts and head in ``params``.

    Returns:
        One :class:`BatchedVptResult` per spec, in order; ``eval_acc`` is the accuracy (%) after the
        last epoch.

    Raises:
        ConfigError: empty ``specs`` or training split, or a backbone VPT cannot wrap.
    """
    from engine.data.tensors import NORMALIZATION

    if not specs:
        raise ConfigError("batched VPT needs at least one configuration")
    images, labels = train
    n = len(images)
    if n == 0:
        raise ConfigError("batched VPT got an empty training split")
    model = BatchedPromptModel(backbone, num_classes, [s.seed for s in specs], num_prompts=config.num_prompts,
                               deep=config.deep, prompt_dropout=config.prompt_dropout,
                               prompt_dropout_mode=config.prompt_dropout_mode, head_init=config.head_init).to(device)
    mean, std = NORMALIZATION[config.normalization]
    norm = (torch.tensor(mean, device=device).mul(255).view(1, 3, 1, 1),
            torch.tensor(std, device=device).mul(255).view(1, 3, 1, 1))
    optimizer, scheduler = _optimizer(model, specs, config, steps_per_epoch=math.ceil(n / config.batch_size))
    results = [BatchedVptResult(spec=s, trainable_params=sum(p.numel() for ps in model.config_params(k) for p in ps))
               for k, s in enumerate(specs)]
    state = _Sweep(model=model, specs=list(specs), config=config, device=device, norm=norm,
                   data=(images.to(device), labels.to(device)), on_progress=on_progress,
                   total=math.ceil(n / config.batch_size) * config.epochs)
    keep = [_params_of(model, k) for k in range(model.k)] if config.on_divergence == "last-finite" else None
    t0 = time.perf_counter()
    for _epoch in range(config.epochs):
        epoch_losses = _train_epoch(state, optimizer, scheduler)
        if config.lr_schedule == "per-epoch":
            scheduler.step()
        for k, loss in enumerate(epoch_losses):
            if results[k].diverged:
                continue  # a single run stops here: later epochs are not its history
            results[k].losses.append(loss)
            if not math.isfinite(loss):
                results[k].diverged = True
            elif keep is not None:
                keep[k] = _params_of(model, k)
    wall = time.perf_counter() - t0
    _finish(state, results, keep, evaluate, wall=wall, n=n, keep_params=keep_params)
    log.info("batched VPT: %d configs x %d epochs on %d images in %.1fs", model.k, config.epochs, n, wall)
    return results


@dataclass
class _Sweep:
    """What every epoch of :func:`fit_batched_vpt` needs."""

    model: BatchedPromptModel
    specs: list[VptRunSpec]
    config: BatchedVptConfig
    device: torch.device
    norm: tuple[torch.Tensor, torch.Tensor]
    data: tuple[torch.Tensor, torch.Tensor]
    on_progress: ProgressCallback | None
    total: int
    step: int = 0
    generators: dict[int, torch.Generator] = field(default_factory=dict)


def _optimizer(model: BatchedPromptModel, specs: Sequence[VptRunSpec], config: BatchedVptConfig, *,
               steps_per_epoch: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with one pair of parameter groups per configuration, and the shared warm-up + cosine schedule."""
    from engine.train.loop import make_scheduler

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


def _train_epoch(state: _Sweep, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LambdaLR) -> list[float]:
    """One epoch of every configuration; returns the mean training loss of each."""
    model, config, specs, device = state.model, state.config, state.specs, state.device
    images, labels = state.data
    n = len(images)
    autocast = autocast_context(device, config.precision)
    chunk = config.config_chunk or model.k
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
        optimizer.zero_grad(set_to_none=True)
        for c0 in range(0, model.k, chunk):
            ks = list(range(c0, min(model.k, c0 + chunk)))
            which = torch.tensor([slot[specs[k].seed] for k in ks], device=device)
            with autocast():
                logits = model.forward_tokens(emb[which] if len(seeds) > 1 else emb.expand(len(ks), *emb.shape[1:]),
                                              ks)
            y = labels[idx[which]]
            per_cfg = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                      reduction="none").reshape(len(ks), -1).mean(-1)
            per_cfg.sum().backward()  # disjoint parameters: each config gets exactly its own gradient
            sums[c0:c0 + len(ks)] += per_cfg.detach().double() * idx.shape[1]
        optimizer.step()
        if config.lr_schedule == "per-step":
            scheduler.step()
        state.step += 1
        report(state.on_progress, state.step, state.total)
    return [float(v) for v in (sums / n).cpu().tolist()]


def _finish(state: _Sweep, results: list[BatchedVptResult], keep: list[dict[str, torch.Tensor]] | None,
            evaluate: tuple[torch.Tensor, torch.Tensor] | None, *, wall: float, n: int, keep_params: bool) -> None:
    """Restore diverged configurations (last-finite policy), evaluate, and fill the results in place."""
    model = state.model
    no_finite_epoch = [res.diverged and len(res.losses) == 1 for res in results]
    if keep is not None:
        with torch.no_grad():
            for k, res in enumerate(results):
                if res.diverged:  # back to the end of its last finite epoch, as a single run restores
                    model.prompts[k].copy_(keep[k]["prompts"])
                    model.head_w[k].copy_(keep[k]["head.weight"])
                    model.head_b[k].copy_(keep[k]["head.bias"])
    accs = (_evaluate(model, *evaluate, state.config, *state.norm, state.device)
            if evaluate is not None and len(evaluate[0]) else None)
    for k, res in enumerate(results):
        res.wall_s = wall
        res.train_images_per_s = n * state.config.epochs * model.k / wall if wall > 0 else 0.0
        res.eval_acc = accs[k] if accs is not None else None
        if res.diverged and res.eval_acc is not None and (keep is None or no_finite_epoch[k]):
            res.eval_acc = 0.0
        if keep_params:
            res.params = _params_of(model, k)
            res.params = {name: t.cpu() for name, t in res.params.items()}
