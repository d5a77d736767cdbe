"""Pydantic boundary models of the advisor: decision inputs, pilot evidence and the recommendation.

Everything ``recommend --json`` prints is one of these models. No torch here: the engine's measured
objects (dataset profile, FID measurement) enter as plain summaries (:class:`DatasetEvidence`,
:class:`FidEvidence`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from engine.config.fid import FidBackend
from engine.fid.calibration import Calibration
from engine.fid.equal_n import FidAtN, FidInfinity
from engine.train.verdict import PilotStatus
from engine.vocab import Answer, BackboneKey, Confidence, Disparity, FidStatus, Outcome, Side, Similarity

__all__ = [
    "AdvisorInputs",
    "BackboneName",
    "BackboneSummary",
    "Choice",
    "Confidence",
    "DatasetEvidence",
    "DisparityName",
    "FidStatus",
    "FidEvidence",
    "HeldOutRecord",
    "MethodScore",
    "NearestTask",
    "PairedDifference",
    "PilotEnsemble",
    "PilotEvidence",
    "PilotVerdict",
    "Provenance",
    "Reason",
    "Recommendation",
    "RecommendReport",
    "RecommendRequest",
    "SimilarityThreshold",
    "SizeTrend",
    "TaskGap",
    "Lean",
    "Vote",
]

Choice = Answer
DisparityName = Disparity
BackboneName = BackboneKey
Lean = Side | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MethodScore(_Model):
    """Validation accuracy of one method in a pilot run, over seeds."""

    method: str = Field(description="'full'/'FT' for full finetuning; 'vpt-deep', 'vpt-shallow' or 'VPT' for VPT.")
    mean: float = Field(description="Mean top-1 accuracy (%) over seeds.")
    std: float = Field(default=0.0, ge=0.0, description="Standard deviation (%) over seeds (0 with one seed).")
    n_seeds: int = Field(default=1, ge=1, description="Number of seeds.")


class PairedDifference(_Model):
    """VPT minus FT on the same held-out comparison images (the verdict's seed-aware interval,
    ``engine.train.verdict.seed_aware_difference``; older evidence: ``engine.train.power.paired_bootstrap``)."""

    vpt_method: str = Field(description="VPT variant compared (picked on the selection split).")
    ft_method: str = Field(description="Full-finetuning method compared.")
    difference: float = Field(description="VPT minus FT accuracy (points) on the comparison images.")
    ci95: tuple[float, float] = Field(description="95 % interval over comparison images and seeds.")
    ci99: tuple[float, float] = Field(description="99 % interval over comparison images and seeds.")
    n_compare: int = Field(ge=1, description="Comparison images (not trained on, not used to pick the lr).")
    discordance: float = Field(ge=0, le=1, description="Observed share of images the two methods disagree on.")


class PilotEnsemble(_Model):
    """The FT+VPT ensemble a pilot measured (``engine.train.ensemble``), as the answer reads it."""

    members: tuple[str, str] = Field(description="(FT method, VPT method).")
    accuracy: float = Field(description="Ensemble accuracy (%) on the comparison images.")
    best_single: str = Field(description="The better single method it is compared with.")
    difference: float = Field(description="Ensemble minus the better single method (points).")
    ci95: tuple[float, float] = Field(description="95 % interval of that difference (images and seeds).")
    offered: bool = Field(description="True when the interval lies above 0 (with at least 2 seed pairs).")
    sentence: str = Field(description="Accuracy, interval and cost in words.")


class PilotEvidence(_Model):
    """Results of a small pilot on the user's data (from ``vpt-advisor pilot``)."""

    n_train: int = Field(ge=1, description="Training images per pilot run.")
    n_val: int = Field(ge=1, description="Selection images per pilot run (used to pick each method's lr).")
    scores: list[MethodScore] = Field(default_factory=list, description="One entry per method.")
    paired: PairedDifference | None = Field(
        default=None, description="The paired comparison; without it the pilot cannot be decisive.")
    decisive_by_design: bool = Field(
        default=True, description="False when the plan could not detect target_detectable: never changes the answer.")
    min_detectable: float | None = Field(default=None, description="Smallest difference (points) the plan detects.")
    target_detectable: float | None = Field(default=None, description="--min-detectable (points).")
    random_init: bool = Field(default=False, description=(
        "True when the pilot ran on a randomly initialised backbone (--random-init): such evidence never "
        "feeds a recommendation."))
    status: PilotStatus | None = Field(default=None, description=(
        "The pilot's verdict (engine.train.verdict): only 'decisive' changes the answer. None for evidence "
        "built by hand; it is then read from the paired interval, the seeds and decisive_by_design."))
    verdict: str = Field(default="", description="The verdict in words (status, figures, and any fix).")
    posthoc_power: float | None = Field(default=None, description="Power at target_detectable as met.")
    ensemble: PilotEnsemble | None = Field(default=None, description="The FT+VPT ensemble, when measured.")


