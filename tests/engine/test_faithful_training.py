"""Training details that follow the original VPT code (issue 13; sources in benchmarks/vtab/README.md).

Each test pins one behaviour of the paper's default and that the other choice stays available:
per-sample prompt-dropout masks, the per-epoch warm-up/cosine schedule (epoch 0 at lr 0), the original
head init, FT backbone dropout, keeping the last finite evaluation of a diverged run, and ``mixed``
training its prompts with the weights' optimiser.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from engine.config.train import FT_DROPOUT, TrainConfig
from engine.data.tensors import ImageTensors, TensorLoader
from engine.device import autocast_context
from engine.errors import ConfigError
from engine.train.batched_vpt import BatchedPromptModel
from engine.train.loop import evaluate, fit, make_optimizer, make_scheduler
from engine.train.transfer import HEAD_PRIOR_PROB, build_model, configure_trainable, set_train_mode
from engine.train.vpt import PromptedViT, drop_prompts
from tests.gen_vit import TINY_VIT, make_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

C = 3
P = 4
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data() -> ImageTensors:
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(24) % C
    images = torch.randint(0, 90, (24, 3, 32, 32), generator=gen, dtype=torch.uint8)
    for c in range(C):
        images[labels == c, c] += 150
    return ImageTensors(images, labels)


def _pair_batch() -> torch.Tensor:
    x = torch.randn(1, 3, 32, 32)
    return torch.cat((x, x))  # two identical images


# --- prompt dropout -------------------------------------------------------------------------------------


def test_identical_images_get_different_prompt_masks_in_train_mode_only() -> None:
    torch.manual_seed(0)
    model = build_model(make_vit(seed=0), "vpt-deep", C, num_prompts=P, prompt_dropout=0.5)
    set_train_mode(model)  # frozen backbone in eval: any difference comes from the prompt masks
    x = _pair_batch()
    with torch.no_grad():
        out = model(x)
        assert not torch.allclose(out[0], out[1])
        model.eval()
        out = model(x)
    torch.testing.assert_close(out[0], out[1])


def test_shared_mode_draws_one_mask_per_batch() -> None:
    torch.manual_seed(0)
    model = build_model(make_vit(seed=0), "vpt-deep", C, num_prompts=P, prompt_dropout=0.5,
                        prompt_dropout_mode="shared")
    set_train_mode(model)
    with torch.no_grad():
        out = model(_pair_batch())
        reference = model.eval()(_pair_batch()[:1])
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[0], reference[0])  # the shared mask did drop something


def test_drop_prompts_shapes_scale_and_rate() -> None:
    prompts = torch.ones(50, 40)
    gen = torch.Generator().manual_seed(0)
    per_sample = drop_prompts(prompts, 8, 0.25, per_sample=True, generator=gen)
    assert per_sample.shape == (8, 50, 40)
    assert per_sample.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert (per_sample == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)
    shared = drop_prompts(prompts, 8, 0.25, per_sample=False, generator=gen)
    assert all(torch.equal(shared[0], shared[i]) for i in range(8))
    assert torch.equal(drop_prompts(prompts, 3, 0.0, per_sample=True), prompts.expand(3, -1, -1))


def test_batched_model_draws_a_mask_per_sample() -> None:
    model = BatchedPromptModel(make_vit(seed=0), C, [42, 44], num_prompts=P, prompt_dropout=0.5)
    x = _pair_batch()
    with torch.no_grad():
        out = model.train()(x)  # (k, B, C)
        assert not torch.allclose(out[0, 0], out[0, 1])
        out = model.eval()(x)
    torch.testing.assert_close(out[:, 0], out[:, 1])


def test_unknown_prompt_dropout_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="prompt_dropout_mode"):
        PromptedViT(make_vit(seed=0), num_prompts=P, deep=True, prompt_dropout=0.1, prompt_dropout_mode="per-token")


# --- learning-rate schedule -----------------------------------------------------------------------------


def _factors(schedule: str, warmup: int, total: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, warmup_steps=warmup, total_steps=total, schedule=schedule)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_per_epoch_schedule_is_the_original_warmup_cosine() -> None:
    f = _factors("per-epoch", 10, 100)
    assert f[0] == 0.0  # epoch 0 runs at the warm-up's start value
    assert f[5] == pytest.approx(0.5)
    assert f[10] == pytest.approx(1.0)
    assert f[55] == pytest.approx(0.5)
    assert f[99] == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    g = _factors("per-step", 10, 100)
    assert g[0] == pytest.approx(1 / 11)  # the per-step option wastes no step


def test_fit_epoch_zero_runs_at_the_schedule_start_value(data: ImageTensors) -> None:
    cfg = TrainConfig.for_method("vpt-deep", epochs=4, warmup_epochs=2, batch_size=8, img_size=32, lr=2.0,
                                 num_prompts=P, seed=3)
    torch.manual_seed(3)
    model = build_model(make_vit(seed=0), "vpt-deep", C, num_prompts=P, prompt_dropout=cfg.prompt_dropout)
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    after_first: dict[str, torch.Tensor] = {}

    def grab(epoch: int, *_: object) -> None:
        if epoch == 1:
            after_first.update({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})

    res = fit(model, data, data, cfg, device=CPU, on_epoch=grab)
    assert res.epoch_lrs == pytest.approx([0.0, cfg.effective_lr / 2, cfg.effective_lr,
                                           cfg.effective_lr * 0.5 * (1 + math.cos(math.pi / 2))])
    for name, value in start.items():  # lr 0 in epoch 0: SGD moved nothing (only momentum filled up)
        assert torch.equal(after_first[name], value), name
    assert not torch.equal(model.prompts.detach(), start["prompts"])


def test_fit_per_step_option(data: ImageTensors) -> None:
    cfg = TrainConfig.for_method("linear", epochs=2, warmup_epochs=1, batch_size=8, img_size=32, lr=1.0,
                                 lr_schedule="per-step")
    torch.manual_seed(0)
    res = fit(build_model(make_vit(seed=0), "linear", C), data, data, cfg, device=CPU)
    assert res.epoch_lrs[0] == pytest.approx(cfg.effective_lr / (3 + 1))  # 3 steps of warm-up, first at 1/4


# --- head init and backbone dropout ---------------------------------------------------------------------


def test_head_init_follows_the_original() -> None:
    torch.manual_seed(0)
    head = build_model(make_vit(seed=0), "linear", 200).get_classifier()
    assert torch.allclose(head.bias, torch.full((200,), -math.log((1 - HEAD_PRIOR_PROB) / HEAD_PRIOR_PROB)))
    assert head.weight.std().item() == pytest.approx(math.sqrt(2 / 200), rel=0.05)  # kaiming-normal, fan-out
    torch.manual_seed(0)
    plain = build_model(make_vit(seed=0), "linear", 200, head_init="torch").get_classifier()
    assert plain.weight.abs().max().item() <= 1 / math.sqrt(TINY_VIT["embed_dim"])  # nn.Linear's default
    with pytest.raises(ConfigError, match="head_init"):
        build_model(make_vit(seed=0), "linear", C, head_init="xavier")


def _rates(backbone: torch.nn.Module) -> dict[str, float]:
    blk = backbone.blocks[0]
    return {"pos": backbone.pos_drop.p, "mlp1": blk.mlp.drop1.p, "mlp2": blk.mlp.drop2.p,
            "attn": blk.attn.attn_drop.p, "proj": blk.attn.proj_drop.p}


@pytest.mark.parametrize("method", ["full", "ft-then-pt"])
def test_ft_backbone_uses_the_original_dropout(method: str) -> None:
    model = build_model(make_vit(seed=0), method, C, num_prompts=P)  # type: ignore[arg-type]
    backbone = model.backbone if isinstance(model, PromptedViT) else model
    assert _rates(backbone) == {"pos": FT_DROPOUT, "mlp1": FT_DROPOUT, "mlp2": FT_DROPOUT, "attn": 0.0, "proj": 0.0}
    if method == "ft-then-pt":
        configure_trainable(model, method, stage="ft")
    set_train_mode(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))  # dropout is active while the backbone trains
        model.eval()
        torch.testing.assert_close(model(x), model(x))


def test_ft_dropout_option_and_prompt_stages_without_it() -> None:
    full = build_model(make_vit(seed=0), "full", C, ft_dropout=0.0)
    assert set(_rates(full).values()) == {0.0}
    for method in ("mixed", "vpt-deep", "linear"):  # the original's prompted encoder trains in eval mode
        model = build_model(make_vit(seed=0), method, C, num_prompts=P, ft_dropout=0.3)  # type: ignore[arg-type]
        backbone = model.backbone if isinstance(model, PromptedViT) else model
        assert set(_rates(backbone).values()) == {0.0}, method
    # ft-then-pt's prompt stage keeps the backbone in eval: no dropout although the rate is set
    model = build_model(make_vit(seed=0), "ft-then-pt", C, num_prompts=P, prompt_dropout=0.0)
    configure_trainable(model, "ft-then-pt", stage="pt")
    set_train_mode(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


# --- divergence -----------------------------------------------------------------------------------------


def _diverge_after(epoch: int, model: torch.nn.Module, saved: dict[str, torch.Tensor]):
    def hook(done: int, *_: object) -> None:
        if done == epoch:
            saved.update({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
            with torch.no_grad():
                model.get_classifier().bias.fill_(float("nan"))  # the next epoch's loss is NaN
    return hook


@pytest.mark.parametrize("method", ["linear", "full"])
def test_diverged_run_keeps_its_last_finite_evaluation(method: str, data: ImageTensors) -> None:
    cfg = TrainConfig.for_method(method, epochs=5, warmup_epochs=0, batch_size=8, img_size=32,  # type: ignore[arg-type]
                                 lr=1.0 if method == "linear" else 1e-3)
    torch.manual_seed(0)
    model = build_model(make_vit(seed=0), method, C)  # type: ignore[arg-type]
    saved: dict[str, torch.Tensor] = {}
    res = fit(model, data, data, cfg, device=CPU, on_epoch=_diverge_after(2, model, saved))
    assert res.diverged
    assert res.train_losses[2] is None and len(res.train_losses) == 3
    assert len(res.val_accs) == 2 and res.final_val_acc == res.val_accs[-1]
    for name, param in model.named_parameters():  # parameters back at the end of epoch 2
        if name in saved:
            assert torch.equal(param, saved[name]), name
    loader = TensorLoader(data, batch_size=64, device=CPU)
    assert evaluate(model, loader, autocast=autocast_context(CPU, "fp32"), device=CPU).accuracy == res.final_val_acc


def test_zero_policy_scores_a_diverged_run_zero(data: ImageTensors) -> None:
    cfg = TrainConfig.for_method("linear", epochs=4, warmup_epochs=0, batch_size=8, img_size=32, lr=1.0,
                                 on_divergence="zero")
    torch.manual_seed(0)
    model = build_model(make_vit(seed=0), "linear", C)
    res = fit(model, data, data, cfg, device=CPU, on_epoch=_diverge_after(1, model, {}))
    assert res.diverged and res.val_accs[-1] == 0.0 and res.final_val_acc == 0.0


# --- mixed ----------------------------------------------------------------------------------------------


def test_mixed_trains_prompts_with_the_weights_optimiser() -> None:
    cfg = TrainConfig.for_method("mixed")
    assert cfg.optimizer == "adamw" and cfg.lr == TrainConfig.for_method("full").lr
    model = build_model(make_vit(seed=0), "mixed", C, num_prompts=P)
    opt = make_optimizer(model, kind=cfg.optimizer, lr=cfg.effective_lr, weight_decay=cfg.weight_decay, device=CPU)
    assert isinstance(opt, torch.optim.AdamW)
    group = next(g for g in opt.param_groups if any(p is model.prompts for p in g["params"]))
    assert group["lr"] == cfg.effective_lr and group["weight_decay"] == cfg.weight_decay
    assert any(p is model.backbone.blocks[0].attn.qkv.weight for p in group["params"])  # one optimiser for all


def test_batched_initial_head_is_the_original_init() -> None:
    model = BatchedPromptModel(copy.deepcopy(make_vit(seed=0)), C, [42], num_prompts=P)
    assert torch.allclose(model.head_b[0], torch.full((C,), -math.log(99.0)))


def test_pilot_steps_its_schedule_per_step_and_keeps_the_other_details() -> None:
    from engine.config.train import PilotConfig
    from engine.train.pilot import PilotPlan, TrialSpec, _train_config

    spec = TrialSpec(method="vpt-deep", lr=1.0, seed=42)
    plan = PilotPlan(request_key="k", n_samples=100, n_train=80, n_val=20, num_classes=C, epochs=10, batch_size=16,
                     img_size=32, lr_grid={"vpt-deep": (1.0,)}, seeds=(42,), trials=[spec], timings=[],
                     estimated_s=1.0, budget_s=10.0, device="cpu", precision="fp32", model="m", num_prompts=P)
    tc = _train_config(plan, PilotConfig(), spec)
    assert tc.warmup_epochs == 1 and tc.lr_schedule == "per-step"  # no 10 % of a short trial spent at lr 0
    defaults = TrainConfig()
    assert (tc.prompt_dropout_mode, tc.head_init, tc.ft_dropout, tc.on_divergence) == (
        defaults.prompt_dropout_mode, defaults.head_init, defaults.ft_dropout, defaults.on_divergence)
