"""The architecture rules of the README, checked.

- engine is the library: it imports neither advisor nor benchmarks and never talks to the terminal;
- benchmarks -> engine only (never advisor), except benchmarks/paper_agreement.py and benchmarks/held_out.py,
  the benchmarks of the advisor itself, which nothing imports;
- advisor -> engine; advisor reaches benchmarks only from its command modules (advisor/commands/),
  the CLI shell that dispatches ``reproduce-vtab`` and ``calibrate`` to benchmarks' use cases;
- the pure layers stay free of torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _full_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _py_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _py_files("engine"), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_is_a_library(path: Path) -> None:
    imported = _imports(path)
    assert not imported & {"advisor", "benchmarks"}, f"{path} imports upward: {imported & {'advisor', 'benchmarks'}}"
    assert not imported & {"typer", "rich", "click"}, f"{path} uses CLI/terminal packages"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prints = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
    assert not prints, f"{path} calls print() at lines {prints}; log or use on_progress"


# The one benchmark *of the advisor*: it asks advisor.decide every question the paper answers (issue 8).
# It is a leaf: nothing imports it, so the advisor -> engine <- benchmarks layering is otherwise intact.
_ADVISOR_BENCHMARKS = {ROOT / "benchmarks" / "paper_agreement.py", ROOT / "benchmarks" / "held_out.py"}


@pytest.mark.parametrize("path", _py_files("benchmarks"), ids=lambda p: str(p.relative_to(ROOT)))
def test_benchmarks_do_not_import_advisor(path: Path) -> None:
    if path in _ADVISOR_BENCHMARKS:
        return
    assert "advisor" not in _imports(path)


def test_the_advisor_benchmark_is_a_leaf() -> None:
    users = [p for pkg in ("advisor", "engine", "benchmarks") for p in _py_files(pkg)
             if "paper_agreement" in p.read_text(encoding="utf-8") and p not in _ADVISOR_BENCHMARKS]
    assert users == []
    importers = [p for pkg in ("advisor", "engine", "benchmarks") for p in _py_files(pkg)
                 if "benchmarks.held_out" in _full_imports(p)]
    assert importers == []


@pytest.mark.parametrize("path", _py_files("advisor"), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_cli_reaches_benchmarks(path: Path) -> None:
    if (ROOT / "advisor" / "commands") in path.parents:
        return
    assert "benchmarks" not in _imports(path), f"{path}: only advisor/commands/ may import benchmarks"


@pytest.mark.parametrize("path", _py_files("advisor/usecases") + [ROOT / "benchmarks/vtab/reproduce.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_use_cases_do_not_talk_to_the_terminal(path: Path) -> None:
    """Use cases report through callbacks; only the commands parse options and render."""
    imported = _imports(path)
    assert not imported & {"typer", "rich", "click"}, f"{path} uses CLI/terminal packages"
    assert not any(name.startswith("advisor.commands") or name.startswith("advisor.render")
                   for name in _full_imports(path)), f"{path} imports the CLI or its rendering"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prints = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
    assert not prints, f"{path} calls print() at lines {prints}"


def test_the_rule_has_a_user() -> None:
    """The CLI exception exists because reproduce-vtab lives in benchmarks; if that goes, tighten the rule."""
    users = [p for p in _py_files("advisor/commands") if "benchmarks" in _imports(p)]
    assert [p.name for p in users] == ["vtab.py"]


def test_pure_modules_do_not_import_torch() -> None:
    code = (
        "import sys, engine, engine.errors, engine.paths, engine.progress, engine.io, advisor.errors\n"
        "import engine.train.methods, engine.config.train, advisor.cli  # the CLI starts without torch\n"
        "bad = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""
