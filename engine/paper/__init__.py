"""Typed access to the numbers of Han et al., "Facing the Elephant in the Room: Visual Prompt Tuning or
Full Finetuning?" (ICLR 2024, arXiv 2401.12902).

Every number comes from the packaged ``vpt_or_ft.json`` (a copy of the project's paper-data file, each
value with its source). The file is read once and cached; nothing here imports torch. Values the paper
does not give are ``None`` and stay ``None``: callers must not fill them in.

The VTAB-1k task registry :data:`VTAB_TASKS` lists the 19 tasks in the paper's order (Tables 1-2),
each with its group, task disparity (low for Natural/Specialized, high for Structured), the NOAH
folder name of the shared VTAB-1k layout (``clevr_count``, ``dsprites_loc``, ``cifar`` ...) and
aliases. :func:`get_vtab_task` accepts any of these spellings.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import re
from importlib import resources
from typing import Any, Literal

from pydantic import Field

from engine.config import FrozenModel
from engine.errors import ConfigError, UnknownTaskError
from engine.vocab import BackboneKey, Disparity, Group, Outcome, Side

__all__ = [
    "DATA_SIZES",
    "GROUPS",
    "Backbone",
    "BackboneGroupResult",
    "Disparity",
    "FgvcRow",
    "Group",
    "MethodPair",
    "VTAB_TASKS",
    "VtabTask",
    "TIE_BREAK_DIGITS",
    "Winner",
    "backbone_results",
    "compare",
    "paper_winner",
    "data_size_table",
    "fgvc_table",
    "get_vtab_task",
    "normalize_task_name",
    "paper_claims",
    "paper_data",
    "paper_data_sha256",
    "paper_source",
    "prompt_lengths",
    "vtab1k_results",
    "vtab_oneshot_results",
]

Backbone = BackboneKey
Winner = Outcome

GROUPS: tuple[Group, ...] = ("Natural", "Specialized", "Structured")
DATA_SIZES: tuple[int, ...] = (400, 800, 5000, 10000)
"""Training-set sizes of Tables 5-6 (train:val kept at 4:1)."""

_DATA_FILE = "vpt_or_ft.json"

# NOAH VTAB-1k folder names (ANCHORS section 3) and extra spellings used by other repositories.
_FOLDERS: dict[str, str] = {
    "cifar100": "cifar",
    "caltech101": "caltech101",
    "dtd": "dtd",
    "flowers102": "oxford_flowers102",
    "pets": "oxford_iiit_pet",
    "svhn": "svhn",
    "sun397": "sun397",
    "patch_camelyon": "patch_camelyon",
    "eurosat": "eurosat",
    "resisc45": "resisc45",
    "retinopathy": "diabetic_retinopathy",
    "clevr_count": "clevr_count",
    "clevr_distance": "clevr_dist",
    "dmlab": "dmlab",
    "kitti_distance": "kitti",
    "dsprites_location": "dsprites_loc",
    "dsprites_orientation": "dsprites_ori",
    "smallnorb_azimuth": "smallnorb_azi",
    "smallnorb_elevation": "smallnorb_ele",
}
_EXTRA_ALIASES: dict[str, tuple[str, ...]] = {
    "cifar100": ("cifar_100", "cifar"),
    "flowers102": ("oxford_flowers", "flowers"),
    "pets": ("oxford_pet", "oxford_pets", "pet"),
    "patch_camelyon": ("pcam", "camelyon"),
    "retinopathy": ("diabetic_retinopathy", "dr"),
    "clevr_distance": ("clevr_dist",),
    "kitti_distance": ("kitti", "kitti_dist"),
    "dsprites_location": ("dsprites_loc",),
    "dsprites_orientation": ("dsprites_ori",),
    "smallnorb_azimuth": ("smallnorb_azi",),
    "smallnorb_elevation": ("smallnorb_ele",),
}
_BACKBONE_TABLES: dict[str, tuple[str, str]] = {
    "swin-in21k": ("tables7_9_swin_base_in21k", "Tables 7-9"),
    "mae": ("tables10_12_vitb16_mae", "Tables 10-12"),
    "mocov3": ("tables13_15_vitb16_mocov3", "Tables 13-15"),
}


# The paper sometimes prints one more digit in brackets to break a tie at one decimal. Only one FT-vs-VPT
# pair needs it: Clevr/distance at 800 samples, printed FT '58.2(2)' and VPT '58.2(3)' in Tables 2 and 6
# (vpt_or_ft.json, cell_notes of table2 and table6); read as 58.22 and 58.23, so VPT wins 8 of 8 Structured
# tasks as the text says. Clevr/distance at 400 is printed '54.3(1)' for both: a true tie.
TIE_BREAK_DIGITS: dict[tuple[str, int], tuple[float, float]] = {("clevr_distance", 800): (58.22, 58.23)}
"""(task key, n_train) -> (FT, VPT) with the tie-break digit, ViT-B/16 ImageNet-21k only."""


def compare(ft: float, vpt: float) -> Winner:
    """The winner rule, written once: the higher accuracy wins; equal values are a ``"tie"``."""
    return "VPT" if vpt > ft else "FT" if ft > vpt else "tie"


def paper_winner(key: str, n_train: int | None, ft: float, vpt: float, backbone: str = "in21k") -> Winner:
    """The paper's winner of one cell: :func:`compare`, after the tie-break digits the paper prints.

    Args:
        key: VTAB-1k task key.
        n_train: training-set size of the cell (None for one-shot or FGVC cells).
        ft, vpt: the accuracies as printed (one decimal).
        backbone: the tie-break digits exist only for the ImageNet-21k ViT-B/16 tables.
    """
    digits = TIE_BREAK_DIGITS.get((key, n_train)) if backbone == "in21k" and n_train is not None else None
    if digits is not None and round(digits[0], 1) == ft and round(digits[1], 1) == vpt:
        return compare(*digits)
    return compare(ft, vpt)


class VtabTask(FrozenModel):
    """One VTAB-1k task as the paper reports it."""

    key: str = Field(description="Stable key as in the paper-data file, e.g. 'clevr_count'.")
    name: str = Field(description="Display name, e.g. 'Clevr/count'.")
    group: Group = Field(description="VTAB group.")
    disparity: Disparity = Field(description="Task disparity: low (Natural, Specialized) or high (Structured).")
    num_classes: int = Field(description="Number of classes.")
    prompt_length: int = Field(description="The paper's VPT prompt length (Tables 16-18; given for all 19 tasks).")
    folder: str = Field(description="Folder name in the NOAH VTAB-1k layout, e.g. 'clevr_dist'.")
    aliases: tuple[str, ...] = Field(default=(), description="Other accepted spellings (normalised).")
    winner_800: Side = Field(description="Winner at the 800/200 split (Tables 1-2).")


class MethodPair(FrozenModel):
    """Top-1 accuracy (%) of full finetuning and VPT for one task and setting; None where not printed."""

    ft: float | None = Field(default=None, description="Full finetuning accuracy (%).")
    vpt: float | None = Field(default=None, description="VPT accuracy (%).")

    @property
    def gap(self) -> float | None:
        """VPT minus FT in accuracy points, or None when either is missing."""
        if self.ft is None or self.vpt is None:
            return None
        return self.vpt - self.ft


class BackboneGroupResult(FrozenModel):
    """FT/VPT accuracies of one backbone on one VTAB group (Tables 1-2 or Appendix C)."""

    backbone: Backbone = Field(description="Short backbone name.")
    group: Group = Field(description="VTAB group.")
    source: str = Field(description="Table(s) the numbers come from.")
    results: dict[str, MethodPair] = Field(description="Task key -> FT/VPT accuracy (%).")
    winners: dict[str, Outcome] = Field(
        description="Task key -> winner. Tables 1-2 break printed ties with the paper's extra digit "
        "(e.g. Clevr/distance 58.2(3) vs 58.2(2) -> VPT); elsewhere equal values are a 'tie'."
    )
    vpt_wins_printed: int | None = Field(default=None, description="VPT wins as printed in the table.")

    @property
    def vpt_wins(self) -> int:
        """Tasks VPT wins, recomputed from the per-task values."""
        return sum(1 for w in self.winners.values() if w == "VPT")

    @property
    def ft_wins(self) -> int:
        """Tasks full finetuning wins."""
        return sum(1 for w in self.winners.values() if w == "FT")

    @property
    def n_tasks(self) -> int:
        """Tasks with both numbers."""
        return len(self.winners)


class FgvcRow(FrozenModel):
    """One row of Table 19 (FGVC, ViT-B/16 ImageNet-21k) with its FID to the pretraining data."""

    key: str = Field(description="Dataset key, e.g. 'stanford_cars'.")
    name: str = Field(description="Display name.")
    ft: float = Field(description="Full finetuning accuracy (%).")
    vpt: float = Field(description="VPT accuracy (%).")
    fid: float = Field(description="FID against the paper's (unspecified) ImageNet-21k reference set.")

    @property
    def winner(self) -> Side:
        """The method with the higher accuracy (:func:`compare`; Table 19 prints no tie)."""
        won = compare(self.ft, self.vpt)
        if won == "tie":  # pragma: no cover - the packaged Table 19 has none
            raise ConfigError(f"Table 19 prints a tie for {self.key}; the paper-data file needs a tie-break digit")
        return won


_FGVC_NAMES = {
    "cub200": "CUB-200-2011",
    "nabirds": "NABirds",
    "oxford_flowers": "Oxford Flowers",
    "stanford_dogs": "Stanford Dogs",
    "stanford_cars": "Stanford Cars",
}


@functools.lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(_DATA_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def paper_data() -> dict[str, Any]:
    """Return a deep copy of the whole paper-data document (for sections without a typed accessor)."""
    return copy.deepcopy(_raw())


@functools.lru_cache(maxsize=1)
def paper_data_sha256() -> str:
    """SHA-256 of the packaged paper-data file, recorded in every report's provenance."""
    blob = resources.files(__package__).joinpath(_DATA_FILE).read_bytes()
    return hashlib.sha256(blob).hexdigest()


