"""Values validated where they enter: integer labels in canonical form only, statistics whose FID would
overflow, damaged .npz files and checkpoints, a closed stdout, and no advice to delete a file the user named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.engine.fid_fakes import FakeExtractor, fake_extractors, fake_weights  # noqa: F401 - fixtures
from tests.faults.conftest import assert_clean_error, labeled_folder

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- integer labels -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["1_0", "+1", "007", "\u0661", "\uff11", "0x1"])
@pytest.mark.parametrize("fmt", ["list", "csv"])
def test_labels_not_written_as_plain_integers_are_refused(cli, tmp_path: Path, label: str, fmt: str) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 2})
    if fmt == "list":
        listing = root / "train.txt"
        listing.write_text(f"a/0.png 0\na/1.png {label}\n", encoding="utf-8")
    else:
        listing = root / "data.csv"
        listing.write_text(f"path,label\na/0.png,1\na/1.png,{label}\n", encoding="utf-8")
    run = cli("profile", listing)
    if label == "0x1" and fmt == "csv":  # not a number at all: a class name, as the CSV format allows
        assert run.code == 0 and json.loads(cli("profile", listing, "--json").out)["classes"] == ["0x1", "1"]
        return
    if label == "0x1":
        assert_clean_error(run, "line 2", "not an integer")
        return
    assert_clean_error(run, "line" if fmt == "list" else "data.csv", "not written as a plain integer")


def test_canonical_labels_are_read_and_class_names_stay_names(cli, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "train.txt").write_text("a/0.png 0\na/1.png 0\nb/0.png 10\nb/1.png 10\n")
    data = json.loads(cli("profile", root / "train.txt", "--json").out)
    assert data["class_counts"]["10"] == 2 and len(data["classes"]) == 11
    (root / "names.csv").write_text("path,label\na/0.png,cat\nb/0.png,dog_1\n")
    assert json.loads(cli("profile", root / "names.csv", "--json").out)["classes"] == ["cat", "dog_1"]


# --- statistics and damaged files -----------------------------------------------------------------------------------
def _stats(path: Path, mu: np.ndarray, sigma: np.ndarray) -> Path:
    np.savez(path, mu=mu, sigma=sigma)
    return path


@pytest.mark.parametrize("scale", [1e200, 1e120, -1e160])
def test_statistics_whose_fid_would_overflow_are_refused(cli, tmp_path: Path, scale: float) -> None:
    a = _stats(tmp_path / "a.npz", np.full(8, scale), np.eye(8))
    b = _stats(tmp_path / "b.npz", np.zeros(8), np.eye(8))
    assert_clean_error(cli("fid", a, b), "a.npz", "overflows float64")
    assert "FID" not in cli("fid", a, b).out


def test_the_overflow_guard_also_holds_without_the_validator() -> None:
    from engine.errors import StatsFileError
    from engine.fid.frechet import frechet_distance

    with pytest.raises(StatsFileError, match="not a finite number"):
        frechet_distance(np.full(4, 1e300), np.eye(4), np.zeros(4), np.eye(4), validate=False)


def _damaged_npz(path: Path, how: str) -> Path:
    _stats(path, np.zeros(8), np.eye(8))
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":  # a bad byte inside the member: the zip's CRC no longer matches
        buf = bytearray(data)
        buf[120] ^= 0xFF
        path.write_bytes(bytes(buf))
    elif how == "npy":
        np.save(path.with_suffix(".npy"), np.zeros(8))
        os.replace(path.with_suffix(".npy"), path)
    elif how == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("how", ["truncated", "flipped", "npy", "empty"])
def test_a_damaged_stats_file_is_one_error_naming_it(cli, tmp_path: Path, how: str) -> None:
    bad = _damaged_npz(tmp_path / "bad.npz", how)
    good = _stats(tmp_path / "good.npz", np.zeros(8), np.eye(8))
    assert_clean_error(cli("fid", bad, good), "bad.npz")


def test_reference_import_of_a_truncated_npz_is_one_error(cli, tmp_path: Path) -> None:
    bad = _damaged_npz(tmp_path / "ref.npz", "truncated")
    assert_clean_error(cli("reference", "import", bad, "--name", "r"), "ref.npz")


def _tree(root: Path, n: int = 12) -> Path:
    from tests.conftest import write_png

    gen = np.random.default_rng(0)
    for i in range(n):
        write_png(root / f"c{i % 3}" / f"{i}.png", gen.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return root


@pytest.mark.parametrize("how", ["truncated", "flipped", "npy"])
def test_a_damaged_build_checkpoint_is_discarded_by_a_rerun_and_by_overwrite(
    tmp_path: Path, fake_weights: Path, fake_extractors: list[FakeExtractor], how: str  # noqa: F811
) -> None:
    from engine.config.fid import FidConfig
    from engine.fid.refbuild import build_reference
    from engine.fid.reference import resolve_reference
    from engine.paths import references_dir

    src, config = _tree(tmp_path / "src"), FidConfig(weights=fake_weights, dims=64, batch_size=3)
    clean = build_reference(src, name="clean", config=config, device="cpu")

    def stop_after(n: int):  # noqa: ANN202 - a progress callback
        def cb(done: int, total: int) -> None:
            if done >= n:
                raise KeyboardInterrupt
        return cb

    for overwrite in (False, True):
        with pytest.raises(KeyboardInterrupt):
            build_reference(src, name="r", config=config, device="cpu", checkpoint_every=3, overwrite=overwrite,
                            on_progress=stop_after(9))
        work = references_dir() / ".r.partial"
        for ckpt in work.glob("checkpoint*"):
            _damage_file(ckpt, how)
        info = build_reference(src, name="r", config=config, device="cpu", checkpoint_every=3, overwrite=overwrite)
        assert info.n_images == clean.n_images == 12
        assert any("discarded damaged checkpoint" in m for m in info.messages)
        np.testing.assert_allclose(resolve_reference("r")[0].mu, resolve_reference("clean")[0].mu, rtol=1e-6)


def _damage_file(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        buf = bytearray(data)
        buf[len(buf) // 3] ^= 0xFF
        path.write_bytes(bytes(buf))
    else:
        np.save(path.with_suffix(".npy"), np.zeros(3))
        os.replace(path.with_suffix(".npy"), path)


# --- closed stdout --------------------------------------------------------------------------------------------------
def _with_stdout_closed(args: list[str], tmp_path: Path, *, close_in_process: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "VPT_ADVISOR_HOME": str(tmp_path / "home"),
           "HF_HUB_OFFLINE": "1"}
    code = "import os, sys\n" + ("os.close(1)\n" if close_in_process else "") + (
        "from advisor.cli import main\nsys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], stdout=None if close_in_process else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=120,
                          pass_fds=(), close_fds=True, **({} if close_in_process else {"preexec_fn": _close_fd1}))


def _close_fd1() -> None:
    os.close(1)


@pytest.mark.parametrize("args", [["recommend", "--task", "dtd", "--n-train", "500", "--json"],
                                  ["recommend", "--task", "dtd", "--n-train", "500"], ["profile", "DATA"],
                                  ["profile", "DATA", "--json"]])
@pytest.mark.parametrize("close_in_process", [False, True])
def test_a_closed_stdout_is_an_error_never_a_silent_success(tmp_path: Path, args: list[str],
                                                            close_in_process: bool) -> None:
    data = labeled_folder(tmp_path / "data", {"a": 2, "b": 2})
    done = _with_stdout_closed([str(data) if a == "DATA" else a for a in args], tmp_path,
                               close_in_process=close_in_process)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 1, done.stderr
    assert len(errors) == 1 and "standard output is closed" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


# --- advice about files the user named ------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"root:x:0:0:root:/root:/bin/bash\n", b"{\"threshold\": 1}", b"\xff\xfe\x00"])
def test_a_named_calibration_that_is_not_one_is_never_called_deletable(cli, tmp_path: Path, content: bytes) -> None:
    named = tmp_path / "passwd"
    named.write_bytes(content)
    line = assert_clean_error(cli("recommend", "--task", "dtd", "--n-train", "800", "--fid", "150",
                                  "--calibration", named), "passwd", "not a valid calibration")
    assert "delete" not in line.lower() and named.read_bytes() == content


def test_the_default_calibration_when_damaged_may_be_replaced(cli) -> None:
    from engine.fid.calibration import default_calibration_path

    path = default_calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json")
    line = assert_clean_error(cli("recommend", "--task", "dtd", "--n-train", "800", "--fid", "150"),
                              "calibration.json")
    assert "re-run 'vpt-advisor calibrate'" in line


@pytest.mark.parametrize("how", ["truncated", "flipped", "empty"])
def test_a_damaged_stored_reference_says_how_to_replace_it(cli, tmp_path: Path, how: str) -> None:
    from engine.paths import references_dir

    references_dir().mkdir(parents=True, exist_ok=True)
    _damaged_npz(references_dir() / "in21k.npz", how)
    data = labeled_folder(tmp_path / "data", {"a": 2, "b": 2})
    line = assert_clean_error(cli("fid", data, "in21k"), "in21k.npz", "--name in21k --overwrite")
    assert "delete" not in line
