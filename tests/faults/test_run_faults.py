"""Runs that cannot work are refused before the work; runs whose every unit failed exit non-zero with the
identical errors grouped; Ctrl-C says that finished work was kept and exits 130."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.benchmarks.vtab_tree import IMG_SIZE, TINY_MODEL, TINY_MODEL_ARGS, make_vtab_tree
from tests.faults.conftest import assert_clean_error, fill_disk, labeled_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_ARGS = [a for k, v in TINY_MODEL_ARGS.items() for a in ("--model-arg", f"{k}={v}")]


def _vtab(tmp_path: Path, *extra: object, model_args: list[str] | None = None) -> list[object]:
    root = make_vtab_tree(tmp_path / "vtab", tasks=["dtd"])
    return ["reproduce-vtab", root, "--protocol", "quick", "--tasks", "dtd", "--methods", "ft", "--model", TINY_MODEL,
            "--img-size", IMG_SIZE, "--device", "cpu", "--db", tmp_path / "runs.sqlite",
            *(TINY_ARGS if model_args is None else model_args), *extra]


def test_reproduce_vtab_without_reachable_weights_fails_once_before_any_trial(
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, no --weights, no --random-init: the weights are checked once, before a trial is scheduled."""
    import engine.train.models as models

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a backbone was built although its weights cannot be reached")

    monkeypatch.setattr(models, "create_backbone", never)
    run = cli(*_vtab(tmp_path))
    line = assert_clean_error(run, "not in the local cache and cannot be downloaded", "--random-init")
    assert "trial" not in line and not (tmp_path / "runs.sqlite").exists()  # nothing scheduled, no store


