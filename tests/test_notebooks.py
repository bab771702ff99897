"""The notebooks in notebooks/ run from top to bottom, so they never rot.

They are committed without outputs (checked here too) and executed with nbclient in a
fresh kernel, from the notebooks folder, as a reader would run them. A cell that draws
(tagged ``figure``; every cell calling ``plot.`` must be) shows its picture exactly once:
one PNG or SVG, and never a bare ``<Figure size …>`` in its place.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from locations import ROOT

pytestmark = pytest.mark.slow  # each notebook starts a kernel

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IMAGES = ("image/png", "image/svg+xml")


def _figure_cells(book: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in book.cells if "figure" in c.get("metadata", {}).get("tags", [])]


def _images(cell: nbformat.NotebookNode) -> list[str]:
    """The image of each output of a cell (one output may carry PNG and SVG: one image)."""
    found = []
    for output in cell.get("outputs", []):
        kinds = [k for k in IMAGES if k in output.get("data", {})]
        if kinds:
            found.append(kinds[0])
    return found


def _bare_figure_texts(cell: nbformat.NotebookNode) -> list[str]:
    """``<Figure size 1100x310 with 1 Axes>`` printed where a picture should be."""
    texts = []
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        text = data.get("text/plain", "") or output.get("text", "")
        if isinstance(text, list):
            text = "".join(text)
        if not any(k in data for k in IMAGES) and "<Figure size" in text:
            texts.append(text)
    return texts


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in book.cells if cell.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_that_draws_is_tagged_figure(path):
    book = nbformat.read(path, as_version=4)
    drawing = [c for c in book.cells if c.cell_type == "code" and "plot." in c.source]
    assert all(c in _figure_cells(book) for c in drawing)


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
    for cell in _figure_cells(book):
        assert len(_images(cell)) == 1, (cell.source, [o.get("data", o) for o in cell.outputs])
    assert not [t for c in book.cells for t in _bare_figure_texts(c)]
