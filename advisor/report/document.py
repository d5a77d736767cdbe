"""A format-neutral report document, and builders for the recommend, pilot and VTAB reports.

Each report kind is turned into one :class:`Document` (headline, sections with reasons, tables and
rendered figures, provenance); :mod:`advisor.report.html` and :mod:`advisor.report.markdown` only
lay a Document out. Figures are rendered here, once, to PNG bytes.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field

from advisor.report.figures import figure_png, quadrant_figure, size_trend_figure
from advisor.report.figures_runs import (
    learning_curves_figure,
    pilot_accuracy_figure,
    vtab_data_size_figure,
    vtab_difference_figure,
)
from advisor.report.inputs import (
    MethodSeeds,
    PilotReportInputs,
    QuadrantInputs,
    RecommendReportInputs,
    ReportReason,
    SizeTrendInputs,
    VtabReportInputs,
)

__all__ = [
    "FigureImage",
    "Table",
    "Section",
    "Document",
    "recommend_document",
    "pilot_document",
    "vtab_document",
]


@dataclass(frozen=True)
class FigureImage:
    """One rendered figure: a file-name stem, a title, a caption and its PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class Table:
    """A plain table of strings; ``numeric`` marks right-aligned columns."""

    headers: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()


@dataclass
class Section:
    """One report section. ``reasons`` are (text, source) pairs."""

    heading: str
    paragraphs: list[str] = field(default_factory=list)
    reasons: list[tuple[str, str]] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    table: Table | None = None
    figures: list[FigureImage] = field(default_factory=list)


@dataclass
class Document:
    """A whole report, independent of the output format."""

    title: str
    verdict: str = ""
    confidence: str = ""
    summary: str = ""
    warnings: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    provenance: dict[str, str] = field(default_factory=dict)
    generated: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    @property
    def figures(self) -> list[FigureImage]:
        """Every figure of every section, in order."""
        return [fig for section in self.sections for fig in section.figures]


