"""Progress in a log: plain timestamped lines, one per tenth of the work (per epoch when there are few), none for a
stage that is over in a moment; and the commands use them when stderr is not a terminal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from advisor.cli import main
from advisor.commands._callbacks import PLAIN_QUIET_S, plain_progress
from tests.conftest import write_colour_dataset

pytestmark = pytest.mark.plain_progress

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.+): ([\d,]+)/([\d,]+) \((\d+) %\), \d+:\d\d:\d\d")


def _run(total: int, seconds_per_unit: float) -> list[str]:
    lines: list[str] = []
    now = [0.0]
    with plain_progress("Stage", write=lines.append, clock=lambda: now[0]) as update:
        update(0, total)
        for done in range(1, total + 1):
            now[0] += seconds_per_unit
            update(done, total)
    return lines


def test_one_line_per_tenth_of_the_work_with_time_left() -> None:
    lines = _run(1000, 0.5)
    assert 10 <= len(lines) <= 11 and all(LINE.match(line) for line in lines), lines
    assert [int(LINE.match(line).group(4)) for line in lines][-3:] == [80, 90, 100]  # type: ignore[union-attr]
    assert "~" in lines[0] and "left" in lines[0] and "left" not in lines[-1]


def test_one_line_per_epoch_when_there_are_few() -> None:
    lines = _run(5, 60.0)
    assert [LINE.match(line).group(2) for line in lines] == ["1", "2", "3", "4", "5"]  # type: ignore[union-attr]


def test_a_stage_over_in_a_moment_leaves_no_line() -> None:
    assert _run(400, PLAIN_QUIET_S / 1000) == []


def test_commands_write_plain_lines_to_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr is captured (not a terminal): a slow stage writes plain lines, never a rich bar's control codes."""
    import advisor.commands._callbacks as callbacks

    monkeypatch.setattr(callbacks, "PLAIN_QUIET_S", -1.0)  # as if reading the images were slow
    data = write_colour_dataset(tmp_path / "colours", 10)
    assert main(["profile", str(data)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "Reading images" in line]
    assert lines and all(LINE.match(line) for line in lines) and "30/30 (100 %)" in lines[-1], err
    assert "\x1b" not in err and "\r" not in err