def test_reproduce_vtab_where_every_trial_fails_exits_1_with_grouped_errors(
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.train.availability as availability

    monkeypatch.setattr(availability, "_maybe_cached", lambda model: True)  # a cache the up-front check trusts...
    run = cli(*_vtab(tmp_path))  # ...but that holds nothing: every trial fails on its weights
    line = assert_clean_error(run, "every trial failed", "trials failed: WeightsNotFoundError")
    assert line.count("WeightsNotFoundError") == 1  # grouped, not repeated per trial
    rerun = cli(*_vtab(tmp_path), "--format", "json")  # failed trials are retried, and fail the same way
    assert_clean_error(rerun, "trials failed")


@pytest.mark.parametrize(("extra", "model_args", "needles"), [
    ((), ["--model-arg", "depht=2"], ("depht",)),
    ((), ["--model-arg", "depth=inf"], ("depth=inf", "finite")),
    ((), ["--model-arg", "depth=1", "--model-arg", "depth=2"], ("twice",)),
    (("--sizes", "5000"), None, ("--sizes 5000", "train5000.txt")),
    (("--sizes", "2"), None, ("--sizes 2", "at least 4")),
    (("--sizes", "abc"), None, ("'abc'",)),
    (("--weights", "missing.safetensors"), None, ("missing.safetensors", "does not exist")),
])
def test_reproduce_vtab_plans_that_cannot_work_fail_before_any_trial(
        cli, tmp_path: Path, extra: tuple[str, ...], model_args: list[str] | None, needles: tuple[str, ...]) -> None:
    init = [] if "--weights" in extra else ["--random-init"]
    run = cli(*_vtab(tmp_path, *extra, *init, model_args=model_args))
    assert_clean_error(run, *needles)
    assert not (tmp_path / "runs.sqlite").exists() or "--sizes" in extra


def test_reproduce_vtab_refuses_a_model_it_cannot_prompt(cli, tmp_path: Path) -> None:
    args = _vtab(tmp_path, "--random-init", model_args=[])
    args[args.index(TINY_MODEL)] = "resnet18"
    assert_clean_error(cli(*args), "resnet18", "not a timm Vision Transformer")


@pytest.fixture
def colours(tmp_path: Path) -> Path:
    return labeled_folder(tmp_path / "colours", {"red": 6, "green": 6, "blue": 6}, size=32)


PILOT = ["--model", "vit_tiny_patch16_224", "--img-size", "32", "--batch-size", "16", "--seeds", "1",
         "--budget", "10m", "--device", "cpu", "--yes"]


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any weight loading fail the test: refusals must come before it."""
    import engine.train.pilot as pilot_mod

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the backbone was loaded before the plan was refused")

    monkeypatch.setattr(pilot_mod, "load_pilot_backbone", boom)
    monkeypatch.setattr("advisor.usecases.pilot.load_pilot_backbone", boom, raising=False)


def test_pilot_with_one_image_per_class_is_refused_before_loading(cli, tmp_path: Path, no_loading: None) -> None:
    data = labeled_folder(tmp_path / "d", {"a": 1, "b": 1, "c": 1})
    assert_clean_error(cli("pilot", data, "--task", "dtd", "--random-init", *PILOT), "validation images")


@pytest.mark.parametrize(("swap", "needles"), [
    (("vit_tiny_patch16_224", "resnet18"), ("resnet18", "not a timm Vision Transformer")),
    (("32", "8"), ("--img-size 8", "16-pixel patches")),
    (("vit_tiny_patch16_224", "vit_tiny_patch16_225"), ("unknown timm model",)),
])
def test_pilot_with_a_backbone_it_cannot_prompt_is_refused_before_loading(
        cli, colours: Path, no_loading: None, swap: tuple[str, str], needles: tuple[str, ...]) -> None:
    args = [swap[1] if a == swap[0] else a for a in PILOT]
    assert_clean_error(cli("pilot", colours, "--task", "dtd", "--random-init", *args), *needles)


def test_pilot_with_weights_full_of_nan_is_refused_before_training(cli, colours: Path, tmp_path: Path) -> None:
    import timm
    import torch
    from safetensors.torch import save_file

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    bad = {k: torch.full_like(v, float("nan")) for k, v in model.state_dict().items()}
    save_file(bad, str(tmp_path / "nan.safetensors"))
    run = cli("pilot", colours, "--task", "dtd", "--weights", tmp_path / "nan.safetensors", *PILOT)
    assert_clean_error(run, "nan.safetensors", "NaN or inf")
    assert_clean_error(cli("pilot", colours, "--task", "dtd", "--weights", tmp_path / "absent.pth", *PILOT),
                       "absent.pth", "does not exist")


def test_pilot_whose_every_trial_diverged_never_becomes_advice(
        cli, colours: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.train.pilot as pilot_mod

    real_fit = pilot_mod.fit

    def diverging_fit(*args: object, **kwargs: object):  # what NaN losses leave: diverged, 0% accuracy
        return real_fit(*args, **kwargs).model_copy(update={"diverged": True, "best_val_acc": 0.0})

    monkeypatch.setattr(pilot_mod, "fit", diverging_fit)
    run = cli("pilot", colours, "--task", "dtd", "--random-init", *PILOT, "--quick", "--out", tmp_path / "store",
              "--json")
    assert_clean_error(run, "pilot trials failed", "NaN/inf")
    assert run.out == ""  # no "0.0 vs 0.0" report
    assert list((tmp_path / "store" / "trials").glob("*.json"))  # finished (diverged) trials were kept


def test_calibration_file_that_does_not_exist_is_an_error(cli, tmp_path: Path) -> None:
    run = cli("recommend", "--task", "dtd", "--n-train", "800", "--fid", "150", "--calibration", tmp_path / "typo.json")
    assert_clean_error(run, "typo.json", "does not exist")


def test_ctrl_c_says_finished_work_was_kept_and_exits_130(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("benchmarks.vtab.reproduce.run_sweep", interrupted)
    run = cli(*_vtab(tmp_path, "--random-init"))
    assert run.code == 130 and run.err.strip() == "Interrupted; finished work was kept."


def test_reproduce_vtab_json_reports_skipped_and_duplicate_list_entries(cli, tmp_path: Path) -> None:
    args = _vtab(tmp_path, "--random-init", "--format", "json")
    listing = tmp_path / "vtab" / "dtd" / "train800.txt"
    lines = listing.read_text().splitlines()
    listing.write_text("\n".join(lines + [lines[0], "images/train800/nope.png 0"]) + "\n")
    run = cli(*args)
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert data["skipped"] == {"dtd": 2} and data["failed"] == 0 and data["failure_summary"] == []
    notes = " ".join(n for t in data.get("unusable", []) for n in t.get("notes", []))
    assert "duplicate" not in notes  # the task stays usable; the count is in 'skipped'
    _ = np  # numpy is imported for the fixtures' images


def test_calibrate_on_a_folder_without_tasks_says_so(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_clean_error(cli("calibrate", tmp_path / "empty"), "no VTAB-1k task could be measured", "NOAH layout")


def test_recommend_pilot_that_cannot_work_is_refused_before_the_fid(
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import advisor.commands.recommend as command

    def no_fid(*_a: object, **_k: object) -> None:
        raise AssertionError("the FID was measured before the pilot was refused")

    monkeypatch.setattr(command, "run_recommend", no_fid)
    data = labeled_folder(tmp_path / "d", {"a": 1, "b": 1})
    assert_clean_error(cli("recommend", data, "--task", "dtd", "--pilot", "--yes"), "validation images")


def test_a_budget_that_overflows_to_infinity_is_refused(cli, colours: Path, no_loading: None) -> None:
    run = cli("pilot", colours, "--task", "dtd", "--random-init", *PILOT[:-3], "--budget", "9" * 400 + "m")
    assert_clean_error(run, "not a finite time")


@pytest.mark.parametrize(("flag", "value"), [("--prompts", "1000000000"), ("--img-size", "100000")])
def test_sizes_that_would_exhaust_memory_are_refused(cli, colours: Path, no_loading: None, flag: str,
                                                     value: str) -> None:
    args = [a for a in PILOT if a not in ("--img-size", "32")]
    assert_clean_error(cli("pilot", colours, "--task", "dtd", "--random-init", *args, flag, value),
                       "less than or equal to")


def test_reproduce_vtab_refuses_an_image_size_that_would_exhaust_memory(cli, tmp_path: Path) -> None:
    args = _vtab(tmp_path, "--random-init")
    args[args.index("--img-size") + 1] = 100000
    assert_clean_error(cli(*args), "--img-size 100000", "exhaust memory")


def test_output_paths_that_cannot_be_folders_are_refused_before_the_work(cli, tmp_path: Path, colours: Path,
                                                                       no_loading: None) -> None:
    a_file = tmp_path / "taken.png"
    a_file.write_bytes(b"x")
    assert_clean_error(cli(*_vtab(tmp_path, "--random-init", "--out", a_file)), "--out", "not a folder")
    assert not (tmp_path / "runs.sqlite").exists()  # refused before the store was even opened
    assert_clean_error(cli("pilot", colours, "--task", "dtd", "--random-init", *PILOT, "--out", a_file / "store"),
                       "lies under", "not a folder")
    args = _vtab(tmp_path, "--random-init")
    args[args.index("--db") + 1] = tmp_path  # a folder, not a store file
    assert_clean_error(cli(*args), "--db", "a folder")


def test_pilot_on_a_full_disk_still_answers_and_says_nothing_was_saved(
        cli, colours: Path, tmp_path: Path, small_disk: Path) -> None:
    """The pilot store only serves resuming: a full disk under --out costs the rerun, never this run's answer."""
    args = ["pilot", colours, "--task", "dtd", "--random-init", *PILOT, "--quick", "--json"]
    healthy = cli(*args, "--out", tmp_path / "store")
    assert healthy.code == 0, healthy.err
    store = small_disk / "store"
    store.mkdir()
    fill_disk(small_disk)
    full = cli(*args, "--out", store)
    assert full.code == 0, full.err
    assert "Warning:" in full.err and "cannot save the pilot's" in full.err and "resume" in full.err
    assert full.err.count("cannot save the pilot's trials") == 1  # one warning, not one per trial
    before, after = json.loads(healthy.out), json.loads(full.out)
    assert after["pilot"]["trials_unsaved"] == after["pilot"]["trials_run"] > 0
    # the same pilot answered: every method scored from all its trials (CPU threads make accuracies vary run to run)
    assert [(m["method"], m["best_lr"], m["n_seeds"]) for m in after["pilot"]["methods"]] == [
        (m["method"], m["best_lr"], m["n_seeds"]) for m in before["pilot"]["methods"]]
    assert not list(store.glob("trials/*.json"))
    text = cli(*args[:-1], "--out", store)  # the terminal view says so too, instead of "stored in"
    assert text.code == 0 and "could not be saved" in " ".join(text.out.split())


def test_pilot_trials_that_cannot_be_saved_are_counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Without root (no tmpfs): a store write failing with ENOSPC warns and returns False, nothing raised."""
    import errno

    import engine.train.pilot as pilot_mod

    def no_space(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pilot_mod, "atomic_write_text", no_space)
    with caplog.at_level("WARNING", logger="engine"):
        assert pilot_mod.save_to_store(tmp_path / "trials" / "x.json", "{}", "trials") is False
    assert "No space left on device" in caplog.text and "resume" in caplog.text
    monkeypatch.undo()
    assert pilot_mod.save_to_store(tmp_path / "trials" / "x.json", "{}", "trials") is True
    assert (tmp_path / "trials" / "x.json").read_text() == "{}"
