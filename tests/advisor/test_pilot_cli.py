"""``vpt-advisor pilot``: a real (tiny, random-init) run end to end, resume, JSON, and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import advisor.usecases.pilot as pilot_uc
from advisor.cli import main
from engine.config.train import DEFAULT_NUM_PROMPTS
from engine.paper import get_vtab_task
from tests.conftest import write_png

TINY = ["--model", "vit_tiny_patch16_224", "--random-init", "--img-size", "32", "--batch-size", "16",
        "--seeds", "2", "--budget", "10m", "--device", "cpu", "--quick", "--min-detectable", "40"]
"""Detecting 40 points takes 10 held-out comparison images (30 images could never detect the default 3)."""


@pytest.fixture
def colour_dataset(tmp_path: Path) -> Path:
    gen = np.random.default_rng(0)
    root = tmp_path / "colours"
    for c, name in enumerate(["red", "green", "blue"]):
        for i in range(10):
            img = gen.integers(0, 80, (32, 32, 3)).astype(np.uint8)
            img[..., c] += 150
            write_png(root / name / f"{i}.png", img)
    return root


@pytest.fixture
def quick() -> None:
    """Quick mode is the ``--quick`` flag in TINY (2 epochs, one lr per method); nothing to patch."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pilot_json_then_resume(colour_dataset: Path, tmp_path: Path, quick: None,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "store"
    args = ["pilot", str(colour_dataset), "--task", "clevr_count", "--prompts", "3", *TINY, "--out", str(out),
            "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_prompts"] == 3 and report["num_prompts_source"] == "--prompts"
    pilot = report["pilot"]
    plan = pilot["plan"]
    assert plan["n_train"] + plan["n_val"] + plan["n_compare"] == 30 and plan["n_compare"] == 10
    assert plan["decisive_by_design"] and plan["min_detectable"] <= 40 and plan["target_detectable"] == 40
    assert len(pilot["trials"][0]["compare_correct"]) == 10  # per-image results are stored
    assert pilot["paired"]["n_compare"] == 10 and report["evidence"]["paired"] is not None
    assert [m["method"] for m in pilot["methods"]] == ["full", "vpt-deep"]
    assert pilot["trials_run"] == 4 and pilot["trials_resumed"] == 0
    scores = {s["method"]: s for s in report["evidence"]["scores"]}
    assert set(scores) == {"full", "vpt-deep"} and scores["vpt-deep"]["n_seeds"] == 2
    # a random-init backbone (TINY) never feeds a recommendation (issue 9); test_decide covers real evidence
    assert report["random_init"] is True and report["evidence"]["random_init"] is True
    assert report["recommendation"] is None

    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["pilot"]["trials_run"] == 0 and again["pilot"]["trials_resumed"] == 4
    assert again["evidence"] == report["evidence"]


