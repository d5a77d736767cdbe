"""Input models for the pictures and reports (quadrant chart, data-size trend, pilot and VTAB reports).

These small pydantic models are the boundary of ``advisor.report``: the figure and document code
depends only on them, never on the decision schemas, the pilot result or the VTAB tables directly.
Adapters (``advisor.report.adapters``) translate those richer objects into these inputs.

Units: accuracies are percent (0-100), gaps are accuracy points (VPT minus FT), FIDs are the
Frechet Inception Distance against ImageNet-21k as in Han et al. (ICLR 2024), Sec. 4.3 / Table 19.
"""

from __future__ import annotations

import statistics
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.paper import compare
from engine.vocab import Disparity, Outcome, Side

__all__ = [
    "Disparity",
    "Winner",
    "PaperPoint",
    "UserPoint",
    "QuadrantInputs",
    "SizeSeries",
    "SizeTrendInputs",
    "EvidenceRow",
    "ReportReason",
    "RecommendReportInputs",
    "MethodSeeds",
    "LearningCurve",
    "PilotReportInputs",
    "VtabTaskResult",
    "DataSizePoint",
    "VtabReportInputs",
]

Winner = Side


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------- quadrant
class PaperPoint(_Input):
    """One dataset from the paper (or a calibration) placed on the quadrant chart."""

    name: str = Field(description="Display name, e.g. 'Stanford Cars'.")
    disparity: Disparity = Field(description="Task disparity: low (classification-like) or high (structured).")
    fid: float = Field(ge=0, description="FID against the ImageNet-21k reference.")
    winner: Winner = Field(description="Method with the higher accuracy in the paper.")
    source: str = Field(default="Table 19", description="Where the FID and the winner come from.")


class UserPoint(_Input):
    """The user's dataset on the quadrant chart."""

    label: str = Field(default="your data", description="Legend label for the user's dataset.")
    disparity: Disparity | None = Field(default=None, description="Task disparity, None when unknown.")
    fid: float | None = Field(default=None, ge=0, description="Measured FID, None when not measured.")
    fid_note: str = Field(default="FID not measured", description="Shown instead of a point when fid is None.")


class QuadrantInputs(_Input):
    """Everything the quadrant chart (task disparity x FID) draws."""

    points: list[PaperPoint] = Field(default_factory=list, description="Paper / calibration datasets.")
    user: UserPoint | None = Field(default=None, description="The user's dataset, if any.")
    threshold: float = Field(gt=0, description="FID above which low-disparity data counts as dissimilar.")
    band: tuple[float, float] = Field(description="Borderline FID band (low, high) where a pilot is advised.")
    threshold_label: str = Field(
        default="derived default", description="Where the threshold comes from (default, --fid-threshold, calibration)."
    )
    title: str = Field(default="Where your data sits: task disparity x FID to ImageNet-21k", description="Title.")

    @model_validator(mode="after")
    def _band_brackets_threshold(self) -> QuadrantInputs:
        low, high = self.band
        if not low <= self.threshold <= high:
            raise ValueError(f"band {self.band} must contain the threshold {self.threshold}")
        return self


# --------------------------------------------------------------------------------------------- data size
class SizeSeries(_Input):
    """One task's VPT-FT gap at several training-set sizes (Tables 5-6)."""

    name: str = Field(description="Task display name.")
    key: str = Field(default="", description="VTAB-1k task key, if any.")
    disparity: Disparity = Field(description="Task disparity of this task.")
    sizes: list[int] = Field(description="Training-set sizes (images), increasing.")
    gaps: list[float] = Field(description="VPT minus FT accuracy (points) at each size.")

    @model_validator(mode="after")
    def _same_length(self) -> SizeSeries:
        if len(self.sizes) != len(self.gaps) or not self.sizes:
            raise ValueError(f"{self.name}: sizes and gaps must be non-empty and the same length")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)):
            raise ValueError(f"{self.name}: sizes must be strictly increasing, got {self.sizes}")
        return self


