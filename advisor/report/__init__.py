"""Pictures and reports: the quadrant chart, the data-size trend, pilot and VTAB charts, HTML and Markdown.

The commands call these; nothing here imports matplotlib (or torch) until a figure is drawn.

Report writers (format by suffix: ``.html``/``.htm`` one self-contained page, ``.md`` with PNGs beside it;
any other suffix raises ``ConfigError`` before anything is rendered):
    write_recommend_report(report, path) -> Path        # recommend --report; report: RecommendReportInputs,
                                                        #   advisor.schemas.Recommendation or .RecommendReport
    write_recommend_plots(report, path) -> list[Path]   # recommend --plot: quadrant at path, data size beside it
    write_pilot_report(inputs, path) -> Path            # pilot --report; PilotReportInputs or engine PilotResult
    write_vtab_report(inputs, path) -> Path             # reproduce-vtab --report; VtabReportInputs or VtabTable
Single plots (.png / .svg / .pdf): write_quadrant_plot, write_size_trend_plot, write_pilot_plot.
Inputs from the paper's numbers: paper_fgvc_points, calibration_points, paper_size_trend,
paper_vtab_accuracy (Tables 1-2), paper_data_size_points (Tables 5-6).
Adapters: from_recommendation, from_pilot, from_vtab_table (:mod:`advisor.report.adapters`).
"""

from __future__ import annotations

from advisor.report.adapters import from_pilot, from_recommendation, from_vtab_table
from advisor.report.figures import write_quadrant_plot, write_size_trend_plot
from advisor.report.figures_runs import write_pilot_plot
from advisor.report.inputs import (
    DataSizePoint,
    EvidenceRow,
    LearningCurve,
    MethodSeeds,
    PaperPoint,
    PilotReportInputs,
    QuadrantInputs,
    RecommendReportInputs,
    ReportReason,
    SizeSeries,
    SizeTrendInputs,
    UserPoint,
    VtabReportInputs,
    VtabTaskResult,
)
from advisor.report.paper import (
    calibration_points,
    paper_data_size_points,
    paper_fgvc_points,
    paper_size_trend,
    paper_vtab_accuracy,
)
from advisor.report.write import (
    write_pilot_report,
    write_recommend_plots,
    write_recommend_report,
    write_vtab_report,
)

__all__ = [
    "write_recommend_report",
    "write_recommend_plots",
    "write_pilot_report",
    "write_vtab_report",
    "write_quadrant_plot",
    "write_size_trend_plot",
    "write_pilot_plot",
    "paper_fgvc_points",
    "calibration_points",
    "paper_size_trend",
    "paper_vtab_accuracy",
    "paper_data_size_points",
    "from_recommendation",
    "from_pilot",
    "from_vtab_table",
    "RecommendReportInputs",
    "ReportReason",
    "EvidenceRow",
    "QuadrantInputs",
    "PaperPoint",
    "UserPoint",
    "SizeTrendInputs",
    "SizeSeries",
    "PilotReportInputs",
    "MethodSeeds",
    "LearningCurve",
    "VtabReportInputs",
    "VtabTaskResult",
    "DataSizePoint",
]
