"""The shared words of vpt-advisor, defined once.

Every module that speaks of a disparity, a side of the FT-vs-VPT question, a confidence level, a precision or an
Inception feature layer imports the word from here instead of spelling its ``Literal`` again, so a new value (a
fourth backbone, a new precision) is added in one place and the type checker finds every ``match`` that misses it.
Method names are not here: the method registry (``engine.train.methods``) owns them, because methods are registered
at run time.

This module imports nothing but ``typing`` so that every layer (engine, advisor, benchmarks) can use it for free.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "Answer",
    "BackboneKey",
    "Confidence",
    "CONFIDENCE_LEVELS",
    "Disparity",
    "DISPARITIES",
    "FeatureDims",
    "FEATURE_DIMS",
    "FidStatus",
    "Group",
    "Outcome",
    "Precision",
    "PrecisionChoice",
    "Side",
    "SIDES",
    "Similarity",
]

Disparity = Literal["low", "high"]
"""Task disparity to ImageNet-21k classification (paper Sec. 4.2): classification-like tasks are low; counting,
distance, location, orientation, azimuth and elevation are high."""

Group = Literal["Natural", "Specialized", "Structured"]
"""VTAB-1k's three task groups."""

BackboneKey = Literal["in21k", "swin-in21k", "mae", "mocov3"]
"""The pretrained backbones the paper measures: supervised ViT-B/16 on ImageNet-21k (the main text), Swin-B on
ImageNet-21k, and the self-supervised MAE and MoCo v3 ViT-B/16 (Appendix C)."""

Side = Literal["FT", "VPT"]
"""The two sides of the question: full finetuning or visual prompt tuning."""

Outcome = Literal["FT", "VPT", "tie"]
"""A measured comparison: a side won, or the two accuracies were equal at the precision the paper prints."""

Answer = Literal["FT", "VPT", "pilot"]
"""What the advisor answers: a side, or "run a pilot" when the evidence has not earned a side."""

Confidence = Literal["low", "medium", "high"]
"""How sure an answer is; what each level promises is stated and measured by ``benchmarks.held_out``."""

Similarity = Literal["similar", "dissimilar", "borderline", "unmeasured", "unverified"]
"""The data-distribution axis: the user's FID against the ImageNet-21k reference, read against a threshold."""

FidStatus = Literal["verified", "unverified"]
"""Whether an FID may decide (official weights, a provenanced reference of the same extractor) or is only shown."""

Precision = Literal["fp32", "bf16", "fp16"]
"""A resolved compute precision."""

PrecisionChoice = Literal["auto", "fp32", "bf16", "fp16"]
"""A precision as the user asks for it; ``auto`` picks bf16 only where the hardware runs it natively."""

FeatureDims = Literal[64, 192, 768, 2048]
"""pytorch-fid's Inception-v3 feature layers (its ``BLOCK_INDEX_BY_DIM``); 2048 (the pool3 layer) is the standard."""

SIDES: tuple[Side, ...] = get_args(Side)
DISPARITIES: tuple[Disparity, ...] = get_args(Disparity)
CONFIDENCE_LEVELS: tuple[Confidence, ...] = get_args(Confidence)
FEATURE_DIMS: tuple[FeatureDims, ...] = get_args(FeatureDims)
