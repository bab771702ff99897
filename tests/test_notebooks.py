"""The notebooks in notebooks/ run from top to bottom, so they never rot.

They are committed without outputs (checked here too) and executed with nbclient in a
fresh kernel, from the notebooks folder, as a reader would run them.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from locations import ROOT

pytestmark = pytest.mark.slow  # each notebook starts a kernel

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_cleanly(path):
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    errors = [
        o for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
