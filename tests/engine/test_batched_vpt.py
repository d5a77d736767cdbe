"""Batched VPT equals sequential single runs: K configurations stacked along the batch reach the same
parameters as K separate ``engine.train.loop.fit`` runs of ``PromptedViT`` (same init, data order, schedule)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from engine.config.train import TrainConfig
from engine.data.tensors import ImageTensors
from engine.errors import ConfigError
from engine.seed import seed_everything
from engine.train.batched_vpt import BatchedPromptModel, VptRunSpec, check_batched_config, fit_batched_vpt
from engine.train.loop import fit
from engine.train.transfer import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NUM_CLASSES = 3
SPECS = [VptRunSpec(lr=2.0, weight_decay=0.01, seed=42),
         VptRunSpec(lr=0.5, weight_decay=0.0, seed=42),
         VptRunSpec(lr=1.0, weight_decay=0.001, seed=44)]


@pytest.fixture
def backbone():
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                             embed_dim=32, num_heads=2, num_classes=0)


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (20,), generator=gen)
    return images, labels


def _config(**kw) -> TrainConfig:
    """The configuration both trainers read: the batched sweep and each sequential single run."""
    base = dict(num_prompts=4, prompt_dropout=0.0, epochs=3, warmup_epochs=1, batch_size=8, img_size=32)
    return TrainConfig.for_method("vpt-deep", **{**base, **kw})


def _sequential(backbone, data, spec: VptRunSpec, cfg: TrainConfig):
    """One single-configuration run through the production path (build_model + engine.train.loop.fit)."""
    tc = cfg.model_copy(update={"lr": spec.lr, "weight_decay": spec.weight_decay, "seed": spec.seed})
    seed_everything(spec.seed)
    model = build_model(copy.deepcopy(backbone), "vpt-deep", NUM_CLASSES, **tc.model_options())
    res = fit(model, ImageTensors(*data), ImageTensors(*data), tc, device=torch.device("cpu"))
    return model, res


def test_batched_equals_sequential_runs(backbone, data) -> None:
    cfg = _config()
    before = copy.deepcopy(backbone.state_dict())
    batched = fit_batched_vpt(backbone, data, data, SPECS, cfg, num_classes=NUM_CLASSES,
                              device=torch.device("cpu"), keep_params=True)
    for key, value in backbone.state_dict().items():  # the shared backbone is frozen, never modified
        assert torch.equal(value, before[key]), key
    for spec, got in zip(SPECS, batched, strict=True):
        model, res = _sequential(backbone, data, spec, cfg)
        assert got.params is not None
        # the runs moved away from their init, so equality is not trivial
        assert not torch.allclose(model.prompts.detach(), BatchedPromptModel(
            copy.deepcopy(backbone), NUM_CLASSES, [spec.seed], num_prompts=4).prompts[0].detach())
        torch.testing.assert_close(got.params["prompts"], model.prompts.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.params["head.weight"], model.head.weight.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.params["head.bias"], model.head.bias.detach(), rtol=1e-4, atol=1e-5)
        assert got.losses == pytest.approx(res.train_losses, rel=1e-4)
        assert got.eval_acc == pytest.approx(res.final_val_acc)


@pytest.mark.parametrize("options", [
    {"prompt_dropout": 0.1},  # the paper's defaults: per-sample masks, per-epoch schedule, VPT head init
    {"prompt_dropout": 0.3, "prompt_dropout_mode": "shared", "lr_schedule": "per-step", "head_init": "torch",
     "normalization": "inception"},
])
def test_batched_equals_sequential_runs_with_prompt_dropout(backbone, data, options) -> None:
    """Dropout masks too: each configuration draws them from its own generator in a single run's order."""
    cfg = _config(epochs=2, **options)
    batched = fit_batched_vpt(backbone, data, data, SPECS, cfg, num_classes=NUM_CLASSES,
                              device=torch.device("cpu"), keep_params=True)
    for spec, got in zip(SPECS, batched, strict=True):
        model, res = _sequential(backbone, data, spec, cfg)
        torch.testing.assert_close(got.params["prompts"], model.prompts.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.params["head.weight"], model.head.weight.detach(), rtol=1e-4, atol=1e-5)
        assert got.losses == pytest.approx(res.train_losses, rel=1e-4)
        assert got.eval_acc == pytest.approx(res.final_val_acc)


@pytest.mark.parametrize("policy", ["last-finite", "zero"])
def test_diverged_configuration_matches_a_diverged_single_run(backbone, data, policy) -> None:
    """An absurd lr diverges after the lr-0 warm-up epoch; batched and single runs agree on what is kept."""
    specs = [SPECS[0], VptRunSpec(lr=1e35, weight_decay=0.0, seed=44)]
    cfg = _config(epochs=3, warmup_epochs=1, on_divergence=policy)
    batched = fit_batched_vpt(backbone, data, data, specs, cfg, num_classes=NUM_CLASSES,
                              device=torch.device("cpu"), keep_params=True)
    assert not batched[0].diverged and batched[1].diverged
    model, res = _sequential(backbone, data, specs[1], cfg)
    assert res.diverged
    # the history stops at the diverged epoch, as a single run's does
    assert len(batched[1].losses) == len(res.train_losses) == 2 and res.train_losses[-1] is None
    assert not math.isfinite(batched[1].losses[-1])
    assert batched[1].losses[:-1] == pytest.approx(res.train_losses[:-1], rel=1e-4)
    assert batched[1].eval_acc == pytest.approx(res.final_val_acc)
    if policy == "last-finite":
        torch.testing.assert_close(batched[1].params["prompts"], model.prompts.detach())
        assert res.final_val_acc > 0  # the lr-0 epoch's evaluation stands
    else:
        assert batched[1].eval_acc == 0.0


