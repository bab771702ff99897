"""Shared fixtures: the real trace corpus beside the repository (``../shared/corpus``)."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = Path(__file__).parent.parent.parent / "shared" / "corpus"


@pytest.fixture
def corpus() -> Path:
    """The corpus folder; tests that need it are skipped when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"trace corpus not found at {CORPUS}")
    return CORPUS
