"""``recommend --pilot`` and ``pilot --report``: the pilot's evidence reaches the recommendation and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import advisor.usecases.recommend as rec_uc
from advisor.cli import main
from advisor.schemas import MethodScore, PairedDifference, PilotEvidence
from advisor.usecases.pilot import PilotReport, PilotRequest
from tests.advisor.test_pilot_cli import TINY, colour_dataset, quick  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fake_pilot(calls: list[PilotRequest], ft: float, vpt: float):
    def run(req: PilotRequest, *, progress: Any, on_plan: Any, confirm: Any, prior: Any) -> tuple[PilotReport, None]:
        calls.append(req)
        assert prior is not None and prior.disparity == "high"  # the recommend inputs are passed on
        diff = vpt - ft
        paired = PairedDifference(vpt_method="vpt-deep", ft_method="full", difference=diff, ci95=(diff - 3, diff + 3),
                                  ci99=(diff - 4, diff + 4), n_compare=1800, discordance=0.3)
        evidence = PilotEvidence(n_train=160, n_val=40, paired=paired, scores=[
            MethodScore(method="full", mean=ft, std=0.5, n_seeds=3),
            MethodScore(method="vpt-deep", mean=vpt, std=0.5, n_seeds=3)])
        report = PilotReport(dataset=str(req.dataset), n_labeled=200, task=req.task, num_prompts=100,
                             num_prompts_source="test", device={"device": "cpu"}, pilot={}, evidence=evidence,
                             recommendation=None)
        return report, None

    return run


def test_pilot_evidence_overrides_the_paper_prior(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--demo", "--json"]) == 0
    prior = json.loads(capsys.readouterr().out)
    # counting below 400 samples: the held-out record does not earn an answer, so a pilot leaning VPT
    assert prior["recommendation"]["recommendation"] == "pilot" and prior["recommendation"]["lean"] == "VPT"

    calls: list[PilotRequest] = []
    monkeypatch.setattr(rec_uc, "run_pilot_request", _fake_pilot(calls, ft=90.0, vpt=60.0))
    assert main(["recommend", "--demo", "--json", "--pilot", "--budget", "5m", "--yes"]) == 0
    out = json.loads(capsys.readouterr().out)
    (req,) = calls
    assert req.task == "counting" and req.budget == "5m" and req.yes
    assert req.dataset == Path(prior["dataset"]["source"])
    assert out["pilot"]["scores"][0]["mean"] == 90.0
    assert out["recommendation"]["recommendation"] == "FT"
    assert any(r["rule"] == "pilot" for r in out["recommendation"]["reasons"])


def test_pilot_within_noise_breaks_the_priors_tie_at_low_confidence(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(rec_uc, "run_pilot_request", _fake_pilot([], ft=70.2, vpt=70.0))
    assert main(["recommend", "--demo", "--json", "--pilot"]) == 0
    rec = json.loads(capsys.readouterr().out)["recommendation"]  # the prior is "run a pilot": the sign decides
    assert rec["recommendation"] == "FT" and rec["confidence"] == "low"


def test_pilot_needs_a_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--task", "counting", "--pilot"]) == 1
    err = capsys.readouterr().err
    assert "--pilot trains on a dataset" in err and "Traceback" not in err


def test_pilot_offline_without_weights_shows_prior_then_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recommend", "--demo", "--pilot", "--device", "cpu", "--yes"])
    captured = capsys.readouterr()
    assert code == 1
    assert "recommendation from the paper alone" in captured.err
    assert "Run a pilot of FT and VPT (leaning VPT)" in captured.out  # the prior was still shown
    assert "Error:" in captured.err and "Traceback" not in captured.err


def test_pilot_report_html(colour_dataset: Path, tmp_path: Path, quick: None,  # noqa: F811
                           capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "pilot.html"
    code = main(["pilot", str(colour_dataset), "--task", "counting", "--prompts", "2", *TINY,
                 "--out", str(tmp_path / "s"), "--report", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    html = report.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 2 and "vpt-deep" in html
    assert f"Wrote {report}" in captured.err.replace("\n", "")


def test_pilot_report_bad_suffix_fails_before_training(colour_dataset: Path, tmp_path: Path,  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pilot", str(colour_dataset), *TINY, "--report", str(tmp_path / "r.docx")]) == 1
    assert "unknown report type" in capsys.readouterr().err
    assert not (tmp_path / "r.docx").exists()
