"""Names from the user's disk are shown literally wherever they are printed or written: no rich markup or
emoji codes interpreted, control characters and bidi overrides escaped, undecodable bytes represented
(never a crash), Markdown and HTML escaped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.faults.conftest import assert_clean_error, labeled_folder

ESC, RLO = "\x1b", "\u202e"
HOSTILE = {  # folder name on disk -> what must be shown for it
    ":x: dir": ":x: dir",
    ":smile:": ":smile:",
    "[bold]b": "[bold]b",
    f"{ESC}[31mred": "\\x1b[31mred",
    f"a{RLO}b": "a\\u202eb",
    "tab\there": "tab\\x09here",
}


def _hostile_tree(root: Path) -> Path:
    labeled_folder(root, dict.fromkeys(HOSTILE, 2))
    return root


def _no_raw_controls(text: str) -> None:
    assert ESC not in text and RLO not in text, repr(text[:300])
    assert "❌" not in text and "😄" not in text  # emoji codes never become emoji


def test_profile_class_table_shows_names_literally(cli, tmp_path: Path) -> None:
    root = _hostile_tree(tmp_path / "data")
    run = cli("profile", root)
    assert run.code == 0, run.err
    _no_raw_controls(run.out + run.err)
    for shown in HOSTILE.values():
        assert shown in run.out, shown


def test_profile_json_uses_the_same_escaped_names(cli, tmp_path: Path) -> None:
    root = _hostile_tree(tmp_path / "data")
    data = json.loads(cli("profile", root, "--json").out)
    assert sorted(data["classes"]) == sorted(HOSTILE.values())
    assert sorted(data["class_counts"]) == sorted(HOSTILE.values())


@pytest.mark.skipif(os.name != "posix", reason="non-UTF-8 file names need a POSIX file system")
def test_non_utf8_class_folder_and_dataset_path_never_crash_json(cli, tmp_path: Path) -> None:
    base = os.fsencode(tmp_path) + b"/caf\xe9"  # Latin-1 bytes: not UTF-8
    labeled_folder(Path(os.fsdecode(base)), {"ok": 2})
    labeled_folder(Path(os.fsdecode(base)), {os.fsdecode(b"\xff\xfe"): 2})
    run = cli("profile", Path(os.fsdecode(base)))
    assert run.code == 0, run.err
    assert "caf\\xe9" in run.out and "\\xff\\xfe" in run.out
    data = json.loads(cli("profile", Path(os.fsdecode(base)), "--json").out)
    assert data["source"].endswith("caf\\xe9") and "\\xff\\xfe" in data["classes"]


@pytest.mark.parametrize("name", [":x: missing", "[red]gone[/red]", f"{ESC}[2Jclear", f"rl{RLO}o"])
def test_errors_name_the_path_as_it_is(cli, tmp_path: Path, name: str) -> None:
    line = assert_clean_error(cli("profile", tmp_path / name))
    _no_raw_controls(line)
    shown = name.replace(ESC, "\\x1b").replace(RLO, "\\u202e")
    assert shown in line


def test_skipped_files_and_warnings_show_names_literally(cli, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 2, ":x:": 2})
    (root / ":x:" / f"{ESC}]8;;evil{ESC}\\bad.png").write_bytes(b"")  # zero-byte, a hyperlink escape in its name
    (root / ":warning: root.png").write_bytes(b"")  # an image outside any class folder: warned about, skipped
    run = cli("profile", root)
    assert run.code == 0, run.err
    _no_raw_controls(run.out + run.err)
    assert "/:x:/" in run.out and "\\x1b]8;;evil" in run.out and ":warning: root.png" in run.out
    assert "⚠" not in run.out + run.err


def test_markdown_report_escapes_the_dataset_path(cli, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "d*a_t[a](x)<b>", {"a": 3, "b": 3})
    out = tmp_path / "r.md"
    run = cli("recommend", root, "--task", "dtd", "--report", out)
    assert run.code == 0, run.err
    text = out.read_text(encoding="utf-8")
    assert str(root) not in text  # never the raw path, which would render as emphasis, a link and a tag
    assert "d\\*a\\_t\\[a\\](x)\\<b\\>" in text


def test_html_report_escapes_bidi_overrides_and_markup(tmp_path: Path) -> None:
    from advisor.report.html import render_html
    from advisor.report.markdown import md_text
    from tests.advisor import report_cases as cases

    inputs = cases.pilot_inputs().model_copy(update={"dataset": f"<script>x</script>{RLO}evil"})
    from advisor.report.document import pilot_document

    page = render_html(pilot_document(inputs))
    assert "<script>x" not in page and RLO not in page and "\\u202eevil" in page
    assert md_text("1. not a list") == "1\\. not a list" and md_text("- no bullet") == "\\- no bullet"
    assert md_text("| a |", line_start=False) == "\\| a \\|"


def test_class_folder_linked_outside_the_dataset_is_refused_as_list_entries_are(cli, tmp_path: Path) -> None:
    outside = labeled_folder(tmp_path / "elsewhere", {"x": 3})
    root = labeled_folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "everything").symlink_to("/")
    (root / "borrowed").symlink_to(outside / "x")
    run = cli("profile", root, "--json")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert data["classes"] == ["a", "b"] and data["n_used"] == 4  # the links were never walked
    refused = {Path(f["path"]).name: f for f in data["skipped_folders"]}
    assert refused["everything"]["reason"] == refused["borrowed"]["reason"] == "outside-root"
    assert "links to /," in refused["everything"]["detail"]
    assert "Warning:" in run.err and "everything" in run.err