class SizeTrendInputs(_Input):
    """The data-size trend: per-task gap lines, their mean, the user's N and the catch-up size."""

    series: list[SizeSeries] = Field(description="Per-task gap series (thin lines).")
    mean_sizes: list[int] = Field(description="Sizes of the mean curve.")
    mean_gaps: list[float] = Field(description="Mean gap (points) at each of mean_sizes (thick line).")
    mean_label: str = Field(default="mean of tasks with all sizes", description="Legend label of the mean curve.")
    user_n: int | None = Field(default=None, ge=1, description="The user's training-set size, if known.")
    user_n_label: str = Field(default="your N", description="How user_n is labelled ('assumed N' when guessed).")
    expected_gap: float | None = Field(default=None, description="Expected gap at user_n (points), if computed.")
    extrapolated: bool = Field(default=False, description="True when user_n lies outside the paper's sizes.")
    catch_up_n: float | None = Field(default=None, description="Size at which FT is expected to catch up (gap 0).")
    catch_up_note: str = Field(default="", description="The catch-up as a range of table sizes with its basis.")
    comparable: str = Field(default="all VTAB-1k tasks", description="Which tasks the lines show, short.")
    grouping_note: str = Field(default="", description="How the comparable tasks were chosen, in full.")
    title: str = Field(default="Data size: VPT minus FT accuracy against training-set size", description="Title.")

    @model_validator(mode="after")
    def _mean_lengths(self) -> SizeTrendInputs:
        if len(self.mean_sizes) != len(self.mean_gaps):
            raise ValueError("mean_sizes and mean_gaps must be the same length")
        return self


# --------------------------------------------------------------------------------------------- recommend
class EvidenceRow(_Input):
    """One row of the evidence table: a nearby paper task and its FT / VPT numbers."""

    task: str = Field(description="Task display name.")
    disparity: Disparity | None = Field(default=None, description="Task disparity.")
    fid: float | None = Field(default=None, description="FID against ImageNet-21k, if known.")
    n_train: int | None = Field(default=None, description="Training-set size of these numbers.")
    ft: float | None = Field(default=None, description="FT accuracy (%).")
    vpt: float | None = Field(default=None, description="VPT accuracy (%).")
    source: str = Field(default="", description="Table / figure the numbers come from.")
    note: str = Field(default="", description="Free note (why this task is comparable).")
    paper_winner: Outcome | None = Field(
        default=None, description="The paper's winner with its tie-break digits (engine.paper.paper_winner)."
    )

    @property
    def winner(self) -> str:
        """The paper's winner when given, else engine.paper.compare on the numbers; '' when a number is missing."""
        if self.paper_winner is not None:
            return self.paper_winner
        if self.ft is None or self.vpt is None:
            return ""
        return compare(self.ft, self.vpt)


class ReportReason(_Input):
    """One reason behind the recommendation, with its source."""

    text: str = Field(description="The reason as a sentence.")
    source: str = Field(default="", description="Table, figure or measurement that supports it.")


class RecommendReportInputs(_Input):
    """A full recommendation report: verdict, reasons, evidence, the two charts and provenance."""

    title: str = Field(default="vpt-advisor recommendation", description="Report title.")
    verdict: str = Field(description="Headline advice, e.g. 'VPT' or 'Run a pilot'.")
    summary: str = Field(default="", description="One-sentence summary under the verdict.")
    confidence: str = Field(default="", description="Confidence in words (e.g. 'high') or a number.")
    reasons: list[ReportReason] = Field(default_factory=list, description="Reasons, most important first.")
    warnings: list[str] = Field(default_factory=list, description="Warnings shown prominently at the top.")
    notes: list[str] = Field(default_factory=list, description="Caveats listed in their own section.")
    evidence: list[EvidenceRow] = Field(default_factory=list, description="Nearest paper tasks.")
    quadrant: QuadrantInputs | None = Field(default=None, description="Quadrant chart inputs.")
    size_trend: SizeTrendInputs | None = Field(default=None, description="Data-size chart inputs.")
    provenance: dict[str, str] = Field(default_factory=dict, description="Reference, versions, inputs, ...")


# --------------------------------------------------------------------------------------------- pilot
class MethodSeeds(_Input):
    """One method's best validation accuracy for each seed of a pilot."""

    method: str = Field(description="Method name, e.g. 'full' or 'vpt-deep'.")
    accuracies: list[float] = Field(min_length=1, description="Best val accuracy (%) per seed.")
    seeds: list[int] = Field(default_factory=list, description="Seeds, aligned with accuracies when given.")
    trainable_percent: float | None = Field(default=None, description="Trainable parameters, % of total.")
    best_lr: float | None = Field(default=None, description="Learning rate the accuracies were taken at.")
    images_per_s: float | None = Field(default=None, description="Training throughput (images/s).")
    peak_memory_gb: float | None = Field(default=None, description="Peak memory (GB).")
    wall_s: float | None = Field(default=None, description="Wall time of the method's trials (s).")

    @model_validator(mode="after")
    def _seeds_aligned(self) -> MethodSeeds:
        if self.seeds and len(self.seeds) != len(self.accuracies):
            raise ValueError(f"{self.method}: {len(self.seeds)} seeds for {len(self.accuracies)} accuracies")
        return self

    @property
    def mean(self) -> float:
        """Mean accuracy over seeds."""
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


