"""Bad datasets given to every command that reads data: special files, duplicate rows, labels used as
sizes, markup in names. Each ends in the right result (with what was skipped reported) or one error."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from tests.faults.conftest import assert_clean_error, labeled_folder


def _fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this system")
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    if not hasattr(socket, "AF_UNIX") or len(str(path)) > 100:
        pytest.skip("no Unix sockets here (or the path is too long for one)")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return path


def _special(kind: str, tmp_path: Path) -> tuple[Path, str]:
    if kind == "fifo":
        return _fifo(tmp_path / "pipe"), "named pipe"
    if kind == "dev-zero":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero")
        return Path("/dev/zero"), "character device"
    if kind == "socket":
        return _socket(tmp_path / "s.sock"), "socket"
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # a directory symlink pointing at itself
    return loop, "symbolic links"


def _in_thread(fn, timeout: float = 60.0):
    """Run ``fn`` and fail (instead of hanging the suite) when it does not return in time."""
    box: list[object] = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the command hung"
    return box[0]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "socket", "symlink-loop"])
@pytest.mark.parametrize("command", ["profile", "fid", "pilot", "recommend"])
def test_special_file_as_dataset_is_refused_at_once(cli, tmp_path: Path, kind: str, command: str) -> None:
    path, what = _special(kind, tmp_path)
    args = {"profile": ["profile", path], "fid": ["fid", path, tmp_path],
            "pilot": ["pilot", path, "--task", "dtd", "--random-init"],
            "recommend": ["recommend", path, "--task", "dtd"]}[command]
    run = _in_thread(lambda: cli(*args))
    assert_clean_error(run, str(path), *([what] if command != "fid" or kind != "symlink-loop" else []))


def test_special_files_inside_a_folder_are_skipped_and_reported(cli, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 3, "b": 3})
    _fifo(root / "a" / "pipe.png")
    (root / "b" / "loop.png").symlink_to(root / "b" / "loop.png")
    run = _in_thread(lambda: cli("profile", root, "--json"))
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert data["n_used"] == 6 and data["n_skipped"] == 2
    assert data["skipped_by_reason"] == {"not-an-image": 1, "symlink-loop": 1}


def _list_with_duplicates(root: Path) -> Path:
    labeled_folder(root, {"a": 4, "b": 4})
    lines = [f"a/{i}.png 0" for i in range(4)] + [f"b/{i}.png 1" for i in range(4)]
    lines += ["a/0.png 0", "./a/1.png 0", "b/0.png 0"]  # exact repeat, same file spelled differently, other label
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root / "train.txt"


def test_duplicate_list_rows_are_counted_not_used(cli, tmp_path: Path) -> None:
    listing = _list_with_duplicates(tmp_path / "data")
    run = cli("profile", listing, "--json")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert data["n_used"] == 8 and data["skipped_by_reason"] == {"duplicate": 3}
    details = [s["detail"] for s in data["skipped_examples"]]
    assert any("with label 1" in d for d in details)  # the conflicting label is named
    table = cli("profile", listing)
    assert table.code == 0 and "duplicate" in table.out and "Images skipped" in table.out


def test_duplicate_csv_rows_are_counted_not_used(cli, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 3, "b": 3})
    rows = ["path,label"] + [f"{c}/{i}.png,{c}" for c in "ab" for i in range(3)] + ["a/2.png,a", "b/0.png,a"]
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    data = json.loads(cli("profile", root / "data.csv", "--json").out)
    assert data["n_used"] == 6 and data["skipped_by_reason"] == {"duplicate": 2}


def test_duplicates_never_reach_both_sides_of_the_pilot_split(tmp_path: Path) -> None:
    from engine.config.train import PilotConfig
    from engine.data.index import index_dataset
    from engine.train.pilot_plan import split_samples

    index = index_dataset(_list_with_duplicates(tmp_path / "data"))
    config = PilotConfig(budget_s=60)
    train, val, compare = split_samples(index.samples, config, n_compare=2, n=6)
    paths = [os.path.realpath(s.path) for s in train + val + compare]
    assert len(paths) == len(set(paths)) == 8


@pytest.mark.parametrize("fmt", ["list", "csv"])
def test_label_values_used_as_sizes_are_refused(cli, tmp_path: Path, fmt: str) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 2})
    if fmt == "list":
        listing = root / "train.txt"
        listing.write_text("a/0.png 0\na/1.png 4000000000\n")
    else:
        listing = root / "data.csv"
        listing.write_text("path,label\na/0.png,0\na/1.png,4000000000\n")
    run = _in_thread(lambda: cli("profile", listing), timeout=30)
    assert_clean_error(run, "4000000000", "class indices")


def test_markup_in_names_and_labels_is_printed_as_text(cli, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "data", {"[red]c": 2, "[bold]b": 2})
    (root / "[link=x]bad.png").write_bytes(b"")  # an image in the root of a class tree: skipped, named
    run = cli("profile", root)
    assert run.code == 0, run.err
    assert "[red]c" in run.out and "[bold]b" in run.out and "[link=x]bad.png" in run.out
    missing = tmp_path / "[red]nope[/red]"
    line = assert_clean_error(cli("profile", missing))
    assert "[red]nope[/red]" in line


def test_a_huge_list_file_is_not_read_into_memory(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.data.checks as checks

    listing = tmp_path / "big.txt"
    listing.write_text("x.png 0\n" * 1000)
    monkeypatch.setattr(checks, "MAX_LIST_FILE_BYTES", 100)
    assert_clean_error(cli("profile", listing), "big.txt", "GiB")


@pytest.mark.parametrize("content", [b"PK\x03\x04" + bytes(range(256)) * 40, b"\0" * 300])
def test_a_binary_file_given_as_a_list_file_is_named_as_such(cli, tmp_path: Path, content: bytes) -> None:
    blob = tmp_path / "archive.zip"
    blob.write_bytes(content)
    assert_clean_error(cli("profile", blob), "archive.zip", "binary file")


def test_a_long_bad_line_is_quoted_short(cli, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("x" * 5000 + "\n")
    line = assert_clean_error(cli("profile", listing), "line 1")
    assert len(line) < 300


def test_a_file_linked_into_two_classes_is_used_once(cli, tmp_path: Path) -> None:
    root = labeled_folder(tmp_path / "data", {"a": 3, "b": 3})
    (root / "b" / "also-a0.png").symlink_to(root / "a" / "0.png")
    (root / "c").symlink_to(root / "a")  # a class folder that is a link to another: each real folder walked once
    data = json.loads(cli("profile", root, "--json").out)
    assert data["n_used"] == 6 and data["skipped_by_reason"] == {"duplicate": 1}
