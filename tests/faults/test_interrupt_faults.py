"""The real CLI in child processes: Ctrl-C, kill -9 and two runs at once on one store. Each keeps every
finished trial, and the finished sweep gives the same table as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.benchmarks.vtab_tree import IMG_SIZE, TINY_MODEL, TINY_MODEL_ARGS, make_vtab_tree

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["dtd", "svhn"]
PLANNED = len(TASKS) * 4  # quick protocol, ft only: 2 search grid points + 2 final seeds per task

pytestmark = [pytest.mark.skipif(os.name != "posix", reason="signals and kill -9 need a POSIX system"),
              pytest.mark.slow]


def _argv(root: Path, db: Path) -> list[str]:
    args = [sys.executable, "-m", "advisor.cli", "reproduce-vtab", str(root), "--protocol", "quick", "--tasks",
            ",".join(TASKS), "--methods", "ft", "--random-init", "--model", TINY_MODEL, "--img-size", str(IMG_SIZE),
            "--device", "cpu", "--db", str(db), "--format", "json"]
    for k, v in TINY_MODEL_ARGS.items():
        args += ["--model-arg", f"{k}={v}"]
    return args


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "VPT_ADVISOR_HOME": str(home)}


def _finished(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return dict(con.execute("SELECT hash, metrics FROM trials WHERE status='finished'").fetchall())
    except sqlite3.OperationalError:
        return {}


def _run_until(argv: list[str], env: dict[str, str], db: Path, at_least: int, sig: int) -> tuple[int, str]:
    """Start the CLI, send ``sig`` once ``at_least`` trials are finished; return (exit code, stderr)."""
    child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and child.poll() is None and len(_finished(db)) < at_least:
            time.sleep(0.05)
        if child.poll() is not None:
            pytest.fail(f"the sweep ended before it could be interrupted: {child.stderr.read()[-400:]}")  # type: ignore[union-attr]
        child.send_signal(sig)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    return child.returncode, err


def _rows(text: str) -> list[tuple[str, object]]:
    return [(r["task"], r["ours_ft"]) for r in json.loads(text)["rows"]]


def test_ctrl_c_then_kill_9_then_resume_gives_the_uninterrupted_table(tmp_path: Path) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=TASKS)
    env = _env(tmp_path / "home")
    clean = subprocess.run(_argv(root, tmp_path / "clean.sqlite"), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert clean.returncode == 0, clean.stderr[-800:]

    db = tmp_path / "runs.sqlite"
    code, err = _run_until(_argv(root, db), env, db, 2, signal.SIGINT)
    assert code == 130 and "Interrupted; finished work was kept." in err and "Traceback" not in err
    after_ctrl_c = _finished(db)
    assert len(after_ctrl_c) >= 2

    code, _ = _run_until(_argv(root, db), env, db, len(after_ctrl_c) + 2, signal.SIGKILL)
    assert code == -signal.SIGKILL
    after_kill = _finished(db)
    assert all(after_kill[k] == v for k, v in after_ctrl_c.items())  # nothing finished was lost or redone

    resumed = subprocess.run(_argv(root, db), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-800:]
    final = _finished(db)
    assert len(final) == PLANNED and all(final[k] == v for k, v in after_kill.items())
    assert _rows(resumed.stdout) == _rows(clean.stdout)


def test_two_runs_at_once_on_one_store_both_finish_with_the_same_table(tmp_path: Path) -> None:
    root = make_vtab_tree(tmp_path / "vtab", tasks=TASKS)
    env = _env(tmp_path / "home")
    db = tmp_path / "shared.sqlite"
    children = [subprocess.Popen(_argv(root, db), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    outs = [c.communicate(timeout=400) for c in children]
    for child, (_, err) in zip(children, outs, strict=False):
        assert child.returncode == 0, err[-800:]
        assert "Traceback" not in err and "internal error" not in err
    assert _rows(outs[0][0]) == _rows(outs[1][0])
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), SUM(status='finished') FROM trials").fetchone() == (PLANNED, PLANNED)
