"""The short default view and ``--explain``: what each shows, caveats said once, messages copyable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from advisor.cli import main
from advisor.render import split_copyable
from advisor.rules import REFERENCE_CAVEAT

WHAT_IF = ["recommend", "--task", "classification", "--n-train", "3000", "--fid", "172"]


def _norm(text: str) -> str:
    return " ".join(text.split())


def _run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         columns: int = 80) -> tuple[str, str]:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(argv) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_what_if_fits_25_lines_at_80_columns(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _run(WHAT_IF, capsys, monkeypatch)
    lines = out.splitlines()
    assert len(lines) <= 25, out
    assert all(len(line) <= 80 for line in lines) and "…" not in out
    assert lines[0].startswith("Recommendation: Run a pilot") and "confidence low" in lines[0]
    reasons = [line for line in lines if re.match(r" \d\. ", line)]
    assert len(reasons) == 3 and "Table 19" in reasons[0]  # each reason names its table first
    assert "CIFAR-100" in out and "--explain" in out


def test_explain_shows_every_reason_in_full(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    full, _ = _run([*WHAT_IF, "--explain"], capsys, monkeypatch, columns=120)
    data = json.loads(_run([*WHAT_IF, "--json"], capsys, monkeypatch)[0])
    rec = data["recommendation"]
    flat = _norm(full)
    for reason in rec["reasons"]:
        assert _norm(reason["sentence"]) in flat
    assert "Data-size trend" in full and rec["provenance"]["paper_data_sha256"][:12] in full
    short, _ = _run(WHAT_IF, capsys, monkeypatch, columns=120)
    assert len(short.splitlines()) < len(full.splitlines())


@pytest.mark.parametrize("explain", [[], ["--explain"]])
def test_each_caveat_is_said_once(explain: list[str], capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _run([*WHAT_IF, *explain], capsys, monkeypatch, columns=200)
    assert _norm(out + err).count(_norm(REFERENCE_CAVEAT)) == 1


@pytest.mark.parametrize("explain", [[], ["-v"]])
def test_missing_reference_is_said_once(explain: list[str], tiny_imagefolder: Path,
                                        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = _run(["recommend", str(tiny_imagefolder), "--task", "counting", *explain], capsys, monkeypatch)
    both = out + err
    assert _norm(both).count("no reference 'in21k'") == 1, both
    assert "Measuring FID" not in err  # no spinner for a measurement that never started
    # the command to build the reference is on a line of its own, whole
    assert any(line.strip().startswith("vpt-advisor reference build") and "--name in21k --max-images 10000" in line
               for line in both.splitlines())


def test_json_content_is_unchanged_by_the_views(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    a = json.loads(_run([*WHAT_IF, "--json"], capsys, monkeypatch)[0])
    b = json.loads(_run([*WHAT_IF, "--json", "--explain"], capsys, monkeypatch)[0])
    assert a == b and set(a) >= {"recommendation", "request", "warnings"}


def test_urls_commands_and_long_paths_are_copyable_parts() -> None:
    url = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
    long_path = "/home/someone/.cache/torch/hub/checkpoints/inception.pth"
    parts = split_copyable(f"Put the file (from {url}) in {long_path} or /short/path; "
                           "build it with: vpt-advisor reference build /data --name in21k; done")
    copyable = [text for text, is_copy in parts if is_copy]
    # short paths stay in the prose: a word shorter than the line is never split by the wrap
    assert copyable == [url, long_path, "vpt-advisor reference build /data --name in21k"]
    assert "".join(text for text, _ in parts).endswith("; done")


def test_long_url_in_a_warning_is_never_wrapped(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.render import configure_consoles, warn

    monkeypatch.setenv("COLUMNS", "60")
    configure_consoles()
    url = "https://example.org/" + "x" * 90 + ".pth"
    warn(f"weights missing; download {url} by hand")
    warn(f"weights missing; download {url} by hand")  # a repeated warning is dropped
    err = capsys.readouterr().err
    assert err.count(url) == 1 and any(line.strip() == url for line in err.splitlines())


def test_progress_bar_draws_only_after_real_work(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.render import configure_consoles, progress_bar

    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal: bars are enabled
    configure_consoles()
    try:
        with progress_bar("Measuring FID"):
            pass  # e.g. the reference is missing: the step fails before any image is read
        assert "Measuring FID" not in capsys.readouterr().err
        with progress_bar("Reading images") as on_progress:
            on_progress(0, 0)  # nothing counted yet
            on_progress(3, 4)
        assert "Reading images" in capsys.readouterr().err
    finally:
        monkeypatch.delenv("FORCE_COLOR")
        configure_consoles()
