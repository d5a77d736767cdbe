"""Rich tables for ``vpt-advisor profile``: usage, skipped files with reasons, classes and image sizes."""

from __future__ import annotations

from collections import Counter

from rich.console import RenderableType
from rich.text import Text

from advisor.render import console, print_fields, print_message, user_text
from advisor.render.tables import Col, fit_table
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


_FOLDER_REASONS = {"empty": "empty class folder", "unreadable": "cannot be listed", "outside-root": "link outside"}


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _summary(p: DatasetProfile) -> list[tuple[str, str]]:
    pairs = [("Source", p.source), ("Layout", _LAYOUTS.get(p.layout, p.layout)), ("Images found", str(p.n_found)),
             ("Images used", str(p.n_used)), ("Images skipped", str(p.n_skipped))]
    if p.ignored_files:
        pairs.append(("Other files (ignored)",
                      ", ".join(f"{ext or '(no extension)'} {n}" for ext, n in p.ignored_files.items())))
    pairs.append(("Classes", str(p.num_classes) if p.labeled else "none (unlabeled)"))
    if p.skipped_folders:
        counts = Counter(f.reason for f in p.skipped_folders)
        pairs.append(("Folders skipped", f"{len(p.skipped_folders)} ("
                      + ", ".join(f"{_FOLDER_REASONS.get(r, r)} {n}" for r, n in sorted(counts.items())) + ")"))
    if p.labeled:
        pairs.append(("Images per class", f"min {_num(p.class_count_min)} / median {_num(p.class_count_median)} / "
                      f"max {_num(p.class_count_max)}"))
    pairs += [
        ("Width (px)", f"min {p.width_min} / median {_num(p.width_median)} / max {p.width_max}"),
        ("Height (px)", f"min {p.height_min} / median {_num(p.height_median)} / max {p.height_max}"),
        ("Colour modes", ", ".join(f"{m} {n}" for m, n in p.modes.items())),
        ("Formats", ", ".join(f"{f} {n}" for f, n in p.formats.items())),
    ]
    return pairs


def _skipped(p: DatasetProfile) -> None:
    """Counts per reason in a table, then the example files, each path whole on its line."""
    rows: list[list[str | Text]] = [[Text(reason, style="yellow"), str(count)]
                                    for reason, count in p.skipped_by_reason.items()]
    console.print(fit_table([Col("reason"), Col("count", "right")], rows, title="Skipped files",
                            width=console.width))
    for reason, count in p.skipped_by_reason.items():
        examples = [s for s in p.skipped_examples if s.reason == reason]
        for s in examples:
            print_message(f"{reason}: {s.path}" + (f" ({s.detail})" if s.detail else ""))
        if count > len(examples):
            console.print(f"{reason}: ... and {count - len(examples)} more")


def _classes(p: DatasetProfile) -> RenderableType:
    items = list(enumerate(p.class_counts.items()))
    caption = None
    if len(items) > MAX_CLASS_ROWS:  # show the smallest and largest classes only
        ranked = sorted(items, key=lambda it: (it[1][1], it[0]))
        half = MAX_CLASS_ROWS // 2
        items = sorted(ranked[:half] + ranked[-half:])
        caption = f"{len(p.class_counts)} classes: the {half} smallest and {half} largest are shown"
    rows: list[list[str | Text]] = [[str(label), user_text(name), Text(str(count), style="red" if count == 0 else "")]
                                    for label, (name, count) in items]
    return fit_table([Col("label", "right"), Col("class"), Col("images", "right")], rows,
                     title="Images per class", caption=caption, width=console.width)


def _folders(p: DatasetProfile) -> None:
    """Each skipped folder on its line: reason, path (whole), why."""
    console.print("Folders skipped", style="bold", markup=False)
    for f in p.skipped_folders:
        print_message(f"{f.reason}: {f.path}" + (f" ({f.detail})" if f.detail else ""))


def render_profile(profile: DatasetProfile) -> None:
    """Print the profile to stdout: a summary, skipped files and folders with reasons, images per class."""
    print_fields(_summary(profile), title="Dataset")
    if profile.n_skipped:
        _skipped(profile)
    if profile.skipped_folders:
        _folders(profile)
    if profile.labeled and profile.class_counts:
        console.print(_classes(profile))
