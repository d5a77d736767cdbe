"""The ``vpt-advisor`` command line: a thin typer app.

Commands live in ``advisor.commands.<group>`` and each registers itself through ``register(app)``.
``main`` is the console-script entry point: it runs the app once and turns every expected error into
``Error: <one line>`` on stderr with exit code 1 (130 on Ctrl-C). Tracebacks appear only with
``--debug`` or ``VPT_ADVISOR_DEBUG=1``.
"""

from __future__ import annotations

import errno
import gc
import importlib
import logging
import os
import sys
import traceback
from typing import Annotated, Literal

import typer

from advisor.errors import format_error

# Imports inside functions are deliberate: every `vpt-advisor` run, `--help` included, starts here, so this module
# loads only what the run in hand uses.

__all__ = ["app", "main", "entry"]

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
    from advisor.render import configure_consoles

    configure_consoles()  # the width follows COLUMNS for every run, also when piped


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


INTERRUPTED = "Interrupted; finished work was kept."
"""What Ctrl-C prints (exit 130): stores and caches commit each finished unit, so a rerun resumes."""

_LIBRARY_LOGGERS = ("engine", "benchmarks")


class _WarningHandler(logging.Handler):
    """Show the library's warnings (a healed cache, a skipped folder...) as ``Warning:`` lines on stderr.

    Each distinct message is shown once per command (a sweep builds its backbone once per trial).
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        from advisor.render import warn

        try:
            message = record.getMessage()
            if message in self._seen:
                return
            self._seen.add(message)
            warn(message)
        except Exception:  # noqa: BLE001 - a warning must never end the run
            self.handleError(record)


def _interrupted_if_130(code: int) -> int:
    """typer >= 0.22 turns Ctrl-C into ``Exit(130)`` (older click into ``Abort``): say what was kept either way."""
    if code == 130:
        from advisor.render import err_console

        err_console.print(INTERRUPTED, markup=False)
    return code


def _help_style_for(stream: object) -> None:
    """Plain click help when ``stream`` is not a terminal (and ``FORCE_COLOR`` is unset), rich panels on one.

    rich's help panels pad lines with spaces and crop long defaults to the panel's column ("vit_base_patch16_224.ori…")
    when piped at 80 columns; click's plain formatter prints every default whole and nothing after a line's last word.
    The markup mode is read when typer builds the click command, i.e. at every ``app(...)`` call.
    """
    isatty = getattr(stream, "isatty", None)
    forced = os.environ.get("FORCE_COLOR", "") not in ("", "0")  # as the consoles read it (configure_consoles)
    mode: Literal["rich"] | None = "rich" if forced or (callable(isatty) and isatty()) else None
    pending = [app]
    while pending:
        t = pending.pop()
        t.rich_markup_mode = mode
        pending.extend(group.typer_instance for group in t.registered_groups if group.typer_instance is not None)


STDOUT_CLOSED = ("standard output is closed, so the result could not be written; run the command without '>&-' "
                 "(redirect to a file, or to /dev/null to discard it)")


def _stdout_closed() -> bool:
    """True when stdout cannot be written: Python started with it closed, or its descriptor is gone.

    Checked before anything runs: with descriptor 1 free, the next file opened (a store, a cache) would
    get it, and whatever the command printed would be written into that file instead.
    """
    if sys.stdout is None:
        return True
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # a capture object (tests) or an embedding shell: no descriptor
        return getattr(sys.stdout, "closed", False) is True
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def _flush_stdout() -> bool:
    """Flush stdout; False when what was printed could not be written (closed pipe, closed descriptor)."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        return False
    return True


def _is_stdout_failure(exc: BaseException) -> bool:
    """A write to stdout failed under the command (the reader of a pipe went away, the descriptor was closed)."""
    if isinstance(exc, BrokenPipeError):
        return True
    if isinstance(exc, ValueError) and "closed file" in str(exc):
        return sys.stdout is None or getattr(sys.stdout, "closed", False) is True
    if isinstance(exc, OSError) and exc.errno == errno.EBADF and exc.filename is None:
        return not _flush_stdout()
    return False


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("VPT_ADVISOR_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (also used by the tests)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    from rich.markup import escape

    from advisor.render import display_text, err_console

    if _stdout_closed():
        err_console.print(f"[red]Error:[/red] {STDOUT_CLOSED}", markup=True, soft_wrap=True)
        return 1
    exit_types, abort_types, usage_types = _exception_types()
    handler = _WarningHandler()
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    _help_style_for(sys.stdout)
    try:
        result = app(args=args, prog_name="vpt-advisor", standalone_mode=False)
        if not _flush_stdout():
            raise BrokenPipeError(STDOUT_CLOSED)
        return _interrupted_if_130(int(result) if isinstance(result, int) else 0)
    except exit_types as exc:
        return _interrupted_if_130(int(getattr(exc, "exit_code", 0)))
    except abort_types:  # click turns Ctrl-C into Abort; every store commits per finished unit
        err_console.print(INTERRUPTED, markup=False)
        return 130
    except usage_types as exc:  # usage errors: the parser's own message, exit 2
        show = getattr(exc, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:  # pragma: no cover
            err_console.print(f"Error: {escape(str(exc))}")
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED, markup=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - the single place where errors become messages
        message = STDOUT_CLOSED if _is_stdout_failure(exc) else format_error(exc)
        if debug:
            traceback.print_exc()
        if message is None:
            err_console.print(
                f"[red]Error:[/red] internal error ({type(exc).__name__}: {escape(display_text(str(exc)))}); "
                "re-run with --debug and report it", markup=True, soft_wrap=True
            )
        else:
            # one line, never wrapped or cropped by rich (soft_wrap): paths and URLs in it copy whole
            err_console.print(f"[red]Error:[/red] {escape(display_text(message))}", markup=True, soft_wrap=True)
        return 1
    finally:
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).removeHandler(handler)


def entry() -> None:
    """The console script (``vpt-advisor``, ``python -m advisor.cli``): :func:`main`, then exit with its code.

    Before exiting, every live object is moved out of the garbage collector's reach (``gc.freeze``): the run is
    over, and the interpreter's final collections over torch's module graph cost about 0.8 s on this project's
    CPU after the answer is printed (``benchmarks.perf.fid_speed`` shows the cold wall). Finalizers, atexit
    handlers and file closes all still run."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
