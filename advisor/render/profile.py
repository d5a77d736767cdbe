"""Rich tables for ``vpt-advisor profile``: usage, skipped files with reasons, classes and image sizes."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from advisor.render import console
from engine.data.profile import DatasetProfile

__all__ = ["render_profile", "MAX_CLASS_ROWS"]

MAX_CLASS_ROWS = 30
"""Per-class counts are listed one per row up to this many classes; beyond it, the extremes only."""

_LAYOUTS = {
    "imagefolder": "ImageFolder (class sub-folders)",
    "flat": "flat folder (unlabeled: FID only)",
    "listfile": "list file (path label)",
    "csv": "CSV (path,label)",
}


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _summary(p: DatasetProfile) -> Table:
    t = Table(title="Dataset", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    t.add_row("Source", Text(p.source))
    t.add_row("Layout", _LAYOUTS.get(p.layout, p.layout))
    t.add_row("Images found", str(p.n_found))
    t.add_row("Images used", Text(str(p.n_used), style="green"))
    t.add_row("Images skipped", Text(str(p.n_skipped), style="yellow" if p.n_skipped else ""))
    if p.ignored_files:
        other = ", ".join(f"{ext or '(no extension)'} {n}" for ext, n in p.ignored_files.items())
        t.add_row("Other files (ignored)", Text(other))
    t.add_row("Classes", str(p.num_classes) if p.labeled else "none (unlabeled)")
    if p.labeled:
        t.add_row(
            "Images per class",
            f"min {_num(p.class_count_min)} / median {_num(p.class_count_median)} / max {_num(p.class_count_max)}",
        )
    t.add_row("Width (px)", f"min {p.width_min} / median {_num(p.width_median)} / max {p.width_max}")
    t.add_row("Height (px)", f"min {p.height_min} / median {_num(p.height_median)} / max {p.height_max}")
    t.add_row("Colour modes", ", ".join(f"{m} {n}" for m, n in p.modes.items()))
    t.add_row("Formats", ", ".join(f"{f} {n}" for f, n in p.formats.items()))
    return t


def _skipped(p: DatasetProfile) -> Table:
    t = Table(title="Skipped files", title_justify="left")
    t.add_column("reason", style="yellow")
    t.add_column("count", justify="right")
    t.add_column("examples")
    for reason, count in p.skipped_by_reason.items():
        lines = [f"{s.path}" + (f"  ({s.detail})" if s.detail else "") for s in p.skipped_examples if s.reason == reason]
        if count > len(lines):
            lines.append(f"... and {count - len(lines)} more")
        t.add_row(reason, str(count), Text("\n".join(lines)))
    return t


def _classes(p: DatasetProfile) -> Table:
    t = Table(title="Images per class", title_justify="left")
    t.add_column("label", justify="right")
    t.add_column("class")
    t.add_column("images", justify="right")
    items = list(enumerate(p.class_counts.items()))
    if len(items) > MAX_CLASS_ROWS:  # show the smallest and largest classes only
        ranked = sorted(items, key=lambda it: (it[1][1], it[0]))
        half = MAX_CLASS_ROWS // 2
        items = sorted(ranked[:half] + ranked[-half:])
        t.caption = f"{len(p.class_counts)} classes: the {half} smallest and {half} largest are shown"
    for label, (name, count) in items:
        t.add_row(str(label), Text(name), Text(str(count), style="red" if count == 0 else ""))
    return t


def render_profile(profile: DatasetProfile) -> None:
    """Print the profile as rich tables to stdout."""
    console.print(_summary(profile))
    if profile.n_skipped:
        console.print(_skipped(profile))
    if profile.labeled and profile.class_counts:
        console.print(_classes(profile))
