"""One contract suite run over every registered transfer method (scikit-learn's ``parametrize_with_checks`` idea),
read from the registry when the tests are collected: a method added as one module in ``engine/train/tuners/`` goes
through every check here.

Every method must: give the right output shape without NaN; make exactly the parts its spec names trainable
(head, backbone, prompts, adapter weights; by formula for the paper's methods, including a ViT-B/16 built on
the meta device); leave frozen weights bit-identical after an optimizer step; grow the token sequence by
exactly P when it uses prompts; reproduce its loss curve for the same seed on CPU; round-trip its trainable
weights through a saved state dict (save/resume); and learn a separable task. A method whose optional package
is missing is skipped, saying which package and how to install it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine.config.train import TrainConfig
from engine.data.tensors import ImageTensors
from engine.train.loop import fit, make_optimizer
from engine.train.methods import Method, get_method, method_specs, prompt_methods, unavailable_reason
from engine.train.models import count_parameters
from engine.train.transfer import build_model, configure_trainable, set_train_mode
from tests.gen_vit import make_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

P = 4
C = 3
D = 32
DEPTH = 2


def _registered() -> list[object]:
    """Every registered method as a test parameter; skipped (with the install command) where unavailable."""
    out: list[object] = []
    for spec in method_specs():
        reason = unavailable_reason(spec)
        out.append(pytest.param(spec.name, marks=pytest.mark.skip(reason=reason)) if reason else spec.name)
    return out


METHODS = _registered()


def _build(method: Method, seed: int = 0, **kw: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(make_vit(seed=0), method, C, num_prompts=P, **kw)  # type: ignore[arg-type]


def _prompt_sets(method: Method) -> int:
    return 1 if method == "vpt-shallow" else DEPTH


def _expected_trainable(method: Method, total_backbone: int, adapter: int) -> int:
    """Trainable parameters by formula from the parts the spec's final stage trains."""
    final = get_method(get_method(method).stage_names[-1])
    count = D * C + C if "head" in final.trains else 0
    if "backbone" in final.trains:
        count += total_backbone
    if "prompts" in final.trains:
        count += (1 if final.prompts == "shallow" else DEPTH) * P * D
    return count + (adapter if "adapters" in final.trains else 0)


