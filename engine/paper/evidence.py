"""Every FT-vs-VPT experiment of Han et al. (ICLR 2024) as one list of cells.

A cell is one task at one training size with one backbone, with the FT and VPT accuracies the paper
prints and the winner by :func:`engine.paper.paper_winner` (tie-break digits included). The cells are:

* ViT-B/16 ImageNet-21k (``in21k``): Tables 1-2 at 800 samples, Table 5 (Natural, Specialized) and
  Table 6 (Structured) at 400, 5,000 and 10,000, the one-shot Tables 3-4 (one image per class, so
  ``n_train`` is the number of classes), and the five FGVC datasets of Table 19 with their FID (full
  training sets; their sizes are not in the paper data, so ``n_train`` is None).
* Swin-B ImageNet-21k, ViT-B/16 MAE and ViT-B/16 MoCo v3 (Appendix C, Tables 7-15) at 800 samples.

At 800 the values of Tables 1-2 are used (Table 5 reprints them, with VPT Resisc45 83.3 for Table 1's
83.4; the winner is the same). Pure, no torch.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field

from engine.config import FrozenModel
from engine.paper import (
    DATA_SIZES,
    VTAB_TASKS,
    Backbone,
    Disparity,
    Winner,
    backbone_results,
    data_size_table,
    fgvc_table,
    paper_winner,
    vtab1k_results,
    vtab_oneshot_results,
)

__all__ = ["Experiment", "TABLE_NUMBERS", "experiments", "task_cells", "fgvc_cells"]

Setting = Literal["sized", "one-shot", "fgvc"]

TABLE_NUMBERS: dict[tuple[str, str], str] = {
    ("in21k", "Natural"): "Table 1", ("in21k", "Specialized"): "Table 1", ("in21k", "Structured"): "Table 2",
    ("swin-in21k", "Natural"): "Table 7", ("swin-in21k", "Specialized"): "Table 8",
    ("swin-in21k", "Structured"): "Table 9",
    ("mae", "Natural"): "Table 10", ("mae", "Specialized"): "Table 11", ("mae", "Structured"): "Table 12",
    ("mocov3", "Natural"): "Table 13", ("mocov3", "Specialized"): "Table 14", ("mocov3", "Structured"): "Table 15",
}
"""(backbone, VTAB group) -> the table printing its 800-sample results (Tables 1-2; Appendix C Tables 7-15)."""


class Experiment(FrozenModel):
    """One FT-vs-VPT comparison printed by the paper."""

    key: str = Field(description="VTAB-1k task key, or the FGVC dataset key for Table 19.")
    name: str = Field(description="Display name.")
    group: str = Field(description="VTAB group (Natural, Specialized, Structured) or 'FGVC'.")
    disparity: Disparity = Field(description="Task disparity (FGVC is fine-grained classification: low).")
    backbone: Backbone = Field(description="Pretrained backbone.")
    setting: Setting = Field(description="'sized' (Tables 1-2, 5-15), 'one-shot' (Tables 3-4) or 'fgvc' (Table 19).")
    n_train: int | None = Field(description="Training images (one-shot: one per class); None for Table 19.")
    ft: float = Field(description="Full finetuning accuracy (%), as printed.")
    vpt: float = Field(description="VPT accuracy (%), as printed.")
    winner: Winner = Field(description="By engine.paper.paper_winner (tie-break digits included).")
    fid: float | None = Field(default=None, description="FID against ImageNet-21k (Table 19 only).")
    table: str = Field(description="The table printing this cell, e.g. 'Table 5'.")

    @property
    def gap(self) -> float:
        """VPT minus FT, in points, at the paper's precision (two decimals at most)."""
        return round(self.vpt - self.ft, 2)


def _sized_table(key: str, n: int) -> str:
    low = VTAB_TASKS[key].disparity == "low"
    if n == 800:
        return "Table 1" if low else "Table 2"
    return "Table 5" if low else "Table 6"


def _vtab_cell(key: str, setting: Setting, n: int, ft: float, vpt: float, table: str) -> Experiment:
    task = VTAB_TASKS[key]
    return Experiment(key=key, name=task.name, group=task.group, disparity=task.disparity, backbone="in21k",
                      setting=setting, n_train=n, ft=ft, vpt=vpt, table=table,
                      winner=paper_winner(key, n if setting == "sized" else None, ft, vpt))


def _in21k() -> list[Experiment]:
    out: list[Experiment] = []
    ft800, vpt800 = vtab1k_results("FT"), vtab1k_results("VPT")
    ft1, vpt1 = vtab_oneshot_results("FT"), vtab_oneshot_results("VPT")
    sized = data_size_table()
    for key, task in VTAB_TASKS.items():
        out.append(_vtab_cell(key, "one-shot", task.num_classes, ft1[key], vpt1[key],
                              "Table 3" if task.disparity == "low" else "Table 4"))
        for n in DATA_SIZES:
            pair = sized[key][n]
            ft, vpt = (ft800[key], vpt800[key]) if n == 800 else (pair.ft, pair.vpt)
            if ft is None or vpt is None:
                continue  # printed '-': the dataset is too small for this size
            out.append(_vtab_cell(key, "sized", n, ft, vpt, _sized_table(key, n)))
    return out


def _other_backbones() -> list[Experiment]:
    out: list[Experiment] = []
    others: tuple[Backbone, ...] = ("swin-in21k", "mae", "mocov3")
    for backbone in others:
        for group, result in backbone_results(backbone).items():
            for key, pair in result.results.items():
                if pair.ft is None or pair.vpt is None:
                    continue
                task = VTAB_TASKS[key]
                out.append(Experiment(
                    key=key, name=task.name, group=group, disparity=task.disparity, backbone=backbone,
                    setting="sized", n_train=800, ft=pair.ft, vpt=pair.vpt, winner=result.winners[key],
                    table=TABLE_NUMBERS[(backbone, group)]))
    return out


def fgvc_cells() -> list[Experiment]:
    """Table 19: the five FGVC datasets with their FID (ViT-B/16 ImageNet-21k, full training sets)."""
    return [Experiment(key=r.key, name=r.name, group="FGVC", disparity="low", backbone="in21k", setting="fgvc",
                       n_train=None, ft=r.ft, vpt=r.vpt, winner=r.winner, fid=r.fid, table="Table 19")
            for r in fgvc_table()]


@functools.lru_cache(maxsize=1)
def _all() -> tuple[Experiment, ...]:
    return (*_in21k(), *_other_backbones(), *fgvc_cells())


def experiments() -> list[Experiment]:
    """Every cell of Tables 1-15 and 19 (Tables 16-18 vary the prompt length, Table 20 is LoRA: not FT vs VPT)."""
    return list(_all())


def task_cells(key: str, backbone: Backbone = "in21k") -> list[Experiment]:
    """The VTAB-1k task's own cells for one backbone, smallest training set first (one-shot included)."""
    cells = [c for c in _all() if c.key == key and c.backbone == backbone and c.setting != "fgvc"]
    return sorted(cells, key=lambda c: c.n_train or 0)
