"""``--help`` works for every command and lists every option the command declares.

Help text goes through rich markup, so a stray ``[/word]`` in a help string used to turn ``--help``
into an internal error; this walks the real command tree, so a new command is covered by itself.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from advisor.cli import app, main


def _command_paths() -> list[tuple[list[str], Any]]:
    """Every leaf command as (argv prefix, click command), e.g. (['reference', 'build'], ...).

    Duck-typed: recent typer ships its own copy of click, older typer uses click itself.
    """
    out: list[tuple[list[str], Any]] = []

    def walk(prefix: list[str], cmd: Any) -> None:
        if isinstance(getattr(cmd, "commands", None), dict):
            for name, sub in cmd.commands.items():
                walk([*prefix, name], sub)
        else:
            out.append((prefix, cmd))

    walk([], typer.main.get_command(app))
    return out


_PATHS = _command_paths()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_tree_has_every_command() -> None:
    names = {" ".join(p) for p, _ in _PATHS}
    assert {"recommend", "pilot", "fid", "profile", "reference build", "reference pull", "reproduce-vtab",
            "calibrate"} <= names


@pytest.mark.parametrize("style", ["plain", "rich"])
@pytest.mark.parametrize(("path", "command"), _PATHS, ids=[" ".join(p) for p, _ in _PATHS])
def test_help_shows_every_option(path: list[str], command: Any, style: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Piped help is click's plain text; FORCE_COLOR (or a terminal) gives rich's panels, which parse markup."""
    if style == "rich":
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("NO_COLOR", "1")  # panels and markup parsing, without colour codes between the words
    assert main([*path, "--help"]) == 0
    captured = capsys.readouterr()
    out = ANSI.sub("", captured.out)
    assert "internal error" not in captured.err and "Usage:" in out
    for param in command.params:
        if param.param_type_name == "option":
            assert param.opts[0] in out, f"{' '.join(path)} --help does not list {param.opts[0]}"


@pytest.mark.parametrize("style", ["plain", "rich"])
def test_help_text_is_shown_literally(style: str, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    if style == "rich":
        monkeypatch.setenv("FORCE_COLOR", "1")
        monkeypatch.setenv("NO_COLOR", "1")
    assert main(["reference", "build", "--help"]) == 0
    out = ANSI.sub("", capsys.readouterr().out)
    assert "hf://datasets/OWNER/REPO (or .../REPO/SUBDIR)" in " ".join(out.replace("│", " ").split())
    assert "\\" not in out


def test_piped_help_is_whole_and_unpadded(capsys: pytest.CaptureFixture[str]) -> None:
    """Piped --help: every default printed whole (rich's panels cropped the model name) and no trailing space."""
    from engine.config.train import DEFAULT_BACKBONE

    assert main(["pilot", "--help"]) == 0
    out = capsys.readouterr().out
    assert DEFAULT_BACKBONE in out and "…" not in out
    assert not [line for line in out.splitlines() if line != line.rstrip()]


def test_the_console_script_exits_with_mains_code_after_freezing_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """``entry`` (the ``vpt-advisor`` script) passes main's exit code through and freezes the collector's objects
    only after main returned (what ``benchmarks.perf.fid_speed`` times as the cold wall)."""
    import gc

    import advisor.cli as cli

    order: list[str] = []
    monkeypatch.setattr(cli, "main", lambda: order.append("main") or 3)
    monkeypatch.setattr(gc, "freeze", lambda: order.append("freeze"))
    with pytest.raises(SystemExit) as exc:
        cli.entry()
    assert exc.value.code == 3 and order == ["main", "freeze"]
