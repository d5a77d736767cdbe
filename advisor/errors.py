"""Map every expected exception to a one-line message (the hf CLI ``_errors.py`` pattern).

``format_error`` is used by ``advisor.cli.main``; anything not listed here is an internal error and
is reported with a hint to re-run with ``--debug``.
"""

from __future__ import annotations

from collections.abc import Callable

import pydantic

from engine.errors import EngineError

__all__ = ["ERROR_MESSAGES", "format_error"]


def _validation(exc: Exception) -> str:
    assert isinstance(exc, pydantic.ValidationError)
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "input"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid options: " + "; ".join(parts)


def _os_error(exc: Exception) -> str:
    assert isinstance(exc, OSError)
    name = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    return f"{name}: {what}" if name else what


ERROR_MESSAGES: dict[type[Exception], Callable[[Exception], str]] = {
    EngineError: str,
    pydantic.ValidationError: _validation,
    FileNotFoundError: lambda e: f"{_os_error(e)} (check the path)",
    PermissionError: lambda e: f"{_os_error(e)} (check the file permissions)",
    IsADirectoryError: _os_error,
    NotADirectoryError: _os_error,
    OSError: _os_error,
    MemoryError: lambda e: "out of memory; use a smaller --batch-size or --max-images",
}


def format_error(exc: BaseException) -> str | None:
    """Return the one-line message for a known error type, or ``None`` for an internal error."""
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: never a user's mistake to explain
        return None
    for cls in type(exc).__mro__:
        fmt = ERROR_MESSAGES.get(cls)
        if fmt is not None:
            msg = fmt(exc)
            return " ".join(msg.split()) or type(exc).__name__
    return None
