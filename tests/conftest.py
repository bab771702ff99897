"""Shared test setup: helpers on the import path, the corpus fixture, the ``slow`` marker.

Tests are laid out like the package (``tests/formats/``, ``tests/analysis/`` …); the helpers
they share (scenario builders, the ETL writer, the fuzz worker, locations) live in
``tests/support/``. Tests that read the real-capture corpus, run notebook kernels or
simulate a million events are marked ``slow`` (``pytest -m "not slow"`` for a quick run;
the default run and CI run everything but the ``long`` fuzzing).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

# The readers' numba kernels (traceaudit._jit) index arrays unchecked when in use. Under
# the tests every index is checked, so a kernel that would read past a buffer on hostile
# input raises IndexError, which the fuzz and error tests report as a crash, instead of
# reading memory. Their own cache folder keeps checked and unchecked machine code apart.
# Set before numba is imported; subprocesses (the fuzz worker) inherit both.
os.environ.setdefault("NUMBA_BOUNDSCHECK", "1")
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "numba")
)

from locations import CORPUS  # noqa: E402  (support/ is on the path from here on)


@pytest.fixture
def corpus() -> Path:
    """The corpus folder; tests that need it are skipped when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"trace corpus not found at {CORPUS}")
    return CORPUS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reads the corpus is slow."""
    for item in items:
        if "corpus" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
