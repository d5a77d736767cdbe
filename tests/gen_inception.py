"""pytest fixtures for random FID-Inception weights (the generator is benchmarks.perf.random_inception).

Registered for every test by ``tests/conftest.py`` (``pytest_plugins``): ask for ``fid_weights``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.perf.random_inception import FILENAME, install_inception_weights, write_random_inception

__all__ = ["random_inception_file", "fid_weights"]


@pytest.fixture(scope="session")
def random_inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random FID-Inception weights generated once per test session (about 5 s, 96 MB)."""
    return write_random_inception(tmp_path_factory.mktemp("inception") / FILENAME)


@pytest.fixture
def fid_weights(random_inception_file: Path) -> Path:
    """The session's random weights placed where pytorch-fid and vpt-advisor look ($TORCH_HOME of this test)."""
    return install_inception_weights(random_inception_file)
