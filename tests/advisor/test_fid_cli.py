"""``vpt-advisor fid`` and ``vpt-advisor reference``: exit codes, messages, JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from advisor.cli import main
from engine.fid.features import INCEPTION_FILENAME
from tests.conftest import write_png
from tests.engine.fid_fakes import FakeExtractor


def _folder(root: Path, n: int, seed: int, scale: int = 1) -> Path:
    gen = np.random.default_rng(seed)
    for i in range(n):
        write_png(root / f"{i}.png", (gen.integers(0, 256, (16, 16, 3)) // scale).astype(np.uint8))
    return root


def test_fid_offline_without_weights_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _folder(tmp_path / "a", 3, 0), _folder(tmp_path / "b", 3, 1)
    code = main(["fid", str(a), str(b)])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and err.startswith("Error:")
    flat = " ".join(err.split())
    assert INCEPTION_FILENAME in flat and "--inception-weights" in flat and "hub/checkpoints" in flat


def test_fid_json_and_save_stats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    a, b = _folder(tmp_path / "a", 5, 2), _folder(tmp_path / "b", 4, 3, scale=2)
    out = tmp_path / "a.npz"
    code = main(["fid", str(a), str(b), "--json", "--inception-weights", str(fake_weights), "--save-stats", str(out),
                 "--dims", "64"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["fid"] > 0 and data["a"]["n_images"] == 5 and data["b"]["n_images"] == 4
    assert data["a"]["preprocessing"] == "pytorch-fid" and any("rank deficient" in w for w in data["warnings"])
    assert out.is_file() and out.with_suffix(".json").is_file()
    # The saved stats stand in for the folder and give the same FID (table output this time).
    code = main(["fid", str(out), str(b), "--inception-weights", str(fake_weights), "--dims", "64"])
    text = capsys.readouterr().out
    assert code == 0 and f"{data['fid']:.3f}"[:-1] in text and "stats file" in text


def test_fid_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path) -> None:
    assert main(["fid", str(tmp_path / "missing"), str(tmp_path), "--inception-weights", str(fake_weights)]) == 1
    assert "no such folder" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.zeros(3))
    assert main(["fid", str(bad), str(bad)]) == 1
    assert "no key 'sigma'" in capsys.readouterr().err
    assert main(["fid", str(tmp_path), str(tmp_path), "--dims", "100"]) == 1
    assert "dims" in capsys.readouterr().err
    assert main(["fid", str(tmp_path)]) == 1
    assert "--save-stats" in capsys.readouterr().err


def test_reference_build_list_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_weights: Path, fake_extractors: list[FakeExtractor]  # noqa: F811
) -> None:
    assert main(["reference", "list"]) == 0
    assert "reference build" in capsys.readouterr().out
    src = tmp_path / "src"
    for c in ("n01", "n02"):
        _folder(src / c, 3, seed=len(c))
    code = main(["reference", "build", str(src), "--name", "tiny", "--max-images", "4",
                 "--inception-weights", str(fake_weights), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["n_images"] == 4
    assert main(["reference", "list", "--json"]) == 0
    refs = json.loads(capsys.readouterr().out)["references"]
    assert [r["name"] for r in refs] == ["tiny"] and refs[0]["extractor"].startswith("pytorch-fid-inception-v3")
    assert main(["reference", "show", "tiny"]) == 0
    shown = capsys.readouterr().out
    assert "tiny" in shown and "pil-bicubic-299" in shown
    assert main(["reference", "show", "in21k"]) == 1
    command = "reference build 'hf://datasets/timm/imagenet-22k-wds/imagenet22k-train-*.tar' --name in21k"
    assert command in " ".join(capsys.readouterr().err.split())


def test_scheduler_without_dask_backend_is_one_error_line(
    tmp_path: Path, fake_weights: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    src = _folder(tmp_path / "a", 3, seed=0)
    for argv in (["fid", str(src), str(src)], ["reference", "build", str(src), "--name", "x"]):
        code = main([*argv, "--scheduler", "tcp://127.0.0.1:1", "--inception-weights", str(fake_weights)])
        err = capsys.readouterr().err
        assert code != 0 and err.count("Error:") == 1 and "needs --backend dask" in err, err
