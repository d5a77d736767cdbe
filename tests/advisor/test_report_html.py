"""The HTML report is one self-contained file (no network resources, images decode); the Markdown
report writes its images beside it; the writers pick the format by suffix and reject others."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from advisor.report import write_pilot_report, write_recommend_plots, write_recommend_report, write_vtab_report
from engine.errors import ConfigError
from tests.advisor import report_cases as cases


class _Resources(HTMLParser):
    """Collects every tag and every URL-carrying attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str]] = []
        self.img_srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "poster", "data", "action"} and value is not None:
                self.urls.append((tag, value))
                if tag == "img" and name == "src":
                    self.img_srcs.append(value)


def _parse(path: Path) -> tuple[str, _Resources]:
    text = path.read_text(encoding="utf-8")
    parser = _Resources()
    parser.feed(text)
    return text, parser


def _assert_self_contained(text: str, parser: _Resources, n_images: int) -> None:
    assert not [u for _tag, u in parser.urls if not u.startswith("data:")], "every resource must be embedded"
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), "CSS must not load anything"
    assert not re.search(r"@import", text)
    assert len(parser.img_srcs) == n_images
    for src in parser.img_srcs:
        header, _, payload = src.partition(",")
        assert header == "data:image/png;base64"
        pixels = cases.decode_png(base64.b64decode(payload, validate=True))
        assert cases.is_not_blank(pixels)


def test_recommend_html_is_self_contained_with_all_sections(tmp_path: Path) -> None:
    path = write_recommend_report(cases.recommend_report(), tmp_path / "out" / "report.html")
    assert path == tmp_path / "out" / "report.html"
    text, parser = _parse(path)
    _assert_self_contained(text, parser, n_images=2)
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    for expected in (
        "Recommendation",
        "VPT",
        "medium",
        "Low disparity and FID below the threshold.",
        "Table 19",
        "Tables 5-6",
        "CUB-200",
        "88.5",
        "Provenance",
        "Caveats",
        "The FID threshold is derived",
    ):
        assert expected in text, expected
    # Text from the inputs is escaped, never interpreted as markup.
    assert "in21k &lt;test&gt; &amp; co" in text and "<test>" not in text


def test_unmeasured_fid_is_said_in_the_report(tmp_path: Path) -> None:
    text = write_recommend_report(cases.recommend_report(fid=None), tmp_path / "r.html").read_text(encoding="utf-8")
    assert "FID not measured" in text


def test_recommend_markdown_writes_images_beside_it(tmp_path: Path) -> None:
    path = write_recommend_report(cases.recommend_report(), tmp_path / "md" / "advice.md")
    text = path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["advice_quadrant.png", "advice_data_size.png"]
    for link in links:
        image = path.parent / link
        assert cases.is_not_blank(cases.decode_png(image.read_bytes()))
    assert "**Recommendation: VPT** (confidence: medium)" in text
    assert "Stanford \\| Cars" in text  # a pipe inside a cell does not break the table
    table_rows = [line for line in text.splitlines() if line.startswith("| CUB-200")]
    assert len(table_rows) == 1 and table_rows[0].count(" | ") == 8


def test_pilot_report_both_formats(tmp_path: Path) -> None:
    html_path = write_pilot_report(cases.pilot_inputs(), tmp_path / "pilot.html")
    text, parser = _parse(html_path)
    _assert_self_contained(text, parser, n_images=2)
    assert "vpt-deep" in text and "75.1" in text  # mean of 75.0, 74.1, 76.3
    md = write_pilot_report(cases.pilot_inputs(), tmp_path / "pilot.md")
    assert (tmp_path / "pilot_pilot_accuracy.png").is_file() and (tmp_path / "pilot_pilot_curves.png").is_file()
    assert "| vpt-deep | 3 | 75.1 |" in md.read_text(encoding="utf-8")


def test_vtab_report_both_formats(tmp_path: Path) -> None:
    text, parser = _parse(write_vtab_report(cases.vtab_inputs(), tmp_path / "vtab.htm"))
    _assert_self_contained(text, parser, n_images=2)
    assert "+0.4" in text and "-1.5" in text  # CIFAR-100 VPT 78.1-77.7 and FT 63.0-64.5
    md = write_vtab_report(cases.vtab_inputs(), tmp_path / "vtab.markdown").read_text(encoding="utf-8")
    assert "![Ours minus the paper](vtab_vtab_difference.png)" in md


def test_reports_without_figures_inputs(tmp_path: Path) -> None:
    bare = cases.recommend_report().model_copy(update={"quadrant": None, "size_trend": None})
    text, parser = _parse(write_recommend_report(bare, tmp_path / "bare.html"))
    _assert_self_contained(text, parser, n_images=0)
    vtab = cases.vtab_inputs().model_copy(update={"data_size": []})
    _, parser = _parse(write_vtab_report(vtab, tmp_path / "v.html"))
    assert len(parser.img_srcs) == 1


@pytest.mark.parametrize("name", ["report.pdf", "report", "report.html.txt"])
def test_unknown_report_suffix_is_a_config_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"use \.html .* or \.md"):
        write_recommend_report(cases.recommend_report(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_recommend_plots_write_quadrant_and_data_size(tmp_path: Path) -> None:
    written = write_recommend_plots(cases.recommend_report(), tmp_path / "plot.png")
    assert written == [tmp_path / "plot.png", tmp_path / "plot_data_size.png"]
    for path in written:
        assert cases.is_not_blank(cases.decode_png(path.read_bytes()))
    only_trend = cases.recommend_report().model_copy(update={"quadrant": None})
    assert write_recommend_plots(only_trend, tmp_path / "t.png") == [tmp_path / "t.png"]