def _num(value: float | int | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def _reasons(reasons: list[ReportReason]) -> list[tuple[str, str]]:
    return [(r.text, r.source) for r in reasons]


def _evidence_section(report: RecommendReportInputs) -> Section:
    """The paper's experiments that voted, one table row each."""
    rows = [
        [
            e.task,
            e.disparity or "-",
            _num(e.fid),
            _num(e.n_train, ","),
            _num(e.ft),
            _num(e.vpt),
            e.winner or "-",
            e.source,
            e.note,
        ]
        for e in report.evidence
    ]
    table = Table(
        ["Task", "Disparity", "FID", "Train N", "FT %", "VPT %", "Winner", "Source", "Note"],
        rows,
        numeric=frozenset({2, 3, 4, 5}),
    )
    return Section("Evidence: the paper's experiments that voted", table=table)


def _quadrant_image(q: QuadrantInputs) -> FigureImage:
    """The quadrant chart with a caption naming the user's FID, the threshold and the band."""
    where = "FID not measured" if q.user is None or q.user.fid is None else f"FID {q.user.fid:.1f}"
    return FigureImage(
        "quadrant",
        "Quadrant: task disparity x FID",
        f"Your dataset ({where}) among the paper's datasets. "
        f"Threshold {q.threshold:.1f} ({q.threshold_label}); "
        f"borderline band {q.band[0]:.1f}-{q.band[1]:.1f}, where a pilot is advised. Points: Table 19 (FGVC)"
        + (" and calibration (VTAB-1k)." if any(not p.source.startswith("Table") for p in q.points) else "."),
        figure_png(quadrant_figure(q)),
    )


def _size_trend_caption(t: SizeTrendInputs) -> str:
    """What the data-size chart shows, and the expected gap and catch-up size at the user's N."""
    caption = f"VPT minus FT accuracy for {t.comparable} (Tables 5-6), mean thick."
    if t.grouping_note:
        caption += f" Comparable tasks: {t.grouping_note}."
    if t.user_n is not None and t.expected_gap is not None:
        caption += f" At {t.user_n_label} = {t.user_n:,} the expected gap is {t.expected_gap:+.1f} points"
        caption += " (extrapolated)." if t.extrapolated else "."
    if t.catch_up_note:
        caption += f" {t.catch_up_note}"
    elif t.catch_up_n is not None:
        caption += f" The mean gap reaches 0 near {t.catch_up_n:,.0f} training images."
    return caption


def _size_trend_image(t: SizeTrendInputs) -> FigureImage:
    return FigureImage("data_size", "Data size trend", _size_trend_caption(t), figure_png(size_trend_figure(t)))


def _figures_section(figures: list[FigureImage]) -> list[Section]:
    """A "Figures" section holding ``figures``, or nothing when there are none."""
    return [Section("Figures", figures=figures)] if figures else []


def recommend_document(report: RecommendReportInputs) -> Document:
    """Build the recommendation report: verdict, reasons, evidence table, quadrant and data-size charts."""
    sections = []
    if report.reasons:
        sections.append(Section("Why", reasons=_reasons(report.reasons)))
    if report.evidence:
        sections.append(_evidence_section(report))
    if report.notes:
        sections.append(Section("Caveats", bullets=list(report.notes)))
    figures = []
    if report.quadrant is not None:
        figures.append(_quadrant_image(report.quadrant))
    if report.size_trend is not None:
        figures.append(_size_trend_image(report.size_trend))
    sections += _figures_section(figures)
    return Document(
        title=report.title,
        verdict=report.verdict,
        confidence=report.confidence,
        summary=report.summary,
        warnings=list(report.warnings),
        sections=sections,
        provenance=dict(report.provenance),
    )


_MethodColumn = tuple[str, str, Callable[[MethodSeeds], float | None]]
_OPTIONAL_METHOD_COLUMNS: tuple[_MethodColumn, ...] = (
    ("Best lr", "g", lambda m: m.best_lr),
    ("Images/s", ".1f", lambda m: m.images_per_s),
    ("Peak memory GB", ".2f", lambda m: m.peak_memory_gb),
    ("Wall s", ".0f", lambda m: m.wall_s),
)
"""Pilot table columns shown only when some method has a value (title, number format, getter)."""


def _pilot_table(methods: list[MethodSeeds]) -> Table:
    """Per-method accuracy with seed spread, plus the optional columns some method measured."""
    extra = [col for col in _OPTIONAL_METHOD_COLUMNS if any(col[2](m) is not None for m in methods)]
    rows = [
        [
            m.method,
            str(len(m.accuracies)),
            f"{m.mean:.1f}",
            f"{m.std:.1f}",
            ", ".join(f"{a:.1f}" for a in m.accuracies),
            _num(m.trainable_percent, ".3g"),
        ]
        + [_num(getter(m), fmt) for _title, fmt, getter in extra]
        for m in methods
    ]
    headers = ["Method", "Seeds", "Mean acc %", "Std", "Per seed", "Trainable %"] + [t for t, _f, _g in extra]
    return Table(headers, rows, numeric=frozenset({1, 2, 3, 5} | set(range(6, len(headers)))))


def _pilot_results_section(inputs: PilotReportInputs) -> Section:
    """The split sizes in a sentence (or that nothing finished yet) and the per-method table."""
    split = ""
    if inputs.n_train is not None:
        split = f"Pilot on {inputs.n_train:,} training and {_num(inputs.n_val, ',')} lr-selection images"
        split += f" from {inputs.dataset}." if inputs.dataset else "."
    if not inputs.methods:
        split = (split + " No trial has finished yet.").strip()
    table = _pilot_table(inputs.methods) if inputs.methods else None
    paragraphs = [p for p in (inputs.smoke_test + "." if inputs.smoke_test else "", split) if p]
    return Section("Results", paragraphs=paragraphs, table=table)


def _pilot_figures(inputs: PilotReportInputs) -> list[FigureImage]:
    """The accuracy-per-method chart and the learning curves, each when there is something to draw."""
    figures = []
    smoke = f"{inputs.smoke_test}. " if inputs.smoke_test else ""  # on each chart: a figure may be copied alone
    if inputs.methods:
        figures.append(
            FigureImage(
                "pilot_accuracy",
                "Accuracy per method",
                f"{smoke}Accuracy per method on the held-out comparison images: mean (wide tick), ± 1 seed std, and "
                "each seed.",
                figure_png(pilot_accuracy_figure(inputs.methods)),
            )
        )
    if inputs.curves:
        figures.append(
            FigureImage(
                "pilot_curves",
                "Learning curves",
                f"{smoke}Selection-split accuracy per epoch; thin lines are seeds, thick the seed mean.",
                figure_png(learning_curves_figure(inputs.curves)),
            )
        )
    return figures


def pilot_document(inputs: PilotReportInputs) -> Document:
    """Build the pilot report: per-method accuracy with seed spread, learning curves, updated advice."""
    sections = []
    if inputs.reasons:
        sections.append(Section("Why", reasons=_reasons(inputs.reasons)))
    verdict = [t for t in (inputs.verdict_text, inputs.ensemble_text) if t]
    if verdict:
        heading = f"Pilot verdict: {inputs.verdict_status}" if inputs.verdict_status else "Pilot verdict"
        sections.append(Section(heading, paragraphs=verdict))
    sections.append(_pilot_results_section(inputs))
    if inputs.notes:
        sections.append(Section("Caveats", bullets=list(inputs.notes)))
    sections += _figures_section(_pilot_figures(inputs))
    provenance = dict(inputs.provenance)
    if inputs.dataset:
        provenance.setdefault("dataset", inputs.dataset)
    if inputs.smoke_test:
        provenance["smoke test"] = inputs.smoke_test
    return Document(
        title=f"{inputs.title}: SMOKE TEST, numbers meaningless" if inputs.smoke_test else inputs.title,
        verdict=inputs.verdict,
        confidence=inputs.confidence,
        summary=inputs.summary,
        sections=sections,
        provenance=provenance,
    )


def vtab_document(inputs: VtabReportInputs) -> Document:
    """Build the VTAB-1k reproduction report: per-task table against the paper, difference and data-size charts."""
    def delta(ours: float | None, paper: float | None) -> str:
        return "-" if ours is None or paper is None else f"{ours - paper:+.1f}"

    rows = [
        [
            r.group,
            r.task,
            _pm(r.ours_ft, r.ours_ft_std),
            _num(r.paper_ft),
            delta(r.ours_ft, r.paper_ft),
            _pm(r.ours_vpt, r.ours_vpt_std),
            _num(r.paper_vpt),
            delta(r.ours_vpt, r.paper_vpt),
            str(r.n_seeds),
        ]
        for r in inputs.results
    ]
    table = Table(
        ["Group", "Task", "FT ours %", "FT paper %", "FT Δ", "VPT ours %", "VPT paper %", "VPT Δ", "Seeds"],
        rows,
        numeric=frozenset({2, 3, 4, 5, 6, 7, 8}),
    )
    intro = [f"Paper numbers: {inputs.split} (mean of 5 runs); Δ = ours minus paper, in points."]
    if inputs.protocol:
        intro.insert(0, f"Protocol: {inputs.protocol}.")
    sections = [Section("Per task", paragraphs=intro, bullets=list(inputs.notes), table=table)]
    figures = []
    if inputs.results:
        figures.append(
            FigureImage(
                "vtab_difference",
                "Ours minus the paper",
                "Our test accuracy minus Tables 1-2 per task; error bars are our seed std.",
                figure_png(vtab_difference_figure(inputs.results)),
            )
        )
    if inputs.data_size:
        figures.append(
            FigureImage(
                "vtab_data_size",
                "Accuracy against training-set size",
                "Like the paper's Figure 4: FT and VPT per task; paper dashed (Tables 5-6), ours solid.",
                figure_png(vtab_data_size_figure(inputs.data_size)),
            )
        )
    sections += _figures_section(figures)
    return Document(title=inputs.title, sections=sections, provenance=dict(inputs.provenance))
