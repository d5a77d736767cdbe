"""Done-when checks of issue 11: a pilot decides when FT and VPT truly differ, and only then.

Planted datasets with a tiny random ViT (seconds on one CPU thread):

* **one method must win**: labels are the red channel, and the backbone's patch embedding ignores red
  (its red input weights are zero, a backbone "pretrained" blind to the feature the task needs). VPT
  keeps the backbone frozen, so it cannot see the label at all; full finetuning can learn the red weights.
* **they cannot differ**: every image is the same picture and the two classes are balanced, so any
  classifier scores exactly 50 % on the comparison images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from advisor.rules import read_pilot
from advisor.schemas import PilotVerdict
from advisor.usecases.pilot import pilot_evidence
from engine.config.train import BackboneSpec, PilotConfig
from engine.data.index import index_dataset
from engine.train.pilot import PilotResult, plan_pilot, run_pilot
from tests.conftest import write_png
from tests.gen_vit import TINY_VIT, TINY_VIT_NAME, make_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")


def _write(root: Path, image: Callable[[int, np.random.Generator], np.ndarray], per_class: int = 40) -> Path:
    gen = np.random.default_rng(0)
    for c in range(2):
        for i in range(per_class):
            write_png(root / f"class{c}" / f"{i}.png", image(c, gen))
    return root


def _red_label(c: int, gen: np.random.Generator) -> np.ndarray:
    img = gen.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    img[..., 0] = 215 if c else 40  # only red carries the label
    return img


def _red_blind_backbone() -> nn.Module:
    backbone = make_vit()
    with torch.no_grad():
        backbone.patch_embed.proj.weight[:, 0] = 0.0
    return backbone


def _config(**kw: object) -> PilotConfig:
    # 30 points are detectable with 18 comparison images (paired test, 20 % assumed disagreement)
    backbone = BackboneSpec(model=TINY_VIT_NAME, random_init=True, model_kwargs=TINY_VIT)
    base: dict[str, object] = dict(methods=("full", "vpt-deep"), backbone=backbone, num_prompts=2, seeds=2,
                                   batch_size=16, budget_s=600.0,
                                   epochs=8, deterministic=True, min_detectable=30.0,
                                   lr_grid={"full": (1e-2,), "vpt-deep": (1.0,)})
    return PilotConfig(**{**base, **kw})  # type: ignore[arg-type]


def _verdict(root: Path, backbone: nn.Module, store: Path) -> tuple[PilotResult, PilotVerdict]:
    index = index_dataset(root)
    config = _config()
    plan = plan_pilot(index, config, device=CPU, backbone=backbone)
    assert plan.decisive_by_design and plan.n_compare >= 18
    result = run_pilot(index, config, store_dir=store, device=CPU, plan=plan, backbone=backbone)
    evidence = pilot_evidence(result)
    assert evidence is not None and evidence.paired is not None
    return result, read_pilot(evidence)[0]


def test_verdict_is_decisive_when_one_method_must_win(tmp_path: Path) -> None:
    root = _write(tmp_path / "red", _red_label)
    result, verdict = _verdict(root, _red_blind_backbone(), tmp_path / "store")
    acc = {m.method: m.compare_acc for m in result.methods}
    assert acc["full"] >= 90 and acc["vpt-deep"] <= 70  # FT learns red; frozen red-blind VPT cannot
    assert verdict.decisive and verdict.winner == "FT"
    assert verdict.interval is not None and verdict.interval[1] < 0


def test_verdict_is_not_decisive_when_the_methods_cannot_differ(tmp_path: Path) -> None:
    picture = np.random.default_rng(1).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    root = _write(tmp_path / "same", lambda c, gen: picture)
    result, verdict = _verdict(root, make_vit(), tmp_path / "store")
    assert {m.compare_acc for m in result.methods} == {50.0}
    assert not verdict.decisive and verdict.winner is None
    assert verdict.interval is not None
    lo, hi = verdict.interval
    assert lo <= 0 <= hi


def test_the_same_pilot_on_a_dozen_images_is_not_decisive_by_design(tmp_path: Path) -> None:
    root = _write(tmp_path / "red", _red_label, per_class=6)  # 12 images: far too few for 30 points
    plan = plan_pilot(index_dataset(root), _config(), device=CPU, backbone=_red_blind_backbone())
    assert not plan.decisive_by_design and plan.sufficient_labeled is not None and plan.sufficient_labeled > 12