@pytest.fixture(scope="module")
def separable() -> tuple[ImageTensors, ImageTensors]:
    """Three classes told apart by which colour channel is bright (a linearly separable task)."""
    gen = torch.Generator().manual_seed(0)
    n = 90
    labels = torch.arange(n) % C
    images = torch.randint(0, 80, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    for c in range(C):
        images[labels == c, c] += 150
    return ImageTensors(images[:72], labels[:72]), ImageTensors(images[72:], labels[72:])


@pytest.mark.parametrize("method", METHODS)
def test_output_shape_and_finite(method: Method) -> None:
    model = _build(method).eval()
    with torch.no_grad():
        out = model(torch.randn(5, 3, 32, 32))
    assert out.shape == (5, C)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("method", METHODS)
def test_exactly_the_expected_parameters_train(method: Method) -> None:
    model = _build(method)
    backbone = model.backbone if method in prompt_methods() else model
    spec = get_method(method)
    adapter = spec.adapter.parameters(model) if spec.adapter is not None else []
    head_ids = {id(p) for p in backbone.head.parameters()} | {id(p) for p in adapter}
    body = sum(p.numel() for p in backbone.parameters() if id(p) not in head_ids)
    names = configure_trainable(model, method)
    trainable, _ = count_parameters(model)
    assert trainable == _expected_trainable(method, body, sum(p.numel() for p in adapter))
    if spec.adapter is not None:  # adapter weights are found by module identity and all of them train
        assert adapter and all(p.requires_grad for p in adapter)
    assert names == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    if method in ("vpt-shallow", "vpt-deep", "ft-then-pt"):
        assert names == ["backbone.head.bias", "backbone.head.weight", "prompts"]
    if method == "linear":
        assert names == ["head.bias", "head.weight"]


def test_ft_then_pt_stages() -> None:
    model = _build("ft-then-pt")
    names = configure_trainable(model, "ft-then-pt", stage="ft")
    assert "prompts" not in names and "backbone.blocks.0.attn.qkv.weight" in names
    assert model.prompts_enabled is False
    names = configure_trainable(model, "ft-then-pt", stage="pt")
    assert names == ["backbone.head.bias", "backbone.head.weight", "prompts"]
    assert model.prompts_enabled is True


@pytest.mark.parametrize(("method", "prompts"), [("vpt-deep", 10), ("vpt-deep", 50), ("vpt-shallow", 50)])
def test_vit_b16_prompt_parameter_count(method: Method, prompts: int) -> None:
    """ViT-B/16 VPT-deep with P prompts trains 12 * P * 768 prompt parameters plus the head (no compute)."""
    import timm

    with torch.device("meta"):
        backbone = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        model = build_model(backbone, method, 100, num_prompts=prompts)
    trainable, total = count_parameters(model)
    sets = 12 if method == "vpt-deep" else 1
    assert trainable == sets * prompts * 768 + 768 * 100 + 100
    assert total == 85_798_656 + sets * prompts * 768 + 768 * 100 + 100  # ViT-B/16 without head: 85.8M


@pytest.mark.parametrize("method", METHODS)
def test_frozen_weights_unchanged_after_a_step(method: Method) -> None:
    model = _build(method)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    opt = make_optimizer(model, kind=get_method(method).optimizer, lr=0.5, weight_decay=0.1,
                         device=torch.device("cpu"))
    set_train_mode(model)
    loss = F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        if n in trainable:
            assert not torch.equal(p, before[n]), f"{n} should have changed"
        else:
            assert torch.equal(p, before[n]), f"frozen {n} changed"
            assert p.grad is None


@pytest.mark.parametrize("method", METHODS)
def test_sequence_grows_by_num_prompts(method: Method) -> None:
    model = _build(method).eval()
    blocks = model.backbone.blocks if method in prompt_methods() else model.blocks
    lengths: list[int] = []
    handle = blocks[-1].register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    handle.remove()
    plain = 1 + 16
    assert lengths == [plain + (P if method in prompt_methods() else 0)]


def test_shallow_differs_from_deep() -> None:
    shallow, deep = _build("vpt-shallow", seed=1), _build("vpt-deep", seed=1)
    with torch.no_grad():
        deep.prompts[0].copy_(shallow.prompts[0])
        deep.backbone.head.load_state_dict(shallow.backbone.head.state_dict())
        x = torch.randn(2, 3, 32, 32)
        assert not torch.allclose(shallow.eval().forward_features(x), deep.eval().forward_features(x))


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_loss_curve(method: Method, separable: tuple[ImageTensors, ImageTensors]) -> None:
    train, val = separable
    cfg = TrainConfig.for_method(method, epochs=1, warmup_epochs=0, batch_size=16, img_size=32, seed=5,
                                 deterministic=True, num_prompts=P)
    runs = []
    for _ in range(2):
        model = _build(method, seed=5, prompt_dropout=cfg.prompt_dropout)
        runs.append(fit(model, train, val, cfg, device=torch.device("cpu")))
    assert runs[0].train_losses == runs[1].train_losses
    assert runs[0].val_accs == runs[1].val_accs
    other = TrainConfig.for_method(method, **{**cfg.model_dump(exclude={"method"}), "seed": 6})
    model = _build(method, seed=6, prompt_dropout=cfg.prompt_dropout)
    assert fit(model, train, val, other, device=torch.device("cpu")).train_losses != runs[0].train_losses


_LEARN_LR = {"full": 1e-2, "mixed": 1e-2, "linear": 1.0, "vpt-shallow": 1.0, "vpt-deep": 1.0, "ft-then-pt": 1.0,
             "lora": 5e-2}
"""Base lrs that learn the tiny task in 16 epochs (a new method without an entry uses its first pilot lr)."""


def _trained_by_any_stage(model: torch.nn.Module, method: Method) -> set[str]:
    """Names of the parameters some stage of ``method`` trains (left configured for the final stage)."""
    if len(get_method(method).stage_names) == 1:
        return set(configure_trainable(model, method))
    return set(configure_trainable(model, method, stage="ft")) | set(configure_trainable(model, method, stage="pt"))


@pytest.mark.parametrize("method", METHODS)
def test_trainable_weights_round_trip_through_a_saved_state_dict(
        method: Method, tmp_path: Path, separable: tuple[ImageTensors, ImageTensors]) -> None:
    """Save/resume: the trained weights saved and loaded into a freshly built model give the same predictions."""
    train, val = separable
    cfg = TrainConfig.for_method(method, epochs=1, warmup_epochs=0, batch_size=16, img_size=32, seed=3,
                                 num_prompts=P)
    trained = _build(method, seed=3, prompt_dropout=cfg.prompt_dropout)
    fit(trained, train, val, cfg, device=torch.device("cpu"))
    names = _trained_by_any_stage(trained, method)
    torch.save({n: p.detach() for n, p in trained.named_parameters() if n in names}, tmp_path / "trainable.pt")
    resumed = _build(method, seed=4, prompt_dropout=cfg.prompt_dropout)  # another init of head/prompts/adapter
    loaded = torch.load(tmp_path / "trainable.pt", weights_only=True)
    _missing, unexpected = resumed.load_state_dict(loaded, strict=False)
    assert unexpected == [] and set(loaded) == _trained_by_any_stage(resumed, method)
    x = val.images[:8].float() / 255.0
    with torch.no_grad():
        assert torch.equal(trained.eval()(x), resumed.eval()(x))


@pytest.mark.slow  # 1-12 s per method on a 2-core CPU (ft-then-pt trains twice)
@pytest.mark.parametrize("method", METHODS)
def test_learns_a_separable_task(method: Method, separable: tuple[ImageTensors, ImageTensors]) -> None:
    train, val = separable
    # 16 epochs: with the paper's per-epoch schedule the warm-up epoch runs at lr 0, and the original head
    # init starts from large logits (initial loss about 9 here)
    lr = _LEARN_LR.get(method, get_method(method).pilot_lrs[0])
    cfg = TrainConfig.for_method(method, epochs=16, warmup_epochs=1, batch_size=16, img_size=32, seed=0,
                                 lr=lr, ft_stage_lr=1e-2, num_prompts=P)
    result = fit(_build(method, prompt_dropout=cfg.prompt_dropout), train, val, cfg, device=torch.device("cpu"))
    assert not result.diverged
    assert result.best_val_acc >= 80.0  # chance is 33 %
    assert result.train_losses[-1] < result.train_losses[0]
    assert result.trainable_params == count_parameters(_build(method))[0]