class SimilarityThreshold(_Model):
    """The FID threshold in force and where it comes from."""

    value: float = Field(description="FID above which data counts as dissimilar.")
    band: tuple[float, float] = Field(description="Exclusive borderline band; an FID strictly inside gets 'pilot'.")
    source: Literal["table19-default", "calibration", "user"] = Field(description="Where the threshold came from.")
    reference: str | None = Field(default=None, description="Reference the threshold's FIDs were measured against.")
    description: str = Field(description="One sentence saying how the threshold was obtained.")
    n: int | None = Field(default=None, ge=2, description="Sample size N at which the threshold's FIDs were measured.")
    n_note: str = Field(default="", description="What is known about N when it is None.")


class AdvisorInputs(_Model):
    """Everything the decision uses. Build it with ``advisor.decide.build_inputs``."""

    task: str | None = Field(default=None, description="--task as given.")
    task_name: str | None = Field(default=None, description="Canonical task type or VTAB-1k key.")
    task_kind: Literal["type", "vtab"] | None = Field(default=None, description="Kind of --task.")
    related_tasks: list[str] = Field(default_factory=list, description="VTAB-1k keys related to the task.")
    disparity: DisparityName = Field(description="Task disparity (low or high).")
    disparity_source: str = Field(description="Where the disparity came from ('--task counting', '--disparity').")
    n_train: int | None = Field(default=None, ge=1, description="Training-set size; None = unknown.")
    n_train_source: str = Field(default="", description="Where n_train came from.")
    fid: float | None = Field(default=None, ge=0.0, allow_inf_nan=False,
                              description="FID of the dataset against the reference.")
    fid_source: str = Field(default="", description="'--fid', 'measured' or ''.")
    fid_unmeasured_reason: str | None = Field(default=None, description="Why no FID is available.")
    fid_status: FidStatus = Field(default="verified", description=(
        "'unverified' when the FID came from non-official Inception weights or an unprovenanced, foreign or too "
        "small reference: it is shown but never decides."))
    fid_unverified_reasons: list[str] = Field(default_factory=list, description="Why the FID is unverified.")
    fid_n: int | None = Field(default=None, ge=1, description="Sample size N at which the user's FID was measured.")
    fid_interval: tuple[float, float] | None = Field(default=None, description="Bootstrap interval of the FID.")
    fid_bias: float | None = Field(default=None, ge=0.0, description=(
        "Estimated small-N upward bias of the FID (twice FID(N/2) - FID(N)); widens the band's upper end when the "
        "threshold has no N (engine.fid.calibration.small_n_bias)."))
    fid_threshold: float | None = Field(default=None, ge=0.0, allow_inf_nan=False,
                                        description="--fid-threshold override.")
    calibration: Calibration | None = Field(default=None, description="Calibration file contents, if any.")
    fid_weights_sha256: str = Field(default="", description=(
        "sha256 (or its prefix) of the Inception weights the FID was measured with ('' = not measured here)."))
    reference_sha256: str = Field(default="", description=(
        "sha256 of the reference .npz the FID was measured against ('' = not measured here)."))
    reference: str = Field(default="in21k", description="Reference statistics the FID is measured against.")
    backbone: BackboneName = Field(default="in21k", description="Pretrained backbone.")
    held_out: list[str] = Field(default_factory=list, description=(
        "VTAB-1k tasks or Table 19 datasets removed from the evidence, as if the paper had never measured them "
        "(benchmarks.held_out asks every cell this way)."))