def paper_source() -> dict[str, Any]:
    """Title, authors, venue, arXiv id and URLs of the paper."""
    return copy.deepcopy(_raw()["source"])


def paper_claims() -> list[str]:
    """The paper's own sentences about the data-size trend (Section 4.2, Appendix A)."""
    return list(_raw()["data_size_trend"]["paper_claims"])


def normalize_task_name(name: str) -> str:
    """Lower-case a task spelling and map separators (space, '-', '/', '.') to '_'; drop a 'vtab' prefix."""
    text = re.sub(r"[\s\-/.]+", "_", name.strip().lower()).strip("_")
    return re.sub(r"^vtab(_?1k)?_", "", text)


def _build_tasks() -> dict[str, VtabTask]:
    lengths = prompt_lengths()
    tasks: dict[str, VtabTask] = {}
    for row in _raw()["tasks"]:
        key = row["key"]
        aliases = {normalize_task_name(a) for a in (row["name"], _FOLDERS[key], *_EXTRA_ALIASES.get(key, ()))}
        aliases.discard(key)
        tasks[key] = VtabTask(
            key=key,
            name=row["name"],
            group=row["group"],
            disparity=row["task_disparity"],
            num_classes=row["num_classes"],
            prompt_length=lengths.get(key, row.get("vpt_prompt_length")),
            folder=_FOLDERS[key],
            aliases=tuple(sorted(aliases)),
            winner_800=_winner_800(key),
        )
    return tasks


