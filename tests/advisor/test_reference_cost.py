"""``reference build --estimate``: what a build costs (images, shards, download, time measured here), said up front."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from advisor.cli import main
from engine.config.fid import FidConfig
from engine.fid.cost import (
    ASSUMED_BYTES_PER_IMAGE,
    IN21K_IMAGES,
    IN21K_SHARDS,
    ForwardRate,
    build_cost,
    cached_forward_rate,
    measure_forward_rate,
)
from engine.fid.gates import MIN_REFERENCE_IMAGES
from engine.fid.refbuild import IMAGES_PER_SHARD
from engine.paths import cache_dir, references_dir

IN21K = "hf://datasets/timm/imagenet-22k-wds/imagenet22k-train-*.tar"


def _rate(images_per_s: float) -> ForwardRate:
    return ForwardRate(images_per_s=images_per_s, device="cpu", cpu="test", threads=1, batch_size=16, measured_at=0.0)


def test_in21k_cost_follows_the_plan_rule_and_the_cards() -> None:
    cost = build_cost(50_000, in21k=True, rate=_rate(10.0))
    assert cost.shards == math.ceil(50_000 / IMAGES_PER_SHARD)
    # shards are downloaded whole, so the download is the shards', not the 50,000 images'
    assert cost.download_bytes == round(cost.shards * IN21K_IMAGES / IN21K_SHARDS * ASSUMED_BYTES_PER_IMAGE)
    assert cost.seconds == pytest.approx(5_000.0)
    assert cost.passes_gate and not build_cost(MIN_REFERENCE_IMAGES - 1, in21k=True).passes_gate


def test_folder_cost_has_no_download_guess_and_no_time_without_a_rate() -> None:
    cost = build_cost(3_000, in21k=False)
    assert cost.shards is None and cost.download_bytes is None and cost.seconds is None
    assert "not known" in cost.download_basis


def test_estimate_without_weights_names_the_smallest_build_and_builds_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reference", "build", IN21K, "--name", "in21k", "--estimate"]) == 0
    out = capsys.readouterr().out
    smallest = build_cost(MIN_REFERENCE_IMAGES, in21k=True)
    assert smallest.download_bytes is not None
    assert f"{smallest.download_bytes / 1e9:.1f} GB" in out and "assumed" in out
    assert "Time: unknown" in " ".join(out.split())
    lines = [line.strip() for line in out.splitlines()]
    # every command stands alone on its line, so copying it copies no prose
    assert f"vpt-advisor reference build '{IN21K}' --name in21k --max-images {MIN_REFERENCE_IMAGES}" in lines
    assert any(line.startswith("curl ") for line in lines)
    assert not references_dir().exists() or not any(references_dir().iterdir())


@pytest.mark.slow
def test_estimate_measures_the_rate_once_and_states_the_time(
        fid_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cached_forward_rate(FidConfig(), "cpu") is None
    assert main(["reference", "build", IN21K, "--name", "in21k", "--estimate", "--json", "--device", "cpu"]) == 0
    first = json.loads(capsys.readouterr().out)
    rate = first["planned"]["rate"]
    assert rate["images_per_s"] > 0 and not rate["cached"]
    assert first["planned"]["seconds"] == pytest.approx(50_000 / rate["images_per_s"])
    assert first["smallest_that_passes"]["images"] == MIN_REFERENCE_IMAGES
    # the second estimate reads the measured rate instead of probing again
    assert main(["reference", "build", IN21K, "--name", "in21k", "--estimate", "--json", "--device", "cpu"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["planned"]["rate"]["cached"]
    assert second["planned"]["rate"]["images_per_s"] == pytest.approx(rate["images_per_s"])


@pytest.mark.slow
def test_a_damaged_rate_file_costs_a_probe_not_the_answer(fid_weights: Path) -> None:
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / "fid_forward_rate.json").write_bytes(b"\x00not json")
    assert cached_forward_rate(FidConfig(), "cpu") is None
    rate = measure_forward_rate(FidConfig(), "cpu", batches=1)
    assert rate.images_per_s > 0
    cached = cached_forward_rate(FidConfig(), "cpu")
    assert cached is not None and cached.cached and cached.images_per_s == pytest.approx(rate.images_per_s)
