"""Open the HTML reports in headless Chromium: the page renders (a screenshot that is not blank and
that changes when the figures are removed) and every embedded figure decodes in the browser.

Chromium is Debian's ``chromium`` package. The tests never install anything: they run when a
``chromium`` binary is on the PATH (CI's ``.ci/run`` installs it with apt before the tests) and
otherwise skip, saying how to get it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from advisor.report import write_pilot_report, write_recommend_report, write_vtab_report
from tests.advisor import report_cases as cases

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WINDOW = (1200, 2000)
_MARKER_SCRIPT = (
    "<script>window.addEventListener('load', () => {"
    "const d = document.createElement('pre'); d.id = 'img-check';"
    "d.textContent = JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]));"
    "document.body.appendChild(d); });</script>"
)


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary; without one the tests skip with the way to install it."""
    path = _find_chromium()
    if path is None:
        pytest.skip("headless Chromium not found (no chromium on the PATH); install it, e.g. "
                    "'sudo apt-get install -y chromium', to run the browser tests")
    return path


def _run(chromium: str, tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(home)})
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


def _screenshot(chromium: str, tmp_path: Path, page: Path) -> np.ndarray:
    shot = tmp_path / f"{page.stem}.png"
    _run(chromium, tmp_path, page, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}")
    return cases.decode_png(shot.read_bytes())


REPORTS: dict[str, Callable[[Path], Path]] = {
    "recommend": lambda d: write_recommend_report(cases.recommend_report(), d / "recommend.html"),
    "pilot": lambda d: write_pilot_report(cases.pilot_inputs(), d / "pilot.html"),
    "vtab": lambda d: write_vtab_report(cases.vtab_inputs(), d / "vtab.html"),
}


def test_report_page_and_figures_render_in_a_screenshot(chromium: str, tmp_path: Path) -> None:
    page = write_recommend_report(cases.recommend_report(), tmp_path / "report.html")
    shot = _screenshot(chromium, tmp_path, page)
    assert shot.shape == (WINDOW[1], WINDOW[0], 3)
    assert cases.is_not_blank(shot)

    # The same page with its figures removed must look clearly different where the figures were.
    text = page.read_text(encoding="utf-8")
    stripped = tmp_path / "no_figures.html"
    stripped.write_text(re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', text), encoding="utf-8")
    bare = _screenshot(chromium, tmp_path, stripped)
    changed_rows = np.any(np.abs(shot.astype(int) - bare.astype(int)).sum(axis=-1) > 60, axis=1)
    assert changed_rows.sum() > 400, "the embedded figures should fill hundreds of screen rows"


@pytest.mark.parametrize("kind", sorted(REPORTS))
def test_every_embedded_figure_decodes_in_the_browser(chromium: str, tmp_path: Path, kind: str) -> None:
    page = REPORTS[kind](tmp_path)
    text = page.read_text(encoding="utf-8")
    sizes = []
    for payload in re.findall(r'src="data:image/png;base64,([^"]+)"', text):
        height, width, _ = cases.decode_png(base64.b64decode(payload)).shape
        sizes.append([True, width, height])
    assert sizes, "the report should embed figures"
    probe = tmp_path / f"{kind}_probe.html"
    probe.write_text(text.replace("</body>", _MARKER_SCRIPT + "</body>"), encoding="utf-8")
    dom = _run(chromium, tmp_path, probe, "--dump-dom", "--virtual-time-budget=10000").stdout
    found = re.search(r'<pre id="img-check">([^<]*)</pre>', dom)
    assert found, "the page's load event never fired"
    assert json.loads(found.group(1)) == sizes