def _winner_800(key: str) -> Side:
    """Winner at 800/200 from Tables 1-2 by :func:`paper_winner` (every task has a winner there)."""
    t1, t2 = _raw()["tables"]["table1_vtab1k_natural_specialized"], _raw()["tables"]["table2_vtab1k_structured"]
    ft = {**t1["rows"]["FT"]["natural"], **t1["rows"]["FT"]["specialized"], **t2["rows"]["FT"]["values"]}
    vpt = {**t1["rows"]["VPT"]["natural"], **t1["rows"]["VPT"]["specialized"], **t2["rows"]["VPT"]["values"]}
    won = paper_winner(key, 800, float(ft[key]), float(vpt[key]))
    if won == "tie":  # pragma: no cover - the packaged tables have none at 800
        raise ConfigError(f"Tables 1-2 print a tie for {key}; the paper-data file needs its tie-break digit")
    return won


def prompt_lengths() -> dict[str, int]:
    """The paper's VPT prompt length per task (Tables 16-18)."""
    table = _raw()["tables"]["tables16_18_vpt_prompt_length"]
    return {k: int(v) for g in ("natural", "specialized", "structured") for k, v in table[g].items()}


VTAB_TASKS: dict[str, VtabTask] = _build_tasks()
"""The 19 VTAB-1k tasks in the paper's order (Natural, Specialized, Structured)."""

_LOOKUP: dict[str, str] = {}
for _task in VTAB_TASKS.values():
    for _spelling in (_task.key, *_task.aliases):
        _LOOKUP.setdefault(_spelling, _task.key)
del _task, _spelling


def get_vtab_task(name: str) -> VtabTask:
    """Return a VTAB-1k task by key, NOAH folder name, display name or alias (case-insensitive).

    Args:
        name: e.g. ``"clevr_count"``, ``"Clevr/count"``, ``"dsprites_loc"``, ``"cifar"``.

    Raises:
        UnknownTaskError: no task has that spelling; the message lists close matches.
    """
    norm = normalize_task_name(name)
    key = _LOOKUP.get(norm)
    if key is not None:
        return VTAB_TASKS[key]
    close = difflib.get_close_matches(norm, list(_LOOKUP), n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
    raise UnknownTaskError(
        f"unknown VTAB-1k task {name!r}{hint} Known tasks: {', '.join(VTAB_TASKS)}"
    )


_METHOD_ROWS = ("FT", "VPT", "Mixed", "FT-then-PT")


def vtab1k_results(method: Literal["FT", "VPT", "Mixed", "FT-then-PT"] = "FT") -> dict[str, float]:
    """Per-task accuracy (%) at the 800/200 split, ViT-B/16 ImageNet-21k (Tables 1-2), in paper order."""
    if method not in _METHOD_ROWS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(_METHOD_ROWS)}")
    t1 = _raw()["tables"]["table1_vtab1k_natural_specialized"]["rows"][method]
    t2 = _raw()["tables"]["table2_vtab1k_structured"]["rows"][method]
    values = {**t1["natural"], **t1["specialized"], **t2["values"]}
    return {k: float(values[k]) for k in VTAB_TASKS}


