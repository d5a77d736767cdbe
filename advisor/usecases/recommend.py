"""The ``recommend`` use case: FT or VPT for a ViT-B/16 pretrained on ImageNet-21k, with reasons.

With a dataset the images are profiled and the FID against a reference (``in21k`` by default) is
measured; without one it is a what-if query (task, size, FID given). The demo runs on the embedded
counting dataset. When the FID cannot be measured (no Inception weights, no reference) the answer
uses the other axes and says why similarity is unmeasured.

``n_train`` defaults to the number of usable *labeled* images of the dataset. The paper counts
training images only (its 800-sample setting has 200 validation images on top), so holding out a
validation split makes the true training size about 4/5 of this; pass ``--n-train`` to be exact.

:func:`add_pilot` then runs a short pilot on the same dataset (:mod:`advisor.usecases.pilot`) and
folds its evidence into the recommendation (``recommend --pilot``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.decide import build_inputs, recommend, reconcile_disparity
from advisor.schemas import AdvisorInputs, DatasetEvidence, FidEvidence, RecommendReport, RecommendRequest
from advisor.usecases.pilot import Confirm, PilotRequest, PlanCallback, run_pilot_request
from engine.config.train import DEFAULT_MIN_DETECTABLE, BackboneSpec
from engine.progress import StageProgress, no_progress

if TYPE_CHECKING:
    from engine.data.profile import ReadDataset
    from engine.fid.calibration import Calibration

__all__ = ["EXAMPLES", "run_recommend", "add_pilot", "check_pilot_request", "fid_would_change"]

EXAMPLES = (
    "Examples: 'vpt-advisor recommend ./mydata --task counting' · "
    "'vpt-advisor recommend --task distance --n-train 5000 --fid 150' (what-if) · "
    "'vpt-advisor recommend --demo'"
)

DEMO_TASK = "counting"
"""The embedded demo dataset is a counting task (1-8 shapes per image; ``engine.data.demo``)."""

HOLD_DECODED_BYTES = 2 * 2**30
"""Decoded RGB pixels the profile keeps for the FID, so each file is opened once (our choice): 2 GiB holds
about 7,500 images of 299x299 (VTAB-1k's 1,000-image tasks and the 5,000-image size the paper tops out at)
and leaves room for Inception on a 16 GB machine. Beyond it the FID reopens the files it has no cached
features for."""


def _check_request(request: RecommendRequest) -> str | None:
    """Reject contradictory or empty requests before any image is read; return the task to use."""
    from engine.errors import ConfigError

    task = request.task
    if request.demo and request.dataset is not None:
        raise ConfigError("give either a DATASET or --demo, not both")
    if request.demo and task is None and request.disparity is None:
        task = DEMO_TASK
    if request.dataset is None and not request.demo and task is None and request.disparity is None:
        raise ConfigError(f"nothing to advise on: give a DATASET with --task/--disparity, or --task/--disparity alone "
                          f"for a what-if answer, or --demo. {EXAMPLES}")
    reconcile_disparity(task, request.disparity)  # fail fast, before reading any image
    return task


def _source(request: RecommendRequest) -> Path | None:
    if request.demo:
        from engine.data.demo import ensure_demo_dataset

        return ensure_demo_dataset()
    return Path(request.dataset) if request.dataset is not None else None


def _root(request: RecommendRequest) -> Path | None:
    return Path(request.root) if request.root is not None and not request.demo else None


def _profile(source: Path, progress: StageProgress, root: Path | None = None, *,
             hold: bool = False) -> tuple[DatasetEvidence, ReadDataset]:
    """Index the dataset and read every image once; with ``hold`` the pixels are kept for the FID."""
    # deferred: the dataset readers load Pillow and the shard code, which `--help` and what-if answers never need
    from engine.data.index import index_dataset
    from engine.data.profile import read_dataset

    with progress("Reading images") as on_progress:
        read = read_dataset(index_dataset(source, root), on_progress=on_progress,
                            hold_bytes=HOLD_DECODED_BYTES if hold else 0)
    profile = read.profile
    evidence = DatasetEvidence(
        source=profile.source, layout=profile.layout, labeled=profile.labeled, n_used=profile.n_used,
        n_skipped=profile.n_skipped, skipped_by_reason=dict(profile.skipped_by_reason),
        num_classes=profile.num_classes, profile=profile.model_dump(mode="json"),
    )
    return evidence, read


def _compare_at(request: RecommendRequest, calibration: Calibration | None,
                n_available: int) -> tuple[Calibration | None, int | None, str]:
    """The calibration level in force and the N the dataset's FID is compared at (None = all images).

    FID falls with N, so the dataset's FID is compared at the N the threshold's FIDs were measured
    at: a calibration's largest N that the dataset reaches (its FID is then the mean over random
    subsets of N images). The Table 19 default and ``--fid-threshold`` carry no N: all images are used.
    """
    from engine.fid.calibration import calibration_problem

    if request.fid_threshold is not None:
        return calibration, None, "--fid-threshold gives no N, so the FID of all images is compared"
    usable = calibration is not None and calibration_problem(calibration, request.reference)[0] == "ok"
    if calibration is None or not usable:
        return calibration, None, ("the default threshold's N is not printed by the paper (Table 19), so the FID "
                                   "of all images is compared")
    if calibration.n is None:
        return calibration, None, "the calibration file records no N, so the FID of all images is compared"
    view = calibration.at_n(n_available)
    assert view.n is not None
    if view.n > n_available:
        return view, view.n, (f"the calibration's smallest N is {view.n} but the dataset has {n_available} usable "
                              f"images: compared at {n_available}, not at equal N (a smaller N biases the FID "
                              "upwards, towards 'dissimilar')")
    how = "all images" if view.n == n_available else "mean over random subsets of that size"
    return view, view.n, f"compared at N = {view.n}, the N of the calibration's threshold ({how})"


def _measure(read: ReadDataset, request: RecommendRequest, progress: StageProgress, calibration: Calibration | None,
             n_available: int) -> tuple[Calibration | None, FidEvidence | None, str | None]:
    """Measure the FID at the threshold's N (:func:`_compare_at`).

    Returns:
        ``(calibration at that N, evidence, None)``, or ``(calibration, None, message)`` when the
        weights or the reference are unavailable.
    """
    calibration, compare_n, note = _compare_at(request, calibration, n_available)
    # no N to compare at (Table 19, --fid-threshold): the FID at N/2 too, for the small-N bias
    half = n_available // 2 if compare_n is None and n_available >= 8 else None
    from engine.config.fid import FidConfig
    from engine.device import resolve_device
    from engine.errors import ReferenceStatsError, StatsFileError, WeightsError
    from engine.fid.calibration import small_n_bias
    from engine.fid.run import measure_fid_against_reference

    config = FidConfig(weights=Path(request.inception_weights) if request.inception_weights else None,
                       backend=request.fid_backend, scheduler=request.scheduler, cluster_workers=request.dask_workers)
    try:
        with progress("Measuring FID") as on_progress:
            m = measure_fid_against_reference(
                read.index, request.reference, read=read.images, config=config,
                device=resolve_device(request.device),
                on_progress=on_progress, at_n=[compare_n] if compare_n else [n_available, half] if half else [],
                trust_reference=request.trust_reference,
            )
    except (WeightsError, ReferenceStatsError, StatsFileError) as exc:
        return calibration, None, _unmeasured_reason(request, exc)
    return calibration, FidEvidence(
        fid=m.fid, n_images=m.n_images, reference=m.reference.model_dump(mode="json"), extractor=m.extractor,
        preprocessing=m.preprocessing, warnings=list(m.warnings), compared=m.estimate(compare_n),
        compared_note=note, infinity=m.infinity, status="unverified" if m.status == "unverified" else "verified",
        unverified_reasons=list(m.unverified_reasons),
        small_n_bias=small_n_bias(m.fid, m.estimate(half).fid) if half else None,
    ), None


def _unmeasured_reason(request: RecommendRequest, exc: Exception) -> str:
    """Every missing piece (reference, Inception weights) with the command that gets it, else the error itself."""
    from engine.errors import ReferenceNotFoundError, WeightsNotFoundError
    from engine.fid.availability import missing_fid_pieces

    if isinstance(exc, ReferenceNotFoundError | WeightsNotFoundError):
        weights = Path(request.inception_weights) if request.inception_weights else None
        pieces = missing_fid_pieces(request.reference, weights)
        if pieces:
            return "; ".join(pieces)
    return " ".join(str(exc).split())


def _measured_inputs(inputs: AdvisorInputs, ev: FidEvidence | None) -> AdvisorInputs:
    """Carry the measurement's N, interval and verification into the decision inputs."""
    from engine.fid.gates import weights_digest

    if ev is None or ev.compared is None:
        return inputs
    ref_sha = ev.reference.get("npz_sha256")
    return inputs.model_copy(update={
        "fid_n": ev.compared.n, "fid_interval": ev.compared.interval, "fid_status": ev.status,
        "fid_bias": ev.small_n_bias,
        "fid_unverified_reasons": list(ev.unverified_reasons), "fid_weights_sha256": weights_digest(ev.extractor),
        "reference_sha256": ref_sha if isinstance(ref_sha, str) else ""})


