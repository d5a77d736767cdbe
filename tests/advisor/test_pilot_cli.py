"""``vpt-advisor pilot``: a real (tiny, random-init) run end to end, resume, JSON, and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import advisor.usecases.pilot as pilot_uc
from advisor.cli import main
from engine.config.train import DEFAULT_NUM_PROMPTS
from engine.paper import get_vtab_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--model", "vit_tiny_patch16_224", "--random-init", "--img-size", "32", "--batch-size", "16",
        "--seeds", "2", "--budget", "10m", "--device", "cpu", "--quick"]
"""A tiny random ViT in quick mode (2 epochs, one lr per method): plumbing only, accuracies meaningless."""


def test_pilot_json_then_resume(colour_dataset: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "store"
    args = ["pilot", str(colour_dataset), "--task", "clevr_count", "--prompts", "3", *TINY, "--out", str(out),
            "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_prompts"] == 3 and report["num_prompts_source"] == "--prompts"
    pilot = report["pilot"]
    assert pilot["plan"]["n_train"] + pilot["plan"]["n_val"] == 30
    assert [m["method"] for m in pilot["methods"]] == ["full", "vpt-deep"]
    assert pilot["trials_run"] == 4 and pilot["trials_resumed"] == 0
    scores = {s["method"]: s for s in report["evidence"]["scores"]}
    assert set(scores) == {"full", "vpt-deep"} and scores["vpt-deep"]["n_seeds"] == 2
    assert report["recommendation"] is not None
    assert any(r["rule"] == "pilot" for r in report["recommendation"]["reasons"])

    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["pilot"]["trials_run"] == 0 and again["pilot"]["trials_resumed"] == 4
    assert again["evidence"] == report["evidence"]


def test_pilot_table_and_recommendation(colour_dataset: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pilot", str(colour_dataset), "--task", "counting", "--methods", "full,vpt-shallow", *TINY,
                 "--out", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Pilot plan" in captured.err and f"{DEFAULT_NUM_PROMPTS} prompts" in captured.err
    assert "vpt-shallow" in captured.out and "trainable params" in captured.out
    assert "Recommendation" in captured.out and "Pilot on your data" in captured.out


def test_without_task_no_recommendation(colour_dataset: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(colour_dataset), "--methods", "linear", *TINY, "--out", str(tmp_path / "s")]) == 0
    assert "Pass --task" in capsys.readouterr().out


def test_default_prompt_length_follows_the_paper() -> None:
    assert pilot_uc.default_prompt_length("clevr_count")[0] == get_vtab_task("clevr_count").prompt_length
    assert pilot_uc.default_prompt_length("counting")[0] == DEFAULT_NUM_PROMPTS  # a type, not a VTAB task
    assert pilot_uc.default_prompt_length(None)[0] == DEFAULT_NUM_PROMPTS


def test_long_cpu_run_needs_yes(colour_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(pilot_uc, "LONG_CPU_RUN_S", 0.0)
    store = tmp_path / "s"
    assert main(["pilot", str(colour_dataset), "--methods", "linear", *TINY, "--out", str(store)]) == 1
    assert "--yes" in capsys.readouterr().err
    assert not (store / "trials").exists()
    assert main(["pilot", str(colour_dataset), "--methods", "linear", *TINY, "--out", str(store), "--yes"]) == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--methods", "full,prompt"], "unknown method 'prompt'"),
    (["--task", "countng"], "countng"),
    (["--budget", "soon"], "cannot read budget"),
])
def test_bad_options(colour_dataset: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(colour_dataset), *TINY, *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_offline_without_weights_is_one_clear_line(colour_dataset: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["pilot", str(colour_dataset), "--task", "dtd", "--out", str(tmp_path / "s"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert "not in the local cache" in err and "--weights" in err


def test_unlabeled_dataset(tiny_image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(tiny_image_dir), *TINY]) == 1
    assert "labeled" in capsys.readouterr().err
