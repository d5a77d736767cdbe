"""Write the reports the commands offer (``--report out.html|out.md``, ``--plot out.png``).

The output format follows the file suffix: ``.html`` / ``.htm`` gives one self-contained HTML file,
``.md`` / ``.markdown`` gives Markdown with the PNG figures written beside it. The suffix is checked
before any figure is rendered, so a typo fails at once with a one-line :class:`ConfigError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.report.adapters import from_recommendation
from advisor.report.document import Document, pilot_document, recommend_document, vtab_document
from advisor.report.figures import check_plot_path, quadrant_figure, save_figure, size_trend_figure
from advisor.report.html import write_html
from advisor.report.inputs import PilotReportInputs, RecommendReportInputs, VtabReportInputs
from advisor.report.markdown import say_if_replacing, write_markdown
from engine.errors import ConfigError

# A VTAB table is duck-typed (``benchmarks.vtab.tables.VtabTable``): advisor never imports benchmarks.
VtabTable = Any

if TYPE_CHECKING:
    from advisor.schemas import Recommendation, RecommendReport
    from engine.train.pilot import PilotResult

__all__ = [
    "REPORT_SUFFIXES",
    "check_report_path",
    "write_document",
    "write_recommend_report",
    "write_recommend_plots",
    "write_pilot_report",
    "write_vtab_report",
]

_HTML = (".html", ".htm")
_MARKDOWN = (".md", ".markdown")
REPORT_SUFFIXES = frozenset(_HTML + _MARKDOWN)


def check_report_path(path: Path) -> Path:
    """Return ``path`` if it ends in a report suffix (.html, .htm, .md, .markdown), else raise ConfigError."""
    path = Path(path)
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise ConfigError(
            f"cannot write a report to '{path}': unknown report type '{path.suffix}'; "
            "use .html for one self-contained page or .md for Markdown with PNGs beside it"
        )
    return path


def write_document(doc: Document, path: Path) -> Path:
    """Write a built document as HTML or Markdown by the suffix of ``path``; returns ``path``."""
    path = check_report_path(path)
    if path.suffix.lower() in _HTML:
        return write_html(doc, path)
    return write_markdown(doc, path)


def _recommend_inputs(report: RecommendReportInputs | Recommendation | RecommendReport) -> RecommendReportInputs:
    if isinstance(report, RecommendReportInputs):
        return report

    return from_recommendation(report)


def write_recommend_report(report: RecommendReportInputs | Recommendation | RecommendReport, path: Path) -> Path:
    """Write the recommendation report (verdict, reasons, evidence, quadrant and data-size charts).

    Args:
        report: Report inputs, or the decision itself (``advisor.schemas.Recommendation`` or the whole
            ``recommend --json`` object, ``advisor.schemas.RecommendReport``), adapted with
            :func:`advisor.report.adapters.from_recommendation`.
        path: ``.html`` (self-contained) or ``.md`` (PNGs beside it).

    Returns:
        The report path.

    Raises:
        ConfigError: Unknown suffix.
    """
    path = check_report_path(path)
    return write_document(recommend_document(_recommend_inputs(report)), path)


def write_recommend_plots(report: RecommendReportInputs | Recommendation | RecommendReport, path: Path) -> list[Path]:
    """``recommend --plot``: the quadrant chart at ``path`` and the data-size trend beside it
    (``<stem>_data_size<suffix>``). Charts whose inputs are missing are not written.

    Returns:
        The paths written, quadrant first.
    """
    path = check_plot_path(path)
    report = _recommend_inputs(report)
    written = []
    if report.quadrant is not None:
        written.append(save_figure(quadrant_figure(report.quadrant), path))
    if report.size_trend is not None:
        target = path if report.quadrant is None else path.with_name(f"{path.stem}_data_size{path.suffix}")
        say_if_replacing(target, path)
        written.append(save_figure(size_trend_figure(report.size_trend), target))
    return written


def write_pilot_report(inputs: PilotReportInputs | PilotResult, path: Path) -> Path:
    """Write the pilot report (accuracy per method with seed spread, learning curves) as HTML or Markdown.

    Args:
        inputs: Report inputs, or an ``engine.train.pilot.PilotResult`` (adapted with
            :func:`advisor.report.adapters.from_pilot`; call that yourself to add the updated recommendation).
        path: ``.html`` or ``.md``.
    """
    path = check_report_path(path)
    if not isinstance(inputs, PilotReportInputs):
        from advisor.report.adapters import from_pilot

        inputs = from_pilot(inputs)
    return write_document(pilot_document(inputs), path)


def write_vtab_report(inputs: VtabReportInputs | VtabTable, path: Path) -> Path:
    """Write the VTAB-1k reproduction report (difference chart, Figure-4-like data-size curves).

    Args:
        inputs: Report inputs, or a ``benchmarks.vtab.tables.VtabTable`` (adapted with
            :func:`advisor.report.adapters.from_vtab_table`).
        path: ``.html`` or ``.md``.
    """
    path = check_report_path(path)
    if not isinstance(inputs, VtabReportInputs):
        from advisor.report.adapters import from_vtab_table

        inputs = from_vtab_table(inputs)
    return write_document(vtab_document(inputs), path)