class HeldOutRecord(_Model):
    """How often answers given the same way were right on tasks left out (``benchmarks.held_out``)."""

    asked_by: str = Field(description="How the question was asked: 'task type', 'disparity' or 'task type + FID'.")
    backbone: BackboneName = Field(description="Backbone of the questions counted.")
    confidence: str = Field(description="The confidence level counted ('pilot': answers 'run a pilot', by lean).")
    right: int = Field(description="Answers (or leans) that matched the paper's winner of the task left out.")
    n: int = Field(description="Answers counted.")
    sentence: str = Field(description="The record in one sentence.")


class Reason(_Model):
    """One step of the argument, with the paper location it rests on."""

    rule: str = Field(description="Rule id: disparity, similarity, quadrant, data-size, backbone, pilot, ...")
    sentence: str = Field(description="The reason, as a full sentence.")
    source: str = Field(description="Where it comes from: 'Table 19', 'Fig. 1, Sec. 4.3', 'our rule', ...")
    favours: Literal["FT", "VPT", "pilot", "neutral"] = Field(default="neutral", description="Direction.")


class TaskGap(_Model):
    """VPT-FT gap of one paper task at the user's training size."""

    key: str = Field(description="VTAB-1k task key.")
    gap: float = Field(description="Interpolated VPT minus FT accuracy (points).")
    sizes: tuple[int, int] = Field(description="Table sizes interpolated between (equal when exact or clamped).")


class SizeTrend(_Model):
    """Expected VPT-FT gap at the user's training size from Tables 5-6."""

    n_train: int = Field(description="Training size the trend is evaluated at.")
    n_assumed: bool = Field(default=False, description="True when n_train was unknown and 800 was assumed.")
    grouping: str = Field(description="How comparable tasks were chosen.")
    tasks: list[TaskGap] = Field(description="Per-task interpolated gaps.")
    mean_gap: float = Field(description="Mean VPT-FT gap (points) over the comparable tasks.")
    min_gap: float = Field(description="Smallest per-task gap.")
    max_gap: float = Field(description="Largest per-task gap.")
    vpt_ahead: int = Field(description="Tasks where the gap is positive.")
    curve: dict[int, float] = Field(description="Table size -> mean gap over tasks with both numbers there.")
    extrapolated: bool = Field(description="True when n_train is outside 400..10000.")
    extrapolation_note: str | None = Field(default=None, description="What was done outside the table range.")
    catch_up_n: float | None = Field(
        default=None, description="Size where the mean gap first reaches 0; None if not in range."
    )
    catch_up_note: str = Field(description="The catch-up size in words.")
    paper_claim: str = Field(description="The paper's own claim about large training sets.")
    source: str = Field(default="Tables 5-6 (App. A)", description="Tables used.")


class NearestTask(_Model):
    """A paper experiment that voted on the answer, with its FT/VPT numbers."""

    key: str = Field(description="VTAB-1k task key (or FGVC dataset key for Table 19).")
    name: str = Field(description="Display name.")
    group: str = Field(description="VTAB group, or 'FGVC'.")
    disparity: DisparityName = Field(description="Task disparity.")
    n_train: int | None = Field(description="Training size of the numbers shown (one-shot: one image per class; "
                                "None for Table 19, full training sets).")
    ft: float = Field(description="Full finetuning accuracy (%), as printed.")
    vpt: float = Field(description="VPT accuracy (%), as printed.")
    gap: float = Field(description="VPT minus FT (points, at the paper's precision).")
    winner: Outcome = Field(description="The paper's winner (tie-break digits included).")
    fid: float | None = Field(default=None, description="FID: Table 19's, or the task's from the calibration.")
    why: str = Field(description="Why this experiment is comparable.")
    source: str = Field(description="Table the numbers come from.")
    backbone: BackboneName = Field(default="in21k", description="Backbone of the experiment.")
    setting: Literal["sized", "one-shot", "fgvc"] = Field(default="sized", description="Kind of experiment.")


class Vote(_Model):
    """How the voting experiments split (the nearest-task table lists exactly these)."""

    n_voters: int = Field(description="Experiments that voted.")
    vpt: int = Field(description="Experiments VPT wins.")
    ft: int = Field(description="Experiments FT wins.")
    ties: int = Field(default=0, description="Experiments the paper prints as a tie.")
    majority: Lean = Field(default=None, description="The side with more wins (None when even).")
    clear: bool = Field(description="At least 3/4 of the voters agree (our rule).")
    unanimous: bool = Field(description="Every voter agrees.")


