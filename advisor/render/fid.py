"""Rich output for ``vpt-advisor fid`` and ``vpt-advisor reference``."""

from __future__ import annotations

from pydantic import BaseModel
from rich.table import Table
from rich.text import Text

from advisor.render import console, warn
from engine.fid.run import FidResult, SideSummary
from engine.fid.reference import ReferenceInfo

__all__ = ["ReferenceList", "render_fid", "render_reference", "render_reference_list"]


class ReferenceList(BaseModel):
    """JSON shape of ``reference list --json``."""

    references: list[ReferenceInfo]


def _side_row(t: Table, label: str, s: SideSummary) -> None:
    n = str(s.n_images) if s.n_images else "unknown"
    detail = {"images": f"{s.n_cached} from cache", "reference": "stored reference"}.get(s.kind, "stats file")
    t.add_row(label, Text(s.source), n, str(s.n_skipped), detail, s.preprocessing or "-")


def render_fid(result: FidResult) -> None:
    """Print the FID, both sides and any warnings."""
    if result.fid is not None:
        mark = " [yellow](unverified)[/yellow]" if result.status == "unverified" else ""
        console.print(f"[bold]FID:[/bold] {result.fid:.6f}{mark}")
    t = Table(show_header=True, header_style="bold", title_justify="left")
    for col in ("side", "source", "images", "skipped", "features", "preprocessing"):
        t.add_column(col)
    _side_row(t, "A", result.a)
    if result.b is not None:
        _side_row(t, "B", result.b)
    console.print(t)
    extractor = result.a.extractor or (result.b.extractor if result.b else "")
    console.print(f"Extractor: {extractor or 'unknown'} · dims {result.dims} · {result.seconds:.1f} s", soft_wrap=True)
    if result.saved_stats:
        console.print(Text(f"Statistics of A written to {result.saved_stats}"), soft_wrap=True)
    for w in result.warnings:
        warn(w)
    for reason in result.unverified_reasons:
        warn(f"FID unverified: {reason}")


def render_reference(info: ReferenceInfo) -> None:
    """Print one reference's provenance."""
    t = Table(title=f"Reference {info.name}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    for key, value in (
        ("Path", info.path), ("Images", str(info.n_images) if info.n_images else "unknown"),
        ("Source", info.source or "unknown"), ("Created", info.created or "unknown"),
        ("Extractor", info.extractor or "unknown"), ("Preprocessing", info.preprocessing or "unknown"),
        ("Dims", str(info.dims)), ("npz sha256", info.npz_sha256 or "-"),
    ):
        t.add_row(key, Text(value))
    if info.n_shards:
        t.add_row("Shards", str(info.n_shards))
    if info.n_skipped or info.skipped_reasons:
        detail = ", ".join(f"{k} {v}" for k, v in info.skipped_reasons.items())
        t.add_row("Skipped", Text(f"{info.n_skipped}" + (f" ({detail})" if detail else "")))
    for note in info.notes:
        t.add_row("Note", Text(note))
    for msg in info.messages:
        t.add_row("Warning", Text(msg))
    console.print(t)


def render_reference_list(refs: ReferenceList) -> None:
    """Print the table of references (or how to build the first one)."""
    if not refs.references:
        console.print("No references yet. Build one with: "
                      "vpt-advisor reference build 'hf://datasets/timm/imagenet-22k-wds/imagenet22k-train-*.tar' --name in21k --max-images 50000 "
                      "(needs HF_TOKEN), or pull one: vpt-advisor reference pull URL --sha256 HEX")
        return
    t = Table(show_header=True, header_style="bold")
    for col in ("name", "images", "source", "created", "extractor"):
        t.add_column(col)
    for r in refs.references:
        t.add_row(r.name, str(r.n_images) if r.n_images else "?", Text(r.source or "?"), r.created or "?",
                  Text(r.extractor or "?"))
    console.print(t)