def test_pilot_table_and_recommendation(colour_dataset: Path, tmp_path: Path, quick: None,
                                        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # read by every command run (advisor.render.configure_consoles)
    code = main(["pilot", str(colour_dataset), "--task", "counting", "--methods", "full,vpt-shallow", *TINY,
                 "--out", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Pilot plan" in captured.err and f"{DEFAULT_NUM_PROMPTS} prompts" in captured.err
    assert "detects" in captured.err and "comparison (held out)" in captured.err
    assert "vpt-shallow" in captured.out and "compare %" in captured.out and "95 % interval" in captured.out
    ours = [line for line in (captured.out + captured.err).splitlines() if "RANDOM weights" not in line]
    assert max(len(line) for line in ours) <= 80  # the plan and the table fit 80 columns
    # --random-init (TINY): the accuracies are shown but never turned into a recommendation (issue 9)
    flat = " ".join(captured.out.split())
    assert "Recommendation:" not in flat and "not turned into a recommendation" in flat
    code = main(["pilot", str(colour_dataset), "--task", "counting", "--methods", "full,vpt-shallow", *TINY,
                 "--out", str(tmp_path / "s"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["random_init"] is True and report["evidence"]["random_init"] is True
    assert report["recommendation"] is None


def test_without_task_no_recommendation(colour_dataset: Path, tmp_path: Path, quick: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(colour_dataset), "--methods", "linear", *TINY, "--out", str(tmp_path / "s")]) == 0
    assert "Pass --task" in capsys.readouterr().out


def test_small_budget_on_a_small_dataset_is_refused_up_front(
        colour_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import engine.train.pilot as pilot_mod

    trained: list[object] = []
    monkeypatch.setattr(pilot_mod, "fit", lambda *a, **k: trained.append(a))
    store = tmp_path / "s"
    full_mode = [a for a in TINY[:-2] if a != "--quick"]  # the planning numbers below are the real mode's
    args = ["pilot", str(colour_dataset), "--task", "counting", *full_mode, "--budget", "1m", "--out", str(store)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Pilot plan" in err and "not decisive by design" in err  # the plan is shown, then the refusal
    assert "cannot decide" in err and "labeled images (you have 30)" in err
    assert "--yes" in err and "Traceback" not in err
    assert not trained and not (store / "trials").exists()

    assert main([*args, "--json"]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["started"] is False and refused["plan"]["decisive_by_design"] is False
    assert refused["plan"]["sufficient_labeled"] > 1000
    # a budget is named only when the 1-minute budget is short too (that depends on this machine's speed)
    assert refused["plan"]["sufficient_budget_s"] is None or refused["plan"]["sufficient_budget_s"] > 60
    assert ("--budget" in err) == (refused["plan"]["sufficient_budget_s"] is not None)


def test_not_decisive_by_design_runs_with_yes_and_never_changes_the_answer(
        colour_dataset: Path, tmp_path: Path, quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["pilot", str(colour_dataset), "--task", "counting", *TINY[:-2], "--out", str(tmp_path / "s"), "--json",
            "--yes"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["evidence"]["decisive_by_design"] is False
    # TINY is a random-init backbone, which never advises (issue 9): the answer stays the prior's. How a real
    # not-decisive-by-design pilot is read is covered in test_decide.
    assert report["random_init"] is True and report["recommendation"] is None


def test_bf16_on_a_cpu_that_emulates_it_is_refused(colour_dataset: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import engine.device as device_mod

    monkeypatch.setattr(device_mod, "cpu_bf16_support",
                        lambda cpuinfo=None: device_mod.CpuBf16(native=False, flags=(), capability="AVX512",
                                                                source="test"))
    assert main(["pilot", str(colour_dataset), *TINY, "--precision", "bf16"]) == 1
    err = capsys.readouterr().err
    assert "bf16 refused" in err and "emulated" in err and "--precision fp32" in err and "Traceback" not in err


def test_default_prompt_length_follows_the_paper() -> None:
    assert pilot_uc.default_prompt_length("clevr_count")[0] == get_vtab_task("clevr_count").prompt_length
    assert pilot_uc.default_prompt_length("counting")[0] == DEFAULT_NUM_PROMPTS  # a type, not a VTAB task
    assert pilot_uc.default_prompt_length(None)[0] == DEFAULT_NUM_PROMPTS


def test_long_cpu_run_needs_yes(colour_dataset: Path, tmp_path: Path, quick: None, monkeypatch: pytest.MonkeyPatch,
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


def test_pilot_verdict_ensemble_and_save(colour_dataset: Path, tmp_path: Path, quick: None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors import safe_open

    from engine.train.ensemble import PROBS_SUFFIX
    from engine.train.pilot_outcome import WEIGHTS_FORMAT

    out, saved = tmp_path / "store", tmp_path / "weights"
    args = ["pilot", str(colour_dataset), *TINY, "--out", str(out), "--save", str(saved), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    verdict, ensemble = report["pilot"]["verdict"], report["pilot"]["ensemble"]
    assert verdict["status"] == report["evidence"]["status"]
    assert verdict["decisive"] == (verdict["status"] == "decisive")
    assert verdict["posthoc_power"] is not None and verdict["compared"]["n_images"] == 10 and verdict["seeds"] == 2
    assert report["evidence"]["verdict"]  # the sentence the answer reads
    assert ensemble["available"] and ensemble["pairs"] == 2 and ensemble["members"] == ["full", "vpt-deep"]
    versus = ensemble["versus_best"]
    assert versus["ci95"][0] <= versus["difference"] <= versus["ci95"][1]
    assert ensemble["cost"]["forward_passes"] == 2 and ensemble["cost"]["params_beyond_ft"] > 0
    assert len(list((out / "trials").glob(f"*{PROBS_SUFFIX}"))) == 4  # one probability sidecar per trial
    info = report["pilot"]["saved"]
    assert info["path"] and Path(info["path"]).is_file() and info["tensors"] > 0
    with safe_open(info["path"], framework="pt") as f:
        meta = f.metadata()
        assert meta["format"] == WEIGHTS_FORMAT and meta["method"] == info["method"]
        assert meta["backbone"] == "vit_tiny_patch16_224" and meta["data_fingerprint"]
        assert json.loads(meta["classes"]) == ["blue", "green", "red"]
        assert all(f.get_tensor(k).isfinite().all() for k in f.keys())

    # a store written before probabilities were kept: the ensemble is unavailable, the pilot still answers
    for sidecar in (out / "trials").glob(f"*{PROBS_SUFFIX}"):
        sidecar.unlink()
    assert main(["pilot", str(colour_dataset), *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ensemble unavailable" in text and "Verdict:" in text


def test_one_seed_plan_says_indicative_only(colour_dataset: Path, tmp_path: Path, quick: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = ["pilot", str(colour_dataset), *TINY, "--seeds", "1", "--out", str(tmp_path / "s")]
    assert main(args) == 0
    captured = capsys.readouterr()
    plan_text = captured.err[: captured.err.index("Pilot results")] if "Pilot results" in captured.err else captured.err
    assert "indicative only" in " ".join(plan_text.split())  # stated before anything runs
    assert "Verdict: indicative only" in " ".join(captured.out.split())


def test_a_smoke_run_says_so_wherever_its_numbers_are(colour_dataset: Path, tmp_path: Path, quick: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """--random-init --quick (TINY): terminal, JSON, HTML and Markdown all say 'SMOKE TEST', naming both causes."""
    args = ["pilot", str(colour_dataset), "--methods", "full,vpt-deep", *TINY, "--out", str(tmp_path / "s")]
    assert main([*args, "--report", str(tmp_path / "r.html")]) == 0
    terminal = " ".join(capsys.readouterr().out.split())
    label = "SMOKE TEST (random-init backbone, not pretrained; --quick, 2 epochs and one lr per method)"
    assert label in terminal and terminal.index(label) < terminal.index("compare %")  # above the numbers
    assert main([*args, "--report", str(tmp_path / "r.md")]) == 0
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["quick"] is True and report["random_init"] is True and report["smoke_test"].startswith(label)
    for name in ("r.html", "r.md"):
        text = (tmp_path / name).read_text()
        assert text.count("SMOKE TEST") >= 3, name  # title, above the results table, each chart's caption
    html = (tmp_path / "r.html").read_text()
    assert html.index("SMOKE TEST") < html.index("<table")


def test_a_real_run_carries_no_smoke_label() -> None:
    assert pilot_uc.smoke_test_label(random_init=False, quick=False) is None
    assert "--quick" in (pilot_uc.smoke_test_label(random_init=False, quick=True) or "")
    assert "random-init" in (pilot_uc.smoke_test_label(random_init=True, quick=False) or "")
