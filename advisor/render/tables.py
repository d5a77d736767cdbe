"""Tables that fit the terminal: nothing in a table is ever clipped with "…" or split inside a word.

``fit_table`` tries, in order, until a trial render at the console's width clips nothing:

1. the table with its full column headers;
2. abbreviated headers (``Col.short``) with a legend line under the table, two spaces between columns,
   then one;
3. a vertical fold: one block per row, ``header  value`` per line.

Numbers and names are never wrapped (``no_wrap``; overflow shows "…", which the trial render
detects); only columns marked ``wrap`` (free text) wrap, by words. The same check drives
``tests/advisor/test_output_width.py`` over every command at 80 and 120 columns.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = ["Col", "ELLIPSIS", "fit_table", "fits", "fits_full", "kv_table"]

ELLIPSIS = "…"
"""What rich prints where it clips; no table output may contain it."""

Cell = str | Text
Justify = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Col:
    """One column: full header, optional abbreviation (explained in a legend), alignment, wrapping."""

    header: str
    justify: Justify = "left"
    short: str | None = None
    meaning: str | None = None
    wrap: bool = False
    style: str | None = None


def _render_width(renderable: RenderableType, width: int) -> str:
    buf = io.StringIO()
    out = Console(width=width, file=buf, color_system=None, highlight=False, force_terminal=False, emoji=False)
    out.print(renderable)
    return buf.getvalue()


def fits(renderable: RenderableType, width: int) -> bool:
    """True when ``renderable`` renders at ``width`` without any clipped or cropped cell."""
    trial = Console(width=width, file=io.StringIO(), color_system=None, emoji=False)
    if trial.measure(renderable).minimum > width:  # rich would crop the right edge silently
        return False
    return ELLIPSIS not in _render_width(renderable, width)


def _table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], *, title: str | None, short: bool,
           caption: str | None, tight: bool = False) -> Table:
    # two spaces between columns (collapse_padding), one when tight
    t = Table(title=title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
              pad_edge=False, header_style="bold", show_edge=False, collapse_padding=True,
              padding=(0, 0) if tight else (0, 1))
    for c in cols:
        header = c.short if short and c.short else c.header
        t.add_column(header, justify=c.justify, no_wrap=not c.wrap, overflow="ellipsis", style=c.style,
                     ratio=1 if c.wrap else None, min_width=12 if c.wrap else None)
    for row in rows:
        t.add_row(*row)
    return t


def _legend(cols: Sequence[Col]) -> Text | None:
    items = [f"{c.short} = {c.meaning or c.header}" for c in cols if c.short and c.short != c.header]
    return Text("; ".join(items), style="dim") if items else None


def _vertical(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], *, title: str | None,
              caption: str | None, width: int) -> Group:
    """One block per row: ``header  value`` lines, or the value under its header when a pair is too wide."""
    parts: list[RenderableType] = []
    if title:
        parts.append(Text(title, style="italic"))
    label_w = max((len(c.header) for c in cols[1:]), default=0)
    for row in rows:
        head = row[0]
        parts.append(Text(head, style="bold") if isinstance(head, str) else head)
        grid: Table | None = None
        for c, value in zip(cols[1:], row[1:], strict=False):
            text = value if isinstance(value, Text) else Text.from_markup(value, emoji=False)
            if 2 + label_w + 2 + len(text.plain) <= width:
                if grid is None:  # every grid has the same label width, so the values line up
                    grid = Table.grid(padding=(0, 2), pad_edge=False)
                    grid.add_column(no_wrap=True, style="dim", min_width=2 + label_w)
                    grid.add_column(no_wrap=True)
                    parts.append(grid)
                grid.add_row("  " + c.header, text)
            else:  # the value gets a line of its own, under its header
                grid = None
                parts += [Text("  " + c.header, style="dim"), Text.assemble("    ", text)]
    if caption:
        parts.append(Text(caption, style="dim"))
    return Group(*parts)


def fits_full(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], *, width: int) -> bool:
    """True when the table with its full headers shows every cell whole at ``width``."""
    return fits(_table(cols, rows, title=None, short=False, caption=None), width)


def fit_table(cols: Sequence[Col], rows: Sequence[Sequence[Cell]], *, width: int, title: str | None = None,
              caption: str | None = None, legends: list[str] | None = None) -> RenderableType:
    """The first layout that shows every cell whole at ``width``.

    Layouts, in order: full headers; abbreviated headers with a legend; the same with one space
    between columns; a vertical fold. With ``legends`` the legend line is appended there (for the
    caller to print once under several tables) instead of under the table.
    """
    head = [Text(title, style="italic")] if title else []  # the console's width, not the table's, for the title
    full = _table(cols, rows, title=None, short=False, caption=caption)
    if fits(full, width):
        return Group(*head, full) if head else full
    if any(c.short for c in cols):
        legend = _legend(cols)
        for tight in (False, True):
            short = _table(cols, rows, title=None, short=True, caption=caption, tight=tight)
            body: list[RenderableType] = [short] if legends is not None or legend is None else [short, legend]
            candidate: RenderableType = Group(*head, *body)
            if fits(candidate, width):
                if legends is not None and legend is not None and legend.plain not in legends:
                    legends.append(legend.plain)
                return candidate
    return _vertical(cols, rows, title=title, caption=caption, width=width)


def kv_table(pairs: Sequence[tuple[str, Cell]], *, title: str | None = None) -> Table:
    """A two-column ``field  value`` table whose values wrap by words and fold only a word too long for a line."""
    t = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False, padding=(0, 2, 0, 0))
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    for key, value in pairs:
        t.add_row(key, value)
    return t
