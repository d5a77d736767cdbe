"""Weight fine-tuning methods of Han et al. (ICLR 2024): full fine-tuning (FT) and the linear probe."""

from __future__ import annotations

from engine.train.methods import PAPER_ADAMW, PAPER_SGD, MethodSpec, register_method

__all__ = ["PAPER_FT_LRS"]

PAPER_FT_LRS: tuple[float, ...] = (1e-3, 1e-4, 5e-4, 5e-3)
"""Full fine-tuning's VTAB-1k base-lr search grid (the paper's ``tune_vtab.py``; ANCHORS section 1)."""

register_method(MethodSpec(
    **PAPER_ADAMW, name="full", aliases=("ft", "finetune", "fine-tune", "full-finetuning", "full_finetuning"),
    summary="full fine-tuning: every weight trains", label="FT", colour="#D55E00", family="finetune", side="FT",
    pilot_default=True, trains=frozenset({"head", "backbone"}), backbone_dropout=True,
    paper_lrs=PAPER_FT_LRS, paper_batch_size=128))  # batch 128: the paper README's FT commands
register_method(MethodSpec(
    **PAPER_SGD, name="linear", aliases=("head",), summary="linear probe: only the head trains", label="Linear",
    colour="#009E73", family="probe", trains=frozenset({"head"})))
