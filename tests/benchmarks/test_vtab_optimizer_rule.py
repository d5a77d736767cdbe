"""The optimiser of every paper grid point, built through the real training code (issue 21).

The original ``src/solver/optimizer.py`` (KMnP/vpt, used by the paper) takes its AdamW branch only at a
positive weight decay, and then trains with 0.01; at weight decay 0 it builds SGD with momentum 0.9. These
tests pin, for every (lr, wd) point of the paper's FT and VPT grids, the optimiser class, its learning rate,
momentum and the weight decay of each parameter group, as ``fit`` (``engine.train.loop.stage_optimizer``) and
the batched VPT sweep build them on a tiny random ViT; and that the other choice (``optimizer_rule="nominal"``)
stays available.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from benchmarks.vtab.layout import LayoutReport, TaskCheck
from benchmarks.vtab.protocol import (
    FT_LRS,
    FT_WARMUP_EPOCHS,
    VPT_LRS,
    WEIGHT_DECAYS,
    get_protocol,
    parse_detail_overrides,
    resolve_optimizer,
)
from benchmarks.vtab.run import SweepRequest, plan_final, plan_search
from benchmarks.vtab.store import TrialStore
from engine.config.train import TrainConfig
from engine.data.tensors import ImageTensors
from engine.train import loop
from engine.train.batched_vpt import VptRunSpec, _start_sweep
from engine.train.transfer import build_model, configure_trainable
from tests.gen_vit import make_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")
C = 3
PAPER = get_protocol("paper", img_size=32)


@pytest.fixture(scope="module")
def backbone() -> torch.nn.Module:
    return make_vit(seed=0)


def _optimizer(backbone: torch.nn.Module, cfg: TrainConfig) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model and optimiser ``fit`` trains ``cfg`` with (one stage)."""
    model = build_model(copy.deepcopy(backbone), cfg.method, C, **cfg.model_options())
    configure_trainable(model, cfg.method)
    return model, loop.stage_optimizer(model, cfg, device=CPU)


def _groups(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, float]:
    """Trainable parameter name -> the weight decay of its group (each trainable parameter in exactly one)."""
    where: dict[int, float] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            assert id(p) not in where, "a parameter is in two groups"
            where[id(p)] = group["weight_decay"]
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert set(where) == {id(p) for p in trainable.values()}, "groups must hold exactly the trainable parameters"
    return {name: where[id(p)] for name, p in trainable.items()}


def test_the_original_rule_per_ft_grid_point() -> None:
    points = PAPER.grid_points("ft")
    assert [(p.lr, p.weight_decay) for p in points] == [(lr, wd) for lr in FT_LRS for wd in WEIGHT_DECAYS]
    for p in points:
        if p.weight_decay > 0:  # the AdamW branch, weight decay hard-coded to 0.01
            assert (p.optimizer, p.effective_weight_decay, p.momentum) == ("adamw", 0.01, None)
        else:  # the AdamW branch is skipped: SGD with SOLVER.MOMENTUM, no weight decay
            assert (p.optimizer, p.effective_weight_decay, p.momentum) == ("sgd", 0.0, 0.9)
        assert p.effective_lr == pytest.approx(p.lr * 128 / 256)
    # the three positive wds of one lr train one AdamW run: trained once, the others point to it
    merged = [p for p in points if p.same_run_as is not None]
    assert len(merged) == 8 and all(m.same_run_as == (m.lr, 0.01) for m in merged)
    assert PAPER.grid("ft") == [(lr, wd) for lr in FT_LRS for wd in (0.01, 0.0)]
    assert sum(p.optimizer == "sgd" for p in points) == len(points) // 4  # a quarter of the paper's FT grid
    # VPT is SGD at every point with the grid's own weight decay
    vpt = PAPER.grid_points("vpt")
    assert len(vpt) == 40 and {p.optimizer for p in vpt} == {"sgd"}
    assert all(p.effective_weight_decay == p.weight_decay and p.same_run_as is None for p in vpt)


def test_the_rule_is_idempotent_and_leaves_sgd_alone() -> None:
    for wd in (*WEIGHT_DECAYS, 0.5):
        resolved = resolve_optimizer("adamw", wd)
        assert resolve_optimizer(*resolved) == resolved
        assert resolve_optimizer("sgd", wd) == ("sgd", wd)
        assert resolve_optimizer("adamw", wd, "nominal") == ("adamw", wd)