def _warner(warnings: list[str], on_warning: Callable[[str], None] | None) -> Callable[[str], None]:
    """Collect each warning and pass it on as it happens."""
    def warn(msg: str) -> None:
        warnings.append(msg)
        if on_warning is not None:
            on_warning(msg)

    return warn


def _check_calibration(calibration: Calibration | None, request: RecommendRequest, ev: FidEvidence | None) -> None:
    """Refuse a calibration that would decide without provenance or with hashes other than those of ``ev``'s
    measurement (one line naming the file; ``engine.fid.calibration.calibration_problem`` is the check)."""
    from engine.errors import ConfigError
    from engine.fid.calibration import calibration_problem, default_calibration_path
    from engine.fid.gates import weights_digest

    if calibration is None or request.fid_threshold is not None:
        return
    ref_sha = ev.reference.get("npz_sha256") if ev is not None else ""
    verdict, why = calibration_problem(calibration, request.reference,
                                       inception_sha256=weights_digest(ev.extractor) if ev is not None else "",
                                       reference_sha256=ref_sha if isinstance(ref_sha, str) else "")
    if verdict == "refuse":
        path = Path(request.calibration_path) if request.calibration_path else default_calibration_path()
        raise ConfigError(f"calibration file {path}: {why}")


def run_recommend(
    request: RecommendRequest,
    *,
    progress: StageProgress = no_progress,
    on_warning: Callable[[str], None] | None = None,
) -> RecommendReport:
    """Profile the dataset (if any), measure its FID (if possible) and apply the paper's rules.

    Args:
        request: the validated request.
        progress: opens the "Reading images" and "Measuring FID" progress stages.
        on_warning: called with each warning as it happens (they are also in the report).

    Raises:
        ConfigError: contradictory or missing options (checked before any image is read).
        UnknownTaskError: unknown ``--task``.
        DatasetError: the dataset cannot be read or has no usable image.
    """
    from engine.fid.calibration import load_calibration

    warnings: list[str] = []
    warn = _warner(warnings, on_warning)
    task = _check_request(request)
    calibration = load_calibration(Path(request.calibration_path) if request.calibration_path else None)
    _check_calibration(calibration, request, None)  # its provenance, before any image is read
    dataset_ev: DatasetEvidence | None = None
    fid_ev: FidEvidence | None = None
    n_train, n_source = request.n_train, "--n-train" if request.n_train is not None else ""
    fid, fid_source, fid_reason = request.fid, "--fid" if request.fid is not None else "", None
    source = _source(request)
    if source is not None:
        dataset_ev, read = _profile(source, progress, _root(request), hold=fid is None)
        if dataset_ev.n_skipped:
            warn(f"{dataset_ev.n_skipped} file(s) skipped: "
                 + ", ".join(f"{r} {c}" for r, c in sorted(dataset_ev.skipped_by_reason.items())))
        if n_train is None and dataset_ev.labeled:
            n_train, n_source = dataset_ev.n_used, "usable labeled images in the dataset"
        elif n_train is None:
            warn("the dataset has no labels, so its training size is unknown; pass --n-train")
        if fid is None:
            calibration, fid_ev, fid_reason = _measure(read, request, progress, calibration, dataset_ev.n_used)
            if fid_ev is not None:
                fid, fid_source = (fid_ev.compared.fid if fid_ev.compared else fid_ev.fid), "measured"
                for w in fid_ev.warnings:
                    warn(w)
            else:
                warn(f"FID not measured: {fid_reason}")
    elif fid is None:
        fid_reason = "what-if mode: no dataset to measure and no --fid given"
    _check_calibration(calibration, request, fid_ev)  # the hashes of the weights and reference in use
    inputs = _measured_inputs(build_inputs(
        task=task, disparity=request.disparity, n_train=n_train, n_train_source=n_source, fid=fid,
        fid_source=fid_source, fid_unmeasured_reason=fid_reason, fid_threshold=request.fid_threshold,
        calibration=calibration, reference=request.reference, backbone=request.backbone,
    ), fid_ev)
    return RecommendReport(recommendation=recommend(inputs), request=request, dataset=dataset_ev,
                           fid_measurement=fid_ev, warnings=warnings, fid_would_change=fid_would_change(inputs))