def test_initial_values_match_build_model(backbone) -> None:
    seed_everything(44)
    single = build_model(copy.deepcopy(backbone), "vpt-deep", NUM_CLASSES, num_prompts=4)
    batched = BatchedPromptModel(copy.deepcopy(backbone), NUM_CLASSES, [42, 44], num_prompts=4)
    assert torch.equal(batched.prompts[1], single.prompts)
    assert torch.equal(batched.head_w[1], single.head.weight)
    assert not torch.equal(batched.prompts[0], single.prompts)


def test_chunking_and_batch_mates_do_not_change_a_run(backbone, data) -> None:
    whole = fit_batched_vpt(backbone, data, None, SPECS, _config(epochs=2), num_classes=NUM_CLASSES,
                            device=torch.device("cpu"), keep_params=True)
    chunked = fit_batched_vpt(backbone, data, None, SPECS, _config(epochs=2), config_chunk=1,
                              num_classes=NUM_CLASSES, device=torch.device("cpu"), keep_params=True)
    alone = fit_batched_vpt(backbone, data, None, SPECS[2:], _config(epochs=2), num_classes=NUM_CLASSES,
                            device=torch.device("cpu"), keep_params=True)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a.params["prompts"], b.params["prompts"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(whole[2].params["prompts"], alone[0].params["prompts"], rtol=1e-5, atol=1e-6)


def test_prompt_dropout_is_per_configuration(backbone, data) -> None:
    cfg = _config(epochs=1, prompt_dropout=0.5)
    two = fit_batched_vpt(backbone, data, None, [SPECS[0], SPECS[0]], cfg, num_classes=NUM_CLASSES,
                          device=torch.device("cpu"), keep_params=True)
    one = fit_batched_vpt(backbone, data, None, [SPECS[0]], cfg, num_classes=NUM_CLASSES,
                          device=torch.device("cpu"), keep_params=True)
    torch.testing.assert_close(two[0].params["prompts"], one[0].params["prompts"])
    torch.testing.assert_close(two[1].params["prompts"], one[0].params["prompts"])


def test_rejects_empty_inputs(backbone, data) -> None:
    with pytest.raises(ConfigError, match="at least one configuration"):
        fit_batched_vpt(backbone, data, None, [], _config(), num_classes=3, device=torch.device("cpu"))
    empty = (data[0][:0], data[1][:0])
    with pytest.raises(ConfigError, match="empty training split"):
        fit_batched_vpt(backbone, empty, None, SPECS, _config(), num_classes=3, device=torch.device("cpu"))


def test_evaluation_batching_does_not_change_the_accuracy(backbone, data) -> None:
    """eval_batch_size and config_chunk are runtime knobs: the evaluated accuracy stays the same."""
    cfg = _config(epochs=1)
    whole = fit_batched_vpt(backbone, data, data, SPECS, cfg, num_classes=NUM_CLASSES, device=torch.device("cpu"))
    split = fit_batched_vpt(backbone, data, data, SPECS, cfg, num_classes=NUM_CLASSES, device=torch.device("cpu"),
                            eval_batch_size=3, config_chunk=2)
    assert [r.eval_acc for r in split] == pytest.approx([r.eval_acc for r in whole])


@pytest.mark.parametrize(("config", "match"), [
    (TrainConfig.for_method("full"), "batched VPT trains one SGD prompt stage; full"),
    (TrainConfig.for_method("vpt-deep", optimizer="adamw"), "with adamw"),
    (TrainConfig.for_method("ft-then-pt"), "ft-then-pt"),
    (TrainConfig.for_method("vpt-deep", frozen_eval=False), "frozen_eval=False"),
    (TrainConfig.for_method("vpt-deep", precision="fp16"), "no fp16 loss scaling"),
])
def test_rejects_configurations_it_cannot_stack(backbone, data, config, match) -> None:
    with pytest.raises(ConfigError, match=match):
        check_batched_config(config)
    with pytest.raises(ConfigError, match=match):  # checked before any work
        fit_batched_vpt(backbone, data, None, SPECS, config, num_classes=3, device=torch.device("cpu"))
    check_batched_config(TrainConfig.for_method("vpt-shallow"))  # a prompt method with SGD in one stage


@pytest.mark.parametrize(("knobs", "match"), [({"config_chunk": -1}, "config_chunk"),
                                             ({"eval_batch_size": 0}, "eval_batch_size")])
def test_rejects_bad_runtime_knobs(backbone, data, knobs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        fit_batched_vpt(backbone, data, None, SPECS, _config(), num_classes=3, device=torch.device("cpu"), **knobs)