@pytest.mark.parametrize("point", PAPER.grid_points("ft"), ids=lambda p: f"lr{p.lr:g}-wd{p.weight_decay:g}")
def test_ft_optimizer_at_every_paper_grid_point(backbone: torch.nn.Module, point) -> None:  # noqa: ANN001
    cfg = PAPER.trial_train("ft", lr=point.lr, weight_decay=point.weight_decay, seed=42, num_prompts=1)
    model, opt = _optimizer(backbone, cfg)
    decay = _groups(model, opt)
    weights = {n for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1}
    assert weights and "head.weight" in weights and "blocks.0.attn.qkv.weight" in weights
    assert {n: wd for n, wd in decay.items() if wd > 0}.keys() <= weights
    for group in opt.param_groups:
        assert group["lr"] == pytest.approx(point.lr * 128 / 256)
    if point.weight_decay > 0:
        assert type(opt) is torch.optim.AdamW
        assert {g["eps"] for g in opt.param_groups} == {1e-6}  # the original AdamW class's default
        assert {decay[n] for n in weights} == {0.01}  # whatever positive wd the grid names
        assert {wd for n, wd in decay.items() if n not in weights} == {0.0}  # biases and norms: no decay
    else:
        assert type(opt) is torch.optim.SGD
        assert set(decay.values()) == {0.0}
        for group in opt.param_groups:
            assert (group["momentum"], group["dampening"], group["nesterov"]) == (0.9, 0, False)


@pytest.mark.parametrize("lr", VPT_LRS)
def test_vpt_optimizer_at_every_paper_grid_point(backbone: torch.nn.Module, lr: float) -> None:
    for wd in WEIGHT_DECAYS:
        cfg = PAPER.trial_train("vpt", lr=lr, weight_decay=wd, seed=42, num_prompts=2)
        model, opt = _optimizer(backbone, cfg)
        assert type(opt) is torch.optim.SGD
        decay = _groups(model, opt)
        # the original SGD branch decays every trainable parameter but the head bias (optimizer.py 58-62)
        assert set(decay) == {"prompts", "backbone.head.weight", "backbone.head.bias"}
        assert decay == {"prompts": wd, "backbone.head.weight": wd, "backbone.head.bias": 0.0}
        for group in opt.param_groups:
            assert (group["lr"], group["momentum"], group["nesterov"]) == (pytest.approx(lr * 64 / 256), 0.9, False)


def test_the_batched_vpt_sweep_builds_the_same_groups_for_the_whole_grid(backbone: torch.nn.Module) -> None:
    cfgs = [PAPER.trial_train("vpt", lr=lr, weight_decay=wd, seed=42, num_prompts=2) for lr, wd in PAPER.grid("vpt")]
    specs = [VptRunSpec(lr=c.lr, weight_decay=c.weight_decay, seed=c.seed) for c in cfgs]
    images = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
    state = _start_sweep(copy.deepcopy(backbone), (images, torch.arange(4) % C), specs, cfgs[0], num_classes=C,
                         device=CPU, chunk=40, eval_batch_size=4, on_progress=None)
    opt = state.optimizer
    assert type(opt) is torch.optim.SGD and len(opt.param_groups) == 2 * len(specs)
    for k, spec in enumerate(specs):
        decayed, plain = opt.param_groups[2 * k], opt.param_groups[2 * k + 1]
        assert (decayed["weight_decay"], plain["weight_decay"]) == (spec.weight_decay, 0.0)
        # peak lr (the per-epoch warm-up starts epoch 0 at lr 0; the scheduler keeps the peak as initial_lr)
        assert decayed["initial_lr"] == plain["initial_lr"] == pytest.approx(spec.lr * 64 / 256)
        assert decayed["momentum"] == plain["momentum"] == 0.9


