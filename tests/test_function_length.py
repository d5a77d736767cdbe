"""No function outside plotting is longer than 60 lines (our rule, stated in the README's Development section).

60 lines is what fits on one screen with its signature, so a reader sees a whole function at once. Plotting
functions (advisor/report/figures*.py) are exempt: a figure is one long list of drawing calls.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60
"""Functions of at most 60 lines, decorators and signature included (see the module docstring)."""
PACKAGES = ("advisor", "engine", "benchmarks")


def _is_plotting(rel: str) -> bool:
    return rel.startswith("advisor/report/figures")


def function_lengths(source: str, rel: str) -> dict[str, int]:
    """``"rel::name"`` -> lines (decorators to the last line) of every function in ``source``."""
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            key = f"{rel}::{node.name}"
            out[key] = max(out.get(key, 0), node.end_lineno - start + 1)
    return out


def test_no_function_is_longer_than_the_limit() -> None:
    too_long: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            lengths = function_lengths(path.read_text(encoding="utf-8"), rel)
            too_long.update({k: n for k, n in lengths.items() if n > MAX_LINES and not _is_plotting(rel)})
    assert not too_long, f"functions over {MAX_LINES} lines (split them): {too_long}"


def test_the_measure_counts_decorators_and_signature() -> None:
    source = "@dec\n@dec2\ndef f(\n    a,\n):\n    return a\n"
    assert function_lengths(source, "m.py") == {"m.py::f": 6}
