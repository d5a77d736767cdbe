"""``fit_table``: full headers when they fit, abbreviations with a legend, then a vertical fold; never "…"."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from advisor.render.tables import Col, fit_table, fits, fits_full

COLS = [Col("task"), Col("FT paper", "right", short="FT p"), Col("FT ours", "right", short="FT o"),
        Col("winner (paper/ours)", short="win", meaning="winner paper/ours")]
ROWS = [["SmallNORB/elevation", "28.6", "75.0±35.4", "VPT/VPT"], ["DTD", "65.0", "0.0±0.0", "VPT/FT"]]


def _render(renderable: object, width: int) -> str:
    buf = io.StringIO()
    Console(width=width, file=buf, color_system=None).print(renderable)
    return buf.getvalue()


def test_full_headers_when_they_fit() -> None:
    assert fits_full(COLS, ROWS, width=120) and not fits_full(COLS, ROWS, width=48)
    text = _render(fit_table(COLS, ROWS, width=120, title="A title longer than the table itself, kept on one line"),
                   120)
    assert "A title longer than the table itself, kept on one line" in text
    assert "winner (paper/ours)" in text and "…" not in text


def test_abbreviated_headers_come_with_a_legend() -> None:
    text = _render(fit_table(COLS, ROWS, width=48), 48)
    assert "winner (paper/ours)" not in text.splitlines()[0] and "FT p" in text
    flat = " ".join(text.split())
    assert "win = winner paper/ours" in flat and "FT p = FT paper" in flat
    assert "…" not in text and "SmallNORB/elevation" in text and "75.0±35.4" in text


def test_vertical_fold_keeps_every_value_whole() -> None:
    text = _render(fit_table(COLS, ROWS, width=30), 30)
    assert "…" not in text
    for value in ("SmallNORB/elevation", "28.6", "75.0±35.4", "VPT/VPT", "winner (paper/ours)"):
        assert value in text
    assert max(len(line) for line in text.splitlines()) <= 30


def test_legends_can_be_collected_once_for_several_tables() -> None:
    legends: list[str] = []
    for _ in range(2):
        text = _render(fit_table(COLS, ROWS, width=48, legends=legends), 48)
        assert "win = winner paper/ours" not in text
    assert legends == ["FT p = FT paper; FT o = FT ours; win = winner paper/ours"]


def test_fits_sees_clipping_and_cropping() -> None:
    narrow = Table()
    narrow.add_column("name", no_wrap=True)
    narrow.add_row("a_rather_long_unbreakable_name")
    assert fits(narrow, 60) and not fits(narrow, 20)
