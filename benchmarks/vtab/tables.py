"""Tables 1-2 (and 5-6 for other sizes) style comparison: our reproduction against the paper.

Per task: the paper's FT and VPT accuracy, ours (mean and std over the final seeds), the differences
and whether each lies beyond seed noise (tolerances in ``expected.toml``); per group: means over the
tasks both sides have, and VPT win counts. Rendered here to Markdown, CSV and JSON; the rich table
lives in ``advisor/render/vtab.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from functools import lru_cache
from importlib import resources
from typing import Any

from pydantic import Field

from benchmarks.vtab.run import SweepReport
from benchmarks.vtab.tasks import TASKS
from engine.config import FrozenModel
from engine.paper import compare, data_size_table, paper_winner, vtab1k_results

__all__ = ["Tolerance", "TaskRow", "GroupRow", "VtabTable", "load_tolerance", "build_table", "to_markdown",
           "to_csv", "to_json"]


class Tolerance(FrozenModel):
    """How far ours may be from the paper (see ``expected.toml``)."""

    z: float = Field(2.0, description="Multiples of the combined standard error.")
    min_points: float = Field(1.0, description="Differences below this are never flagged.")
    paper_run_std: float = Field(1.0, description="Assumed per-run std of the paper's numbers.")
    paper_seeds: int = Field(5, description="Runs behind each paper number.")
    protocol: str = Field("paper", description="Only this protocol is compared.")


@lru_cache(maxsize=1)
def load_tolerance() -> Tolerance:
    """Read ``benchmarks/vtab/expected.toml``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef,unused-ignore]
    data = tomllib.loads(resources.files("benchmarks.vtab").joinpath("expected.toml").read_text(encoding="utf-8"))
    return Tolerance(**data["tolerance"], protocol=data["targets"]["protocol"])


class TaskRow(FrozenModel):
    """One task at one size."""

    task: str
    name: str
    group: str
    n_train: int
    paper_ft: float | None = None
    paper_vpt: float | None = None
    ours_ft: float | None = None
    ours_ft_std: float | None = None
    ours_vpt: float | None = None
    ours_vpt_std: float | None = None
    seeds_ft: int = 0
    seeds_vpt: int = 0
    diff_ft: float | None = Field(None, description="ours - paper (FT), points.")
    diff_vpt: float | None = Field(None, description="ours - paper (VPT), points.")
    flag_ft: bool = Field(False, description="FT difference beyond seed noise.")
    flag_vpt: bool = Field(False, description="VPT difference beyond seed noise.")
    winner_paper: str | None = None
    winner_ours: str | None = None


class GroupRow(FrozenModel):
    """Group means and VPT win counts (over tasks where both sides have both methods)."""

    group: str
    n_train: int
    n_tasks: int
    paper_ft: float | None = None
    paper_vpt: float | None = None
    ours_ft: float | None = None
    ours_vpt: float | None = None
    paper_vpt_wins: int = 0
    ours_vpt_wins: int = 0


class VtabTable(FrozenModel):
    """The comparison, ready to render."""

    protocol: str
    compared: bool = Field(description="False for protocols that are not compared (quick): no flags.")
    rows: list[TaskRow]
    groups: list[GroupRow]
    notes: list[str] = Field(default_factory=list)


def _paper(task: str, n_train: int) -> tuple[float | None, float | None]:
    if n_train == 800:
        return vtab1k_results("FT").get(task), vtab1k_results("VPT").get(task)
    pair = data_size_table().get(task, {}).get(n_train)
    return (pair.ft, pair.vpt) if pair is not None else (None, None)


def _flag(ours: float | None, std: float | None, n: int, paper: float | None, tol: Tolerance) -> bool:
    if ours is None or paper is None or n == 0:
        return False
    run_std = std if (std is not None and n > 1) else tol.paper_run_std
    noise = math.sqrt(run_std**2 / n + tol.paper_run_std**2 / tol.paper_seeds)
    return abs(ours - paper) > max(tol.min_points, tol.z * noise)


def _paper_winner(task: str, n_train: int, ft: float | None, vpt: float | None) -> str | None:
    """The paper's winner by engine.paper's one rule, with its tie-break digits (Clevr/distance 58.2(3) vs (2))."""
    return None if ft is None or vpt is None else paper_winner(task, n_train, ft, vpt)


def _winner(ft: float | None, vpt: float | None) -> str | None:
    return None if ft is None or vpt is None else compare(ft, vpt)