class LearningCurve(_Input):
    """Validation accuracy per epoch for one (method, seed) run."""

    method: str = Field(description="Method name.")
    seed: int | None = Field(default=None, description="Seed of this run.")
    epochs: list[int] = Field(description="Epoch numbers (1-based).")
    val_acc: list[float] = Field(description="Validation accuracy (%) after each epoch.")

    @model_validator(mode="after")
    def _aligned(self) -> LearningCurve:
        if len(self.epochs) != len(self.val_acc):
            raise ValueError("epochs and val_acc must be the same length")
        return self


class PilotReportInputs(_Input):
    """What the pilot report shows."""

    title: str = Field(default="vpt-advisor pilot", description="Report title.")
    dataset: str = Field(default="", description="Dataset path or name.")
    n_train: int | None = Field(default=None, description="Pilot training images.")
    n_val: int | None = Field(default=None, description="Pilot validation images.")
    methods: list[MethodSeeds] = Field(default_factory=list, description="Per-method accuracies (finished only).")
    curves: list[LearningCurve] = Field(default_factory=list, description="Learning curves.")
    verdict: str = Field(default="", description="Updated recommendation, if any.")
    summary: str = Field(default="", description="One-sentence summary under the verdict.")
    confidence: str = Field(default="", description="Confidence of the updated recommendation.")
    reasons: list[ReportReason] = Field(default_factory=list, description="Reasons for the verdict.")
    notes: list[str] = Field(default_factory=list, description="Caveats (e.g. val-selected accuracies).")
    provenance: dict[str, str] = Field(default_factory=dict, description="Device, versions, config, ...")
    verdict_status: str = Field(default="", description="The pilot's status: decisive, underpowered, ...")
    verdict_text: str = Field(default="", description="The verdict with its figures (interval, post-hoc power).")
    ensemble_text: str = Field(default="", description="The FT+VPT ensemble's accuracy, interval and cost.")
    smoke_test: str = Field(default="", description=(
        "Set for a --random-init or --quick pilot: shown in the title, above the results and on each chart."))


# --------------------------------------------------------------------------------------------- VTAB
class VtabTaskResult(_Input):
    """Our reproduction of one VTAB-1k task next to the paper's numbers."""

    task: str = Field(description="Task display name.")
    group: str = Field(default="", description="Natural, Specialized or Structured.")
    ours_ft: float | None = Field(default=None, description="Our FT test accuracy (%), mean over seeds.")
    ours_ft_std: float | None = Field(default=None, description="Seed std of ours_ft.")
    ours_vpt: float | None = Field(default=None, description="Our VPT test accuracy (%), mean over seeds.")
    ours_vpt_std: float | None = Field(default=None, description="Seed std of ours_vpt.")
    paper_ft: float | None = Field(default=None, description="Paper FT accuracy (%), Tables 1-2.")
    paper_vpt: float | None = Field(default=None, description="Paper VPT accuracy (%), Tables 1-2.")
    n_seeds: int = Field(default=0, description="Seeds behind our means.")


class DataSizePoint(_Input):
    """One accuracy at one training-set size, ours or the paper's (Tables 5-6 / Figure 4)."""

    task: str = Field(description="Task display name.")
    method: Winner = Field(description="FT or VPT.")
    n_train: int = Field(ge=1, description="Training-set size.")
    accuracy: float = Field(description="Accuracy (%).")
    std: float | None = Field(default=None, description="Seed std (ours only).")
    origin: Literal["ours", "paper"] = Field(description="Our run or the paper's table.")


class VtabReportInputs(_Input):
    """What the reproduce-vtab report shows."""

    title: str = Field(default="vpt-advisor VTAB-1k reproduction", description="Report title.")
    protocol: str = Field(default="", description="Protocol name (paper / quick).")
    split: str = Field(default="800/200 split, Tables 1-2", description="Which paper numbers the results face.")
    results: list[VtabTaskResult] = Field(default_factory=list, description="Per-task rows.")
    data_size: list[DataSizePoint] = Field(default_factory=list, description="Data-size points.")
    notes: list[str] = Field(default_factory=list, description="Flags (e.g. differences beyond seed noise).")
    provenance: dict[str, str] = Field(default_factory=dict, description="Device, versions, store, ...")
