"""``--help`` works for every command and lists every option the command declares.

Help text goes through rich markup, so a stray ``[/word]`` in a help string used to turn ``--help``
into an internal error; this walks the real command tree, so a new command is covered by itself.
"""

from __future__ import annotations

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


def test_the_tree_has_every_command() -> None:
    names = {" ".join(p) for p, _ in _PATHS}
    assert {"recommend", "pilot", "fid", "profile", "reference build", "reference pull", "reproduce-vtab",
            "calibrate"} <= names


@pytest.mark.parametrize(("path", "command"), _PATHS, ids=[" ".join(p) for p, _ in _PATHS])
def test_help_shows_every_option(path: list[str], command: Any,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    captured = capsys.readouterr()
    assert "internal error" not in captured.err and "Usage:" in captured.out
    for param in command.params:
        if param.param_type_name == "option":
            assert param.opts[0] in captured.out, f"{' '.join(path)} --help does not list {param.opts[0]}"


def test_brackets_in_help_are_shown_literally(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reference", "build", "--help"]) == 0
    assert "hf://datasets/OWNER/REPO[/subdir]" in capsys.readouterr().out
