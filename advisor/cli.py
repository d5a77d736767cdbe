"""The ``vpt-advisor`` command line: a thin typer app.

Commands live in ``advisor.commands.<group>`` and each registers itself through ``register(app)``.
``main`` is the console-script entry point: it runs the app once and turns every expected error into
``Error: <one line>`` on stderr with exit code 1 (130 on Ctrl-C). Tracebacks appear only with
``--debug`` or ``VPT_ADVISOR_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Annotated

import typer

from advisor.errors import format_error

__all__ = ["app", "main"]

COMMAND_MODULES = (
    "advisor.commands.recommend",
    "advisor.commands.fid",
    "advisor.commands.reference",
    "advisor.commands.profile",
    "advisor.commands.pilot",
    "advisor.commands.vtab",
)

app = typer.Typer(
    name="vpt-advisor",
    help="Should you fully finetune a pretrained ViT-B/16 or use visual prompt tuning (VPT)? "
    "Rules and numbers from Han et al., ICLR 2024 (arXiv 2401.12902).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Global options (``--debug`` is read by ``main`` before the command runs)."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


_Types = tuple[type[BaseException], ...]


def _exception_types() -> tuple[_Types, _Types, _Types]:
    """(exit, abort, usage-error) classes for both typer's vendored click (>= 0.22) and plain click."""
    exits: list[type[BaseException]] = [typer.Exit]
    aborts: list[type[BaseException]] = [typer.Abort]
    usage: list[type[BaseException]] = []
    if hasattr(typer, "TyperException"):
        usage.append(typer.TyperException)
    try:
        import click

        exits.append(click.exceptions.Exit)
        aborts.append(click.exceptions.Abort)
        usage.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer without click
        pass
    return tuple(exits), tuple(aborts), tuple(usage)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("VPT_ADVISOR_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (also used by the tests)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    from rich.markup import escape

    from advisor.render import err_console

    exit_types, abort_types, usage_types = _exception_types()
    try:
        result = app(args=args, prog_name="vpt-advisor", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except exit_types as exc:
        return int(getattr(exc, "exit_code", 0))
    except abort_types:
        err_console.print("Aborted.")
        return 130
    except usage_types as exc:  # usage errors: the parser's own message, exit 2
        show = getattr(exc, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:  # pragma: no cover
            err_console.print(f"Error: {escape(str(exc))}")
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err_console.print("Interrupted; finished work was kept.")
        return 130
    except Exception as exc:  # noqa: BLE001 - the single place where errors become messages
        message = format_error(exc)
        if debug:
            traceback.print_exc()
        if message is None:
            err_console.print(
                f"[red]Error:[/red] internal error ({type(exc).__name__}: {escape(str(exc))}); "
                "re-run with --debug and report it", markup=True, soft_wrap=True
            )
        else:
            err_console.print(f"[red]Error:[/red] {escape(message)}", markup=True, soft_wrap=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
