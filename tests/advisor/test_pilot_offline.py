"""Missing backbone weights end a pilot at once: before torch is imported, a device resolved or a model built.

Not timing tests: each asserts on what ran before the error (the 2 s the README promises follows from doing
nothing but a file lookup and, online, one connection attempt of at most ``PROBE_TIMEOUT_S``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.cli import main
from engine.train.availability import PROBE_TIMEOUT_S, check_backbone_available, hub_cache_dir
from tests.conftest import write_colour_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def nothing_may_be_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every step past the weights check records itself (and fails), so a test can assert none ran."""
    import engine.device
    import engine.train.models
    import engine.train.pilot

    called: list[str] = []

    def recorder(name: str):  # noqa: ANN202 - a stand-in with any signature
        def stand_in(*args: object, **kwargs: object) -> None:
            called.append(name)
            raise AssertionError(f"{name} ran before the weights check failed")
        return stand_in

    for module, name in ((engine.device, "resolve_device"), (engine.train.pilot, "load_pilot_backbone"),
                         (engine.train.models, "create_backbone"), (engine.train.pilot, "plan_pilot")):
        monkeypatch.setattr(module, name, recorder(name))
    return called


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_offline_without_weights_fails_before_any_model_is_built(
    tmp_path: Path, nothing_may_be_built: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_colour_dataset(tmp_path / "colours", 4)
    assert main(["pilot", str(data), "--task", "classification"]) == 1  # HF_HUB_OFFLINE=1 (tests/conftest.py)
    line = _error_line(capsys.readouterr().err)
    assert "switched off by HF_HUB_OFFLINE" in line and "--weights PATH" in line and "--random-init" in line
    assert nothing_may_be_built == []


def test_a_closed_network_is_probed_once_briefly_then_refused(
    tmp_path: Path, nothing_may_be_built: list[str], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.network

    monkeypatch.delenv("HF_HUB_OFFLINE")
    probes: list[tuple[str, float]] = []

    def unreachable(url: str, *, timeout: float = 99.0) -> bool:
        probes.append((url, timeout))
        return False

    monkeypatch.setattr(engine.network, "host_reachable", unreachable)
    data = write_colour_dataset(tmp_path / "colours", 4)
    assert main(["pilot", str(data), "--task", "classification"]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "did not answer within 1 s" in line and "--random-init" in line
    assert probes == [("https://huggingface.co", PROBE_TIMEOUT_S)] and PROBE_TIMEOUT_S <= 1.0
    assert nothing_may_be_built == []


def test_the_failure_comes_before_torch_is_imported(tmp_path: Path) -> None:
    data = write_colour_dataset(tmp_path / "colours", 4)
    code = ("import sys; from advisor.cli import main; "
            f"c = main(['pilot', {str(data)!r}, '--task', 'classification']); print(c, 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.split() == ["1", "False"], done.stdout + done.stderr
    assert "--random-init" in done.stderr


def test_a_cached_copy_or_a_file_leaves_the_answer_to_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.network

    monkeypatch.setattr(engine.network, "host_reachable", lambda *a, **k: pytest.fail("no probe when cached"))
    (hub_cache_dir() / "models--timm--vit_base_patch16_224.orig_in21k").mkdir(parents=True)
    check_backbone_available("vit_base_patch16_224.orig_in21k")
    check_backbone_available("vit_base_patch16_224")  # untagged: any cached tag may be the default
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    check_backbone_available("vit_small_patch16_224.augreg_in21k", weights=weights)
    check_backbone_available("vit_small_patch16_224.augreg_in21k", random_init=True)
    with pytest.raises(Exception, match="does not exist.*--random-init"):
        check_backbone_available("vit_small_patch16_224.augreg_in21k", weights=tmp_path / "missing.pth")
    with pytest.raises(Exception, match="HF_HUB_OFFLINE"):
        check_backbone_available("vit_small_patch16_224.augreg_in21k")
