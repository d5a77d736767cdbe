"""When an FID may decide: checks on the Inception weights, the reference, and the value itself.

An FID is *verified* only when it was measured with pytorch-fid's official Inception weights against
a reference whose provenance says it was built with the same extractor and preprocessing from at
least :data:`MIN_REFERENCE_IMAGES` images. Otherwise it is shown but marked ``unverified`` with the
reasons, and the decision does not use it. ``--trust-reference`` lets an expert accept a reference
anyway (the weights check stays). A value far above what natural-image datasets give against
ImageNet-21k gets a warning naming the likely cause.

Pure module (no torch).
"""

from __future__ import annotations

from pydantic import Field

from engine.config import FrozenModel
from engine.fid.features import PREPROCESSING
from engine.fid.frechet import RECOMMENDED_MIN_IMAGES
from engine.fid.reference import MIN_REFERENCE_IMAGES, ReferenceInfo
from engine.paper import fgvc_table

__all__ = [
    "OFFICIAL_WEIGHTS_SHA256_PREFIX",
    "MIN_REFERENCE_IMAGES",
    "PLAUSIBLE_FACTOR",
    "FidVerdict",
    "weights_digest",
    "verify_fid",
    "implausible_fid_warning",
]

OFFICIAL_WEIGHTS_SHA256_PREFIX = "6726825d"
"""sha256 prefix of pytorch-fid's official weights, pt_inception-2015-12-05-6726825d.pth (torch.hub names a
file by the first 8 hex digits of its sha256 and checks them on download)."""

PLAUSIBLE_FACTOR = 2.0
"""Our rule: warn when an FID exceeds twice the largest Table 19 FID (Stanford Cars, 182.487)."""


class FidVerdict(FrozenModel):
    """Whether an FID may decide, and why not."""

    status: str = Field(description="'verified' or 'unverified'.")
    reasons: list[str] = Field(default_factory=list, description="Why it is unverified.")
    trusted: list[str] = Field(default_factory=list, description="Reference doubts overridden by --trust-reference.")
    official_weights: bool = Field(description="True with pytorch-fid's official Inception weights.")


def weights_digest(extractor: str) -> str:
    """The weights-hash part of an extractor id (``...:weights=<hex>``; '' when absent)."""
    for part in extractor.split(":"):
        if part.startswith("weights="):
            return part[len("weights="):]
    return ""


def _reference_doubts(ref: ReferenceInfo, extractor: str, preprocessing: str) -> list[str]:
    if not ref.extractor and not ref.n_images:
        return [f"reference '{ref.name}' has no provenance (no .json sidecar matching its .npz), so its images, "
                "size and feature extractor are unknown"]
    out = []
    if not ref.extractor:
        out.append(f"reference '{ref.name}' does not record its feature extractor")
    elif ref.extractor != extractor:
        out.append(f"reference '{ref.name}' was built with another feature extractor ({ref.extractor}; "
                   f"this dataset: {extractor})")
    if ref.preprocessing and ref.preprocessing != preprocessing:
        out.append(f"reference '{ref.name}' was built with '{ref.preprocessing}' preprocessing, this dataset "
                   f"with '{preprocessing}' ({PREPROCESSING.get(preprocessing, '')})")
    if ref.n_images < MIN_REFERENCE_IMAGES:
        size = f"only {ref.n_images:,} images" if ref.n_images else "an unknown number of images"
        out.append(f"reference '{ref.name}' was built from {size} (< {MIN_REFERENCE_IMAGES:,})")
    return out


def verify_fid(ref: ReferenceInfo, extractor: str, preprocessing: str, *, trust_reference: bool = False) -> FidVerdict:
    """Apply the gates to one measurement (see the module docstring)."""
    digest = weights_digest(extractor)
    official = digest.startswith(OFFICIAL_WEIGHTS_SHA256_PREFIX)
    reasons = [] if official else [
        f"non-standard weights: the Inception weights (sha256 {digest[:12] or 'unknown'}...) are not pytorch-fid's "
        f"official file (sha256 {OFFICIAL_WEIGHTS_SHA256_PREFIX}...)"]
    doubts = _reference_doubts(ref, extractor, preprocessing)
    trusted = doubts if trust_reference else []
    if not trust_reference:
        reasons += doubts
    return FidVerdict(status="unverified" if reasons else "verified", reasons=reasons, trusted=trusted,
                      official_weights=official)


def implausible_fid_warning(fid: float, n_images: int, verdict: FidVerdict) -> str | None:
    """A warning when ``fid`` is far above what natural-image datasets give against ImageNet-21k.

    The only FIDs against ImageNet-21k the paper prints are Table 19's five FGVC datasets
    (143.8-182.5); we warn above :data:`PLAUSIBLE_FACTOR` times the largest, and name the most
    likely cause among those this measurement shows.
    """
    rows = fgvc_table()
    low, high = min(r.fid for r in rows), max(r.fid for r in rows)
    if fid <= PLAUSIBLE_FACTOR * high:
        return None
    if not verdict.official_weights:
        cause = "the non-standard Inception weights (features from other weights are on another scale)"
    elif any("reference" in r for r in verdict.reasons + verdict.trusted):
        cause = "the reference (" + "; ".join(r for r in verdict.reasons + verdict.trusted if "reference" in r) + ")"
    elif n_images < RECOMMENDED_MIN_IMAGES:
        cause = f"the small sample ({n_images} images; FID is biased upwards at small N)"
    else:
        cause = "images far from natural photographs (e.g. medical, synthetic, documents) or a broken reference"
    return (f"FID {fid:.1f} is far above the FIDs natural-image datasets give against ImageNet-21k (Table 19: "
            f"{low:.1f}-{high:.1f} for five FGVC datasets; we warn above {PLAUSIBLE_FACTOR:g} x {high:.1f}); "
            f"likely cause: {cause}")
