"""Piped output (not a terminal, 80 columns): nothing after a line's last character, and a dataset answer on one screen.

The commands run through the real entry point with stdout and stderr captured (so neither is a terminal), as in
``vpt-advisor recommend ... | cat -A`` or a CI log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from advisor.cli import main
from advisor.render.recommend import SHORT_VIEW_LINES
from tests.conftest import write_colour_dataset


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def _padded(text: str) -> list[str]:
    return [line for line in text.splitlines() if line != line.rstrip()]


@pytest.fixture
def eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


@pytest.mark.usefixtures("eighty_columns")
@pytest.mark.parametrize("argv", [
    ["recommend", "--task", "natural", "--n-train", "5000"],
    ["recommend", "--task", "classification", "--n-train", "3000", "--fid", "172", "--explain"],
    ["reference", "list"],
])
def test_piped_output_has_no_trailing_spaces(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out, err = _run(capsys, *argv)
    assert out.strip() and not _padded(out) and not _padded(err), _padded(out) + _padded(err)


@pytest.mark.usefixtures("eighty_columns")
def test_every_command_in_a_message_is_on_a_line_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _run(capsys, "reference", "list")
    commands = [line for line in out.splitlines() if "vpt-advisor " in line]
    assert len(commands) == 2 and all(line.startswith("  vpt-advisor reference ") for line in commands), out


@pytest.mark.usefixtures("eighty_columns")
@pytest.mark.parametrize("task", ["classification", "counting", "natural"])
def test_a_dataset_answer_fits_one_screen_without_trailing_spaces(
    task: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No reference and no Inception weights here: the answer, its reasons, the vote and the warning fit 25 lines."""
    data = write_colour_dataset(tmp_path / "colours", 4)
    out, err = _run(capsys, "recommend", str(data), "--task", task)
    lines = out.splitlines() + err.splitlines()
    assert len(lines) <= SHORT_VIEW_LINES == 25, "\n".join(lines)
    assert not _padded(out) and not _padded(err)
    assert all(len(line) <= 80 or " " not in line.strip() or line.startswith("  ") for line in lines)
    assert "Recommendation:" in out and "Warning:" in err and "--explain" in out


@pytest.mark.usefixtures("eighty_columns")
def test_the_short_view_keeps_the_dissenting_experiments_and_counts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """11 classification tasks voted at 400, FT won one (Patch Camelyon): that row stays, the others are counted."""
    data = write_colour_dataset(tmp_path / "colours", 4)
    out, _ = _run(capsys, "recommend", str(data), "--task", "classification", "--n-train", "400")
    rows = [line.split("  ")[0] for line in out.splitlines()
            if line.endswith(("VPT", "FT")) and "  " in line and not line.startswith(" ")]
    assert "Patch Camelyon" in rows and len(rows) < 11, rows
    assert f"+ {11 - len(rows)} more (all VPT): --explain lists every one" in out
    full, _ = _run(capsys, "recommend", str(data), "--task", "classification", "--n-train", "400", "--explain")
    assert "more (all VPT)" not in full and all(name in full for name in ("Sun397", "Resisc45", "Pets"))


def test_rows_kept_are_the_minority_then_those_the_reasons_name_in_table_order() -> None:
    from advisor.render.recommend import _shown_tasks
    from advisor.schemas import NearestTask

    def task(name: str, winner: str) -> NearestTask:
        return NearestTask(key=name.lower(), name=name, group="Natural", disparity="low", n_train=400, ft=50.0,
                           vpt=60.0 if winner == "VPT" else 40.0,
                           gap=10.0 if winner == "VPT" else -10.0, winner=winner, why="like 'x'", source="Table 5")

    tasks = [task("A", "VPT"), task("B", "VPT"), task("C", "FT"), task("D", "VPT"), task("E", "VPT")]
    assert [t.name for t in _shown_tasks(tasks, 3, said="D wins by less than 1 point")] == ["A", "C", "D"]
    assert [t.name for t in _shown_tasks(tasks, 2)] == ["A", "C"]
    assert _shown_tasks(tasks, None) == tasks and _shown_tasks(tasks, 9) == tasks


@pytest.mark.usefixtures("eighty_columns")
def test_without_a_reference_the_answer_names_both_missing_pieces_and_what_an_fid_would_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_colour_dataset(tmp_path / "colours", 4)
    out, err = _run(capsys, "recommend", str(data), "--task", "natural", "--n-train", "5000")
    assert err.count("Warning:") == 1 and "no reference 'in21k'" in err and "no Inception weights" in err
    commands = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    assert [c.split()[:3] for c in commands] == [["vpt-advisor", "reference", "build"], ["curl", "-L", "--create-dirs"]]
    assert "--max-images 10000" in commands[0] and "pt_inception-2015-12-05-6726825d.pth" in commands[1]
    # Table 5 at 5,000: split vote of the Natural tasks; a similar FID gives VPT, a dissimilar one FT
    assert "FID not measured; with an FID <= 169.1" in " ".join(out.split())


@pytest.mark.usefixtures("eighty_columns")
def test_reference_build_says_the_smallest_size_the_fid_check_accepts_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Too small: a warning that the reference will not verify; larger: the smallest size that would pass."""
    missing = tmp_path / "no-weights.pth"  # the build stops at the weights, after the size was said
    for max_images, expected in (("500", "below the 10,000 images the FID check needs"),
                                 ("50000", "the smallest reference the FID check accepts has 10,000")):
        code = main(["reference", "build", str(tmp_path), "--name", "x", "--max-images", max_images,
                     "--inception-weights", str(missing)])
        captured = capsys.readouterr()
        said = " ".join((captured.out + captured.err).split())
        assert code == 1 and expected in said and "--max-images 10000" in said, said
        assert said.index(expected) < said.index("Error:")
