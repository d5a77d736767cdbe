"""Every performance benchmark runs end to end on tiny settings and prints the CPU line first.

These check plumbing only (a benchmark that cannot start is a bug a user meets first); the numbers they
print on such tiny inputs mean nothing and are not asserted.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _first_line(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    out = capsys.readouterr().out
    return out.splitlines()[0], out


def test_frechet_speed_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.perf.frechet_speed import main

    assert main(["--n", "40", "--dims", "16", "--repeats", "1"]) in (0, None)
    first, out = _first_line(capsys)
    assert first.startswith("CPU: ") and "avx512_bf16" in first and "|FID diff|" in out


def test_fid_infinity_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.perf.fid_infinity import main

    assert main(["--dims", "8", "--repeats", "1"]) in (0, None)
    first, out = _first_line(capsys)
    assert first.startswith("CPU: ") and "FID-inf" in out


@pytest.mark.slow
def test_vtab_sweep_runs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.perf.vtab_sweep import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main(["--configs", "2", "--repeats", "1", "--epochs", "1", "--train", "8", "--batch", "4", "--size", "16",
          "--depth", "1", "--dim", "16"])
    first, out = _first_line(capsys)
    assert first.startswith("CPU: ") and "speedup batched vs sequential" in out


@pytest.mark.slow
def test_pilot_estimate_runs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.perf.pilot_estimate import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    main(["--budgets", "5", "--images", "12", "--seeds", "1", "--min-detectable", "95"])
    first, out = _first_line(capsys)
    assert first.startswith("CPU: ") and "estimates within" in out


def test_offline_failure_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.perf.offline_failure import main

    assert main(["--repeats", "1", "--model", "vit_tiny_patch16_224"]) == 0
    first, out = _first_line(capsys)
    assert first.startswith("CPU: ") and "avoided / offline" in out and "closed network" in out


def test_pilot_verdict_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.perf.pilot_verdict import main

    main(["--replicates", "200", "--target", "10"])
    first, out = _first_line(capsys)
    assert first.startswith("CPU: ") and "one seed, old rule" in out and "scenarios in" in out