class BackboneSummary(_Model):
    """FT-vs-VPT win counts of the chosen backbone in the user's disparity group (Tables 1-2, 7-15)."""

    backbone: BackboneName = Field(description="Backbone.")
    source: str = Field(description="Tables used.")
    groups: dict[str, tuple[int, int]] = Field(description="VTAB group -> (VPT wins, tasks).")
    vpt_wins: int = Field(description="VPT wins in the user's disparity group.")
    ft_wins: int = Field(description="FT wins in the user's disparity group.")
    n_tasks: int = Field(description="Tasks in the user's disparity group.")


class PilotVerdict(_Model):
    """How the pilot evidence was read."""

    ft: MethodScore | None = Field(default=None, description="Full-finetuning score used.")
    vpt: MethodScore | None = Field(default=None, description="Best VPT score used.")
    difference: float | None = Field(default=None, description="VPT minus FT (points).")
    margin: float | None = Field(default=None, description="Half-width of the 95 % interval (points).")
    interval: tuple[float, float] | None = Field(default=None, description="95 % interval of the difference.")
    decisive: bool = Field(default=False, description="True when the pilot's status is 'decisive'.")
    status: PilotStatus | None = Field(default=None, description="The pilot's status (engine.train.verdict).")
    winner: Side | None = Field(default=None, description="Pilot winner when decisive.")
    confidence: Confidence | None = Field(
        default=None, description="high when the 99 % interval also excludes zero, else medium (decisive only).")
    by_design: bool = Field(default=True, description="False: the plan could not reach --min-detectable.")


class Provenance(_Model):
    """Where every number came from."""

    paper: str = Field(description="Citation.")
    arxiv: str = Field(description="arXiv id.")
    paper_data_sha256: str = Field(description="SHA-256 of the packaged paper-data file.")
    advisor_version: str = Field(description="vpt-advisor version.")
    threshold: SimilarityThreshold = Field(description="Threshold in force.")
    reference: str = Field(description="Reference statistics named for the FID.")
    notes: list[str] = Field(default_factory=list, description="Caveats.")


class Recommendation(_Model):
    """The advisor's answer with its evidence."""

    recommendation: Choice = Field(description="FT, VPT, or 'pilot' (the evidence does not decide).")
    lean: Side | None = Field(default=None, description="With 'pilot': the side the priors lean to.")
    confidence: Confidence = Field(description="low / medium / high (rules in advisor.decide).")
    headline: str = Field(description="One-line summary.")
    disparity: DisparityName = Field(description="Task disparity used.")
    similarity: Similarity = Field(description="FID side of the threshold.")
    quadrant: str = Field(description="Fig. 1 quadrant in words.")
    reasons: list[Reason] = Field(description="The argument, step by step.")
    task_line: str = Field(default="", description="What the task was resolved to, e.g. 'counting: task type, "
                           "high disparity, like Clevr/count'.")
    nearest_tasks: list[NearestTask] = Field(default_factory=list, description="Exactly the experiments that voted.")
    vote: Vote | None = Field(default=None, description="How the voting experiments split.")
    probability_vpt: float | None = Field(default=None, ge=0.0, le=1.0, description=(
        "Probability that VPT wins, for a task the paper never measured (a task type or a disparity); None for a "
        "named task's own cell."))
    record: HeldOutRecord | None = Field(default=None, description=(
        "Held-out record of answers given the same way (same question kind, backbone and confidence)."))
    size_trend: SizeTrend | None = Field(default=None, description="Tables 5-6 trend at the user's size.")
    backbone: BackboneSummary | None = Field(default=None, description="Backbone win counts.")
    pilot: PilotVerdict | None = Field(default=None, description="How pilot evidence was read.")
    inputs: AdvisorInputs = Field(description="Echo of the inputs.")
    provenance: Provenance = Field(description="Sources and caveats.")

    @model_validator(mode="after")
    def _lean_only_for_pilot(self) -> Recommendation:
        if self.lean is not None and self.recommendation != "pilot":
            raise ValueError("lean is only set when the recommendation is 'pilot'")
        return self


