"""Fixed inputs for the report tests (figures, HTML/Markdown, browser). Not a test module."""

from __future__ import annotations

import io

import numpy as np

from advisor.report import (
    DataSizePoint,
    EvidenceRow,
    LearningCurve,
    MethodSeeds,
    PilotReportInputs,
    QuadrantInputs,
    RecommendReportInputs,
    ReportReason,
    UserPoint,
    VtabReportInputs,
    VtabTaskResult,
    calibration_points,
    paper_fgvc_points,
    paper_size_trend,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def quadrant(fid: float | None = 160.0, disparity: str = "low", *, calibrated: bool = False) -> QuadrantInputs:
    points = paper_fgvc_points()
    if calibrated:
        points += calibration_points({"clevr_count": 250.0, "dmlab": 231.0, "svhn": 199.0, "cifar100": 121.0})
    return QuadrantInputs(
        points=points,
        user=UserPoint(disparity=disparity, fid=fid),
        threshold=175.0,
        band=(165.0, 180.0),
        threshold_label="test threshold",
    )


def recommend_report(fid: float | None = 160.0) -> RecommendReportInputs:
    return RecommendReportInputs(
        verdict="VPT",
        summary="Use VPT-deep: small data, similar to ImageNet-21k.",
        confidence="medium",
        reasons=[
            ReportReason(text="Low disparity and FID below the threshold.", source="Table 19"),
            ReportReason(text="VPT leads FT at this training-set size.", source="Tables 5-6"),
        ],
        warnings=["The FID threshold is derived, not printed in the paper."],
        notes=["Fewer than 2,048 images: the FID is biased upwards."],
        evidence=[
            EvidenceRow(task="CUB-200", disparity="low", fid=146.8, n_train=5994, ft=87.3, vpt=88.5, source="Table 19"),
            EvidenceRow(task="Stanford | Cars", disparity="low", fid=182.5, ft=84.5, vpt=83.6, source="Table 19"),
        ],
        quadrant=quadrant(fid),
        size_trend=paper_size_trend("low", user_n=1200),
        provenance={"reference": "in21k <test> & co", "paper": "Han et al., ICLR 2024"},
    )


def methods() -> list[MethodSeeds]:
    return [
        MethodSeeds(method="full", accuracies=[71.2, 73.5, 70.1], seeds=[42, 44, 82], trainable_percent=100.0),
        MethodSeeds(method="vpt-deep", accuracies=[75.0, 74.1, 76.3], seeds=[42, 44, 82], trainable_percent=0.54),
        MethodSeeds(method="linear", accuracies=[60.0]),
    ]


def curves() -> list[LearningCurve]:
    out = []
    for method, top in (("full", 70.0), ("vpt-deep", 75.0)):
        for seed in (42, 44, 82):
            acc = [top * (1 - np.exp(-e / 3)) + seed % 5 for e in range(1, 11)]
            out.append(LearningCurve(method=method, seed=seed, epochs=list(range(1, 11)), val_acc=acc))
    return out


def pilot_inputs() -> PilotReportInputs:
    return PilotReportInputs(
        dataset="./mydata",
        n_train=400,
        n_val=100,
        methods=methods(),
        curves=curves(),
        verdict="VPT",
        reasons=[ReportReason(text="VPT beats FT beyond seed noise.", source="pilot")],
        provenance={"device": "cpu"},
    )


def vtab_results() -> list[VtabTaskResult]:
    return [
        VtabTaskResult(
            task="CIFAR-100",
            group="Natural",
            ours_ft=63.0,
            ours_ft_std=0.8,
            ours_vpt=78.1,
            ours_vpt_std=1.1,
            paper_ft=64.5,
            paper_vpt=77.7,
            n_seeds=5,
        ),
        VtabTaskResult(
            task="SVHN",
            group="Natural",
            ours_ft=88.0,
            ours_ft_std=0.5,
            ours_vpt=80.9,
            ours_vpt_std=1.4,
            paper_ft=87.3,
            paper_vpt=82.5,
            n_seeds=5,
        ),
        VtabTaskResult(
            task="Clevr/count",
            group="Structured",
            ours_ft=None,
            ours_vpt=67.0,
            ours_vpt_std=2.0,
            paper_ft=55.4,
            paper_vpt=68.2,
            n_seeds=3,
        ),
    ]


def data_size_points() -> list[DataSizePoint]:
    paper = {
        "CIFAR-100": {400: (51.1, 70.6), 800: (64.5, 77.7), 5000: (85.0, 87.1)},
        "SVHN": {400: (73.6, 76.0), 800: (87.3, 82.5)},
    }
    out = []
    for task, by_size in paper.items():
        for n, (ft, vpt) in by_size.items():
            for method, acc in (("FT", ft), ("VPT", vpt)):
                out.append(DataSizePoint(task=task, method=method, n_train=n, accuracy=acc, origin="paper"))
                out.append(
                    DataSizePoint(task=task, method=method, n_train=n, accuracy=acc - 1.5, std=0.7, origin="ours")
                )
    return out


def vtab_inputs() -> VtabReportInputs:
    return VtabReportInputs(
        protocol="quick",
        results=vtab_results(),
        data_size=data_size_points(),
        notes=["SVHN VPT differs from the paper by more than 1 seed std."],
    )


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to an RGB uint8 array (raises if the bytes are not a valid PNG)."""
    from PIL import Image

    assert data[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def is_not_blank(pixels: np.ndarray) -> bool:
    """True when an image has real content: pixel variance and many distinct colours."""
    rgb = pixels[::3, ::3, :3].astype(np.uint32)  # a 1-in-9 sample is plenty to count colours
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    distinct = len(np.unique(packed))
    return float(pixels.std()) > 10.0 and distinct > 50