def build_table(report: SweepReport, tolerance: Tolerance | None = None) -> VtabTable:
    """Compare a sweep's cells with the paper (Tables 1-2 at 800, Tables 5-6 at other sizes)."""
    tol = tolerance or load_tolerance()
    compared = report.request.protocol.name == tol.protocol
    cells = {(c.task, c.method, c.n_train): c for c in report.cells}
    keys = sorted({(t, n) for t, _, n in cells}, key=lambda k: (k[1], list(TASKS).index(k[0])))
    rows: list[TaskRow] = []
    for task, n in keys:
        spec = TASKS[task]
        pft, pvpt = _paper(task, n)
        ft, vpt = cells.get((task, "ft", n)), cells.get((task, "vpt", n))
        oft = ft.mean if ft else None
        ovpt = vpt.mean if vpt else None
        rows.append(TaskRow(
            task=task, name=spec.name, group=spec.group, n_train=n, paper_ft=pft, paper_vpt=pvpt,
            ours_ft=oft, ours_ft_std=ft.std if ft else None, ours_vpt=ovpt, ours_vpt_std=vpt.std if vpt else None,
            seeds_ft=len(ft.test_accs) if ft else 0, seeds_vpt=len(vpt.test_accs) if vpt else 0,
            diff_ft=None if oft is None or pft is None else oft - pft,
            diff_vpt=None if ovpt is None or pvpt is None else ovpt - pvpt,
            flag_ft=compared and _flag(oft, ft.std if ft else None, len(ft.test_accs) if ft else 0, pft, tol),
            flag_vpt=compared and _flag(ovpt, vpt.std if vpt else None, len(vpt.test_accs) if vpt else 0, pvpt, tol),
            winner_paper=_paper_winner(task, n, pft, pvpt), winner_ours=_winner(oft, ovpt)))
    groups: list[GroupRow] = []
    for n in sorted({r.n_train for r in rows}):
        for group in ("Natural", "Specialized", "Structured"):
            members = [r for r in rows if r.group == group and r.n_train == n]
            full = [r for r in members if None not in (r.paper_ft, r.paper_vpt, r.ours_ft, r.ours_vpt)]
            if not members:
                continue

            def mean(attr: str, rs: list[TaskRow] = full) -> float | None:
                return statistics.fmean(getattr(r, attr) for r in rs) if rs else None

            groups.append(GroupRow(group=group, n_train=n, n_tasks=len(full), paper_ft=mean("paper_ft"),
                                   paper_vpt=mean("paper_vpt"), ours_ft=mean("ours_ft"), ours_vpt=mean("ours_vpt"),
                                   paper_vpt_wins=sum(r.winner_paper == "VPT" for r in full),
                                   ours_vpt_wins=sum(r.winner_ours == "VPT" for r in full)))
    notes = [] if compared else [f"protocol {report.request.protocol.name!r} is a smoke test: numbers are not "
                                 "comparable with the paper and nothing is flagged"]
    if report.request.backbone.random_init:
        notes.append("random-init backbone: numbers say nothing about pretrained transfer")
    return VtabTable(protocol=report.request.protocol.name, compared=compared, rows=rows, groups=groups, notes=notes)


def _fmt(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if std is None else f"{v:.1f} ± {std:.1f}"


def _diff(d: float | None, flag: bool) -> str:
    return "-" if d is None else f"{d:+.1f}{' !' if flag else ''}"


def to_markdown(table: VtabTable) -> str:
    """Markdown: one table per size, then group means and win counts. ``!`` marks differences beyond noise."""
    out = [f"# VTAB-1k reproduction ({table.protocol} protocol)", ""]
    out += [f"> {n}" for n in table.notes] + ([""] if table.notes else [])
    for n in sorted({r.n_train for r in table.rows}):
        out += [f"## {n} training images", "",
                "| task | group | FT paper | FT ours | Δ FT | VPT paper | VPT ours | Δ VPT "
                "| winner paper | winner ours |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in table.rows if r.n_train == n):
            out.append(f"| {r.name} | {r.group} | {_fmt(r.paper_ft)} | {_fmt(r.ours_ft, r.ours_ft_std)} | "
                       f"{_diff(r.diff_ft, r.flag_ft)} | {_fmt(r.paper_vpt)} | {_fmt(r.ours_vpt, r.ours_vpt_std)} | "
                       f"{_diff(r.diff_vpt, r.flag_vpt)} | {r.winner_paper or '-'} | {r.winner_ours or '-'} |")
        out += ["", "| group | tasks | FT paper | FT ours | VPT paper | VPT ours | VPT wins paper | VPT wins ours |",
                "|---|---|---|---|---|---|---|---|"]
        for g in (g for g in table.groups if g.n_train == n):
            out.append(f"| {g.group} | {g.n_tasks} | {_fmt(g.paper_ft)} | {_fmt(g.ours_ft)} | {_fmt(g.paper_vpt)} | "
                       f"{_fmt(g.ours_vpt)} | {g.paper_vpt_wins}/{g.n_tasks} | {g.ours_vpt_wins}/{g.n_tasks} |")
        out.append("")
    if table.compared:
        out.append("`!` = difference beyond seed noise (tolerances in benchmarks/vtab/expected.toml).")
    return "\n".join(out) + "\n"


def to_csv(table: VtabTable) -> str:
    """CSV with one line per task and size (all :class:`TaskRow` fields)."""
    buf = io.StringIO()
    fields = list(TaskRow.model_fields)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in table.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.model_dump().items()})
    return buf.getvalue()


def to_json(table: VtabTable, **extra: Any) -> str:
    """JSON of the table (plus any extra top-level fields)."""
    return json.dumps({**table.model_dump(mode="json"), **extra}, indent=2) + "\n"