class RecommendRequest(_Model):
    """What the ``recommend`` command was asked, before any measurement."""

    dataset: str | None = Field(default=None, description="Dataset path (folder, list file or CSV).")
    root: str | None = Field(default=None, description="--root: the folder a list file's or CSV's paths are under.")
    demo: bool = Field(default=False, description="Use the embedded demo dataset.")
    task: str | None = Field(default=None, description="--task.")
    disparity: DisparityName | None = Field(default=None, description="--disparity.")
    n_train: int | None = Field(default=None, ge=1, description="--n-train.")
    fid: float | None = Field(default=None, ge=0.0, allow_inf_nan=False, description="--fid (skips the measurement).")
    fid_threshold: float | None = Field(default=None, ge=0.0, allow_inf_nan=False, description="--fid-threshold.")
    trust_reference: bool = Field(default=False, description=(
        "--trust-reference: an unprovenanced, foreign or small reference does not make the FID unverified."))
    reference: str = Field(default="in21k", description="--reference name or .npz path.")
    inception_weights: str | None = Field(default=None, description="--inception-weights.")
    fid_backend: FidBackend = Field(default="local", description="--backend of the FID features.")
    scheduler: str | None = Field(default=None, description="--scheduler: a Dask scheduler address (with dask).")
    dask_workers: int = Field(default=0, ge=0, description="--dask-workers: LocalCluster processes (0 = one per core).")
    backbone: BackboneName = Field(default="in21k", description="--backbone.")
    device: str = Field(default="auto", description="--device.")
    calibration_path: str | None = Field(default=None, description="Calibration file (default: data home).")


class DatasetEvidence(_Model):
    """Summary of the user's dataset profile."""

    source: str = Field(description="Dataset path.")
    layout: str = Field(description="imagefolder, flat, listfile or csv.")
    labeled: bool = Field(description="Whether labels were found.")
    n_used: int = Field(description="Usable images.")
    n_skipped: int = Field(description="Skipped files.")
    skipped_by_reason: dict[str, int] = Field(default_factory=dict, description="Skip reason -> count.")
    num_classes: int = Field(description="Number of classes (0 when unlabeled).")
    profile: dict[str, JsonValue] = Field(default_factory=dict, description="The full engine profile.")


class FidEvidence(_Model):
    """Summary of an FID measurement: the FID of all images, the FID compared (at the threshold's N) and its checks."""

    fid: float = Field(description="FID of all n_images images (what 'vpt-advisor fid DATASET REFERENCE' prints).")
    n_images: int = Field(description="Images measured.")
    reference: dict[str, JsonValue] = Field(description="Reference name, path and provenance.")
    extractor: str = Field(description="Feature extractor.")
    preprocessing: str = Field(description="Preprocessing.")
    warnings: list[str] = Field(default_factory=list, description="Measurement warnings.")
    compared: FidAtN | None = Field(default=None, description=(
        "The FID the decision compares with the threshold: at the threshold's N (mean over random subsets when "
        "the dataset is larger), with its bootstrap interval."))
    compared_note: str = Field(default="", description="Why the FID is compared at that N.")
    infinity: FidInfinity | None = Field(default=None, description="FID-infinity (an estimate, Chong & Forsyth 2020).")
    small_n_bias: float | None = Field(default=None, description=(
        "Estimated upward bias of the compared FID at its N (twice FID(N/2) - FID(N)), when the threshold has no N."))
    status: FidStatus = Field(default="verified", description="'unverified': shown, never decides.")
    unverified_reasons: list[str] = Field(default_factory=list, description="Why the FID is unverified.")


class RecommendReport(_Model):
    """What ``recommend --json`` prints."""

    recommendation: Recommendation = Field(description="The decision.")
    request: RecommendRequest = Field(description="The request as given.")
    dataset: DatasetEvidence | None = Field(default=None, description="Dataset profile summary.")
    fid_measurement: FidEvidence | None = Field(default=None, description="FID measurement summary.")
    warnings: list[str] = Field(default_factory=list, description="Warnings shown on stderr.")
    pilot: PilotEvidence | None = Field(default=None, description="Pilot evidence used (recommend --pilot).")
    fid_would_change: str | None = Field(default=None, description=(
        "Without an FID and with low disparity: the answer a similar and a dissimilar FID would give at this task "
        "and size (what measuring the FID would change)."))