def test_nominal_rule_trains_adamw_with_the_grid_wd_everywhere(backbone: torch.nn.Module) -> None:
    nominal = get_protocol("paper", img_size=32, optimizer_rule="nominal")
    assert nominal.grid("ft") == [(lr, wd) for lr in FT_LRS for wd in WEIGHT_DECAYS]
    for lr, wd in nominal.grid("ft"):
        cfg = nominal.trial_train("ft", lr=lr, weight_decay=wd, seed=42, num_prompts=1)
        model, opt = _optimizer(backbone, cfg)
        assert type(opt) is torch.optim.AdamW
        assert {d for n, d in _groups(model, opt).items() if n == "head.weight"} == {wd}
    assert get_protocol("paper", **parse_detail_overrides(["optimizer_rule=nominal"])).optimizer_rule == "nominal"
    torch_eps = get_protocol("paper", img_size=32, adamw_eps=1e-8).trial_train(
        "ft", lr=1e-3, weight_decay=0.01, seed=42, num_prompts=1)
    assert {g["eps"] for g in _optimizer(backbone, torch_eps)[1].param_groups} == {1e-8}


def test_fit_trains_with_the_resolved_optimizer(backbone: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """fit itself (not only the helper) trains FT at wd 0 with SGD and at wd 0.001 with AdamW at 0.01."""
    built: list[torch.optim.Optimizer] = []

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        built.append(real(*args, **kwargs))
        return built[-1]

    real = loop.stage_optimizer
    monkeypatch.setattr(loop, "stage_optimizer", spy)
    short = get_protocol("paper", img_size=32, epochs=1)
    gen = torch.Generator().manual_seed(0)
    data = ImageTensors(torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(6) % C)
    for wd, kind, group_wd in ((0.0, torch.optim.SGD, 0.0), (0.001, torch.optim.AdamW, 0.01)):
        cfg = short.trial_train("ft", lr=1e-3, weight_decay=wd, seed=42, num_prompts=1)
        model = build_model(copy.deepcopy(backbone), cfg.method, C, **cfg.model_options())
        loop.fit(model, data, data, cfg, device=CPU)
        assert type(built[-1]) is kind
        assert max(g["weight_decay"] for g in built[-1].param_groups) == group_wd


def test_final_runs_keep_the_selected_points_optimizer(tmp_path: Path) -> None:
    """A final run copies the selected search trial: FT selected at wd 0 trains its seeds with SGD."""
    request = SweepRequest(root=Path("/vtab"), protocol=PAPER, tasks=["dtd"], methods=("ft",))
    layout = LayoutReport(root="/vtab", tasks=[TaskCheck(key="dtd", folder="dtd", status="ok", sizes=[800])])
    search = plan_search(request, layout)
    assert len(search) == 8 and {c.train.optimizer for c in search} == {"sgd", "adamw"}
    with TrialStore(tmp_path / "store.sqlite") as store:
        store.mark_running((c.key, c) for c in search)
        for c in search:  # the SGD point at lr 5e-3 wins
            acc = 90.0 if (c.train.optimizer, c.train.lr) == ("sgd", 5e-3) else 50.0
            store.mark_finished(c.key, metrics={"eval_acc": acc}, timings={}, versions={}, device="cpu")
        final = plan_final(request, search, store)
    assert [c.train.seed for c in final] == list(PAPER.final_seeds)
    assert {(c.phase, c.train.optimizer, c.train.lr, c.train.weight_decay, c.train.momentum) for c in final} == {
        ("final", "sgd", 5e-3, 0.0, 0.9)}


def test_ft_warm_up_and_batch_are_fields_with_both_sources() -> None:
    ft = PAPER.trial_train("ft", lr=1e-3, weight_decay=0.0, seed=42, num_prompts=1)
    vpt = PAPER.trial_train("vpt", lr=1.0, weight_decay=0.0, seed=42, num_prompts=1)
    assert (ft.warmup_epochs, ft.batch_size) == (FT_WARMUP_EPOCHS, 128) == (5, 128)  # base-finetune.yaml; README
    assert (vpt.warmup_epochs, vpt.batch_size) == (10, 64)  # base-prompt.yaml; README
    paper_text = get_protocol("paper", **parse_detail_overrides(["ft_warmup_epochs=10", "ft_batch_size=224"]))
    ft10 = paper_text.trial_train("ft", lr=1e-3, weight_decay=0.0, seed=42, num_prompts=1)
    assert (ft10.warmup_epochs, ft10.batch_size, ft10.effective_lr) == (10, 224, pytest.approx(1e-3 * 224 / 256))
