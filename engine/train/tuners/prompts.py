"""Visual prompt tuning (Jia et al., 2022) and the paper's prompt hybrids: VPT-shallow, VPT-deep, Mixed and
FT-then-PT (Han et al., ICLR 2024)."""

from __future__ import annotations

from engine.train.methods import PAPER_ADAMW, PAPER_SGD, MethodSpec, register_method

__all__ = ["PAPER_VPT_LRS"]

PAPER_VPT_LRS: tuple[float, ...] = (50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05)
"""VPT's VTAB-1k base-lr search grid (the paper's ``tune_vtab.py``; ANCHORS section 1)."""

_DEEP = "vpt-deep"

register_method(MethodSpec(
    **PAPER_SGD, name="vpt-shallow", summary="VPT-shallow: prompts at the input only, and the head",
    label="VPT-shallow", colour="#56B4E9", family="prompt", side="VPT", trains=frozenset({"head", "prompts"}),
    prompts="shallow"))
register_method(MethodSpec(
    **PAPER_SGD, name=_DEEP, aliases=("vpt",), summary="VPT-deep: prompts at every block, and the head",
    label="VPT-deep", colour="#0072B2", family="prompt", side="VPT", pilot_default=True,
    trains=frozenset({"head", "prompts"}), prompts="deep", prompt_dropout=0.1,
    paper_lrs=PAPER_VPT_LRS, paper_batch_size=64))  # dropout 0.1, batch 64: the paper README's VPT commands
register_method(MethodSpec(
    **PAPER_ADAMW, name="mixed", summary="Mixed: VPT-deep prompts and every backbone weight", label="Mixed",
    colour="#E69F00", family="prompt", trains=frozenset({"head", "backbone", "prompts"}), prompts="deep",
    prompt_dropout=0.1))
register_method(MethodSpec(
    **PAPER_SGD, name="ft-then-pt", summary="FT-then-PT: fine-tune without prompts, then freeze and prompt-tune",
    label="FT-then-PT", colour="#CC79A7", family="prompt", trains=frozenset({"head", "prompts"}), prompts="deep",
    stages=("full", _DEEP), prompt_dropout=0.1, backbone_dropout=True))
