"""The throughput benchmark's analytic FLOP count and its precision choice (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks.perf.train_throughput import _parser, _precisions, _tokens, count_step_flops, vit_step_flops


@pytest.mark.parametrize("method", ["full", "vpt-deep"])
def test_analytic_flops_match_the_counted_ones(method: str) -> None:
    depth, dim, tokens = _tokens("vit_base_patch16_224", method, prompts=10, img_size=224)
    assert (depth, dim, tokens) == (12, 768, 197 + (10 if method == "vpt-deep" else 0))
    analytic = vit_step_flops(depth=depth, dim=dim, tokens=tokens, batch=2, method=method)
    counted = count_step_flops("vit_base_patch16_224", method, prompts=10, img_size=224, batch=2)
    assert analytic == pytest.approx(counted, rel=0.05)  # the rest: patch embedding, norms, head


def test_emulated_bf16_is_skipped_and_said() -> None:
    args = _parser().parse_args(["--precisions", "fp32,bf16"])
    wanted, note = _precisions(args, native_bf16=False, cuda=False)
    assert wanted == ["fp32"] and note is not None and "cannot be measured on this machine" in note
    forced = _parser().parse_args(["--precisions", "fp32,bf16", "--allow-emulated-bf16"])
    assert _precisions(forced, native_bf16=False, cuda=False)[0] == ["fp32", "bf16"]
    auto = _parser().parse_args([])
    assert _precisions(auto, native_bf16=True, cuda=False) == (["fp32", "bf16"], None)