def fid_would_change(inputs: AdvisorInputs) -> str | None:
    """What a measured FID would answer at this task and size, on each side of the threshold (None: no difference).

    The two probes are the edges of the threshold's borderline band, the FIDs of the datasets it was derived from
    (Table 19: NABirds 169.1, VPT won; Stanford Cars 182.5, FT won); in between, the answer is a pilot. With high
    disparity, or with an FID already given, it returns None.
    """
    from advisor.decide import resolve_threshold

    if inputs.fid is not None or inputs.disparity != "low":
        return None
    thr, _ = resolve_threshold(inputs)
    lo, hi = thr.band

    def answer(fid: float) -> str:
        rec = recommend(inputs.model_copy(update={"fid": fid, "fid_source": "what-if"}))
        lean = f" leaning {rec.lean}" if rec.lean else ""
        return f"{rec.recommendation}{lean} ({rec.confidence})"

    similar, dissimilar = answer(lo), answer(hi)
    between = "; between: a pilot" if hi > lo else ""
    if similar == dissimilar:
        return f"an FID would not change this answer ({similar} at <= {lo:.1f} and at >= {hi:.1f})"
    return f"with an FID <= {lo:.1f} (similar): {similar}; >= {hi:.1f}: {dissimilar}{between}"


def add_pilot(
    result: RecommendReport,
    *,
    budget: str,
    weights: Path | None = None,
    yes: bool = False,
    progress: StageProgress = no_progress,
    on_plan: PlanCallback | None = None,
    confirm: Confirm | None = None,
    min_detectable: float = DEFAULT_MIN_DETECTABLE,
) -> RecommendReport:
    """Run a pilot on ``result``'s dataset and fold its evidence into the recommendation.

    The pilot gets the request's dataset (or the demo), device and disparity, the recommendation's
    task (``--demo`` implies counting) and its decision inputs as the prior.

    Raises:
        ConfigError: the request has no dataset to train on.
        EngineError: the pilot could not run (no backbone weights offline, budget too small...).
    """
    pilot = PilotRequest(dataset=_pilot_dataset(result.request), root=_root(result.request),
                         task=result.recommendation.inputs.task,
                         disparity=result.request.disparity, budget=budget, backbone=BackboneSpec(weights=weights),
                         device=result.request.device, yes=yes, min_detectable=min_detectable)
    pilot_report, _ = run_pilot_request(pilot, progress=progress, on_plan=on_plan, confirm=confirm,
                                        prior=result.recommendation.inputs)
    if pilot_report.evidence is None:
        return result.model_copy(update={"warnings": [*result.warnings, "the pilot finished no trial"]})
    updated = recommend(result.recommendation.inputs, pilot_report.evidence)
    return result.model_copy(update={"recommendation": updated, "pilot": pilot_report.evidence})


def check_pilot_request(request: RecommendRequest) -> None:
    """``--pilot`` needs a dataset (or the demo) a pilot can work on: fail before any image is decoded."""
    from engine.errors import ConfigError

    if request.dataset is None and not request.demo:
        raise ConfigError("--pilot trains on a dataset: give a DATASET (or --demo)")
    if request.dataset is not None:  # a pilot that cannot work is refused before the FID is measured
        from engine.config.train import PilotConfig
        from engine.data.index import index_dataset
        from engine.train.pilot import check_pilot_data

        check_pilot_data(index_dataset(Path(request.dataset), _root(request)), PilotConfig(budget_s=1.0))


def _pilot_dataset(request: RecommendRequest) -> Path:
    """The dataset the pilot trains on; its data checks run once, in ``run_pilot_request``."""
    from engine.errors import ConfigError

    source = _source(request)
    if source is None:
        raise ConfigError("--pilot trains on a dataset: give a DATASET (or --demo)")
    return source