def vtab_oneshot_results(method: Side = "FT") -> dict[str, float]:
    """Per-task one-shot accuracy (%) (Tables 3-4), in paper order."""
    if method not in ("FT", "VPT"):
        raise ConfigError(f"unknown method {method!r}; choose FT or VPT")
    t3 = _raw()["tables"]["table3_oneshot_natural_specialized"]["rows"][method]
    t4 = _raw()["tables"]["table4_oneshot_structured"]["rows"][method]
    values = {**t3["natural"], **t3["specialized"], **t4["values"]}
    return {k: float(values[k]) for k in VTAB_TASKS}


@functools.lru_cache(maxsize=1)
def _data_size_table() -> dict[str, dict[int, MethodPair]]:
    per_task = _raw()["data_size_trend"]["per_task"]
    return {
        key: {int(n): MethodPair(ft=cell["FT"], vpt=cell["VPT"]) for n, cell in per_task[key].items()}
        for key in VTAB_TASKS
    }


def data_size_table() -> dict[str, dict[int, MethodPair]]:
    """Per-task FT/VPT accuracy (%) at 400, 800, 5000 and 10000 training samples (Tables 5-6).

    Sizes a dataset is too small for are present with ``None`` values (printed '-').
    """
    return {k: dict(v) for k, v in _data_size_table().items()}


def backbone_results(backbone: Backbone) -> dict[Group, BackboneGroupResult]:
    """FT/VPT accuracies per VTAB group for one pretrained backbone.

    ``in21k`` (the paper's default supervised ViT-B/16) reads Tables 1-2; ``swin-in21k``, ``mae`` and
    ``mocov3`` read Appendix C (Tables 7-9, 10-12 and 13-15).

    Raises:
        ConfigError: unknown backbone name.
    """
    tables = _raw()["tables"]
    out: dict[Group, BackboneGroupResult] = {}
    if backbone == "in21k":
        ft, vpt = vtab1k_results("FT"), vtab1k_results("VPT")
        t1 = tables["table1_vtab1k_natural_specialized"]["rows"]["VPT"]
        printed = {
            "Natural": t1["natural_wins_vs_FT_printed"],
            "Specialized": t1["specialized_wins_vs_FT_printed"],
            "Structured": tables["table2_vtab1k_structured"]["rows"]["VPT"]["wins_vs_FT_printed"],
        }
        for group in GROUPS:
            keys = [k for k, t in VTAB_TASKS.items() if t.group == group]
            out[group] = BackboneGroupResult(
                backbone="in21k",
                group=group,
                source="Table 1" if group != "Structured" else "Table 2",
                results={k: MethodPair(ft=ft[k], vpt=vpt[k]) for k in keys},
                winners={k: VTAB_TASKS[k].winner_800 for k in keys},
                vpt_wins_printed=printed[group],
            )
        return out
    if backbone not in _BACKBONE_TABLES:
        raise ConfigError(f"unknown backbone {backbone!r}; choose one of in21k, {', '.join(_BACKBONE_TABLES)}")
    table_key, source = _BACKBONE_TABLES[backbone]
    table = tables[table_key]
    for group in GROUPS:
        section = table[group.lower()]
        results = {k: MethodPair(ft=section["FT"][k], vpt=section["VPT"][k]) for k in section["FT"]}
        out[group] = BackboneGroupResult(
            backbone=backbone,
            group=group,
            source=source,
            results=results,
            winners={k: paper_winner(k, 800, p.ft, p.vpt, backbone)
                     for k, p in results.items() if p.ft is not None and p.vpt is not None},
            vpt_wins_printed=section.get("VPT_wins_printed"),
        )
    return out


def fgvc_table() -> list[FgvcRow]:
    """Table 19: the five FGVC datasets with FT/VPT accuracy and FID (ViT-B/16 ImageNet-21k)."""
    table = _raw()["tables"]["table19_fgvc"]
    return [
        FgvcRow(key=k, name=_FGVC_NAMES.get(k, k), ft=table["FT"][k], vpt=table["VPT"][k], fid=table["fid"][k])
        for k in table["columns"]
    ]
