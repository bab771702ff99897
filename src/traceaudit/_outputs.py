"""Checks on output paths, made before any work: never write over an input.

Every file the CLI writes (``--html``, ``--plots`` figures, ``--map``, ``-o``) is checked
against every input trace, and its folder must exist, before the trace is read: a mistake
is reported at once, not after a long analysis, and an input is never replaced by a
report. ``--plots DIR`` writes ``blockers.*``, ``windows.*`` and ``timeline-N-*.*``; an
input in DIR with such a name is refused too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from traceaudit.errors import UsageError

__all__ = ["same_file", "check_output_file", "check_plots_dir", "FIGURE_NAME"]

FIGURE_NAME = re.compile(r"^(blockers|windows|timeline-\d+-[^\\/]*)\.(png|svg|pdf)$", re.IGNORECASE)
"""The names :func:`traceaudit.report.plot.save_all` gives its files."""


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (the same inode when both exist)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _real_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    return [Path(p) for p in inputs if str(p) != "-"]


def check_output_file(
    target: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], what: str
) -> Path:
    """Refuse an output file that is an input, a folder, or in a folder that does not exist."""
    path = Path(target)
    for source in _real_inputs(inputs):
        if same_file(path, source):
            raise UsageError(
                f"{path}: this is an input trace; refusing to write the {what} over it. Give "
                "another file name."
            )
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; give a file name for the {what}.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{parent}: no such folder for the {what}. Create it first.")
    return path


def check_plots_dir(
    directory: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]
) -> Path:
    """Refuse a plots folder that is a file, or that holds an input under a figure's name."""
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; give a folder for the plots.")
    # The folder is created with its parents: the nearest one that exists must be a folder.
    ancestor = next((p for p in Path(os.path.abspath(out)).parents if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise UsageError(
            f"{ancestor}: is a file, so the plots folder {out} cannot be created in it."
        )
    for source in _real_inputs(inputs):
        if FIGURE_NAME.match(source.name) and same_file(source.parent, out):
            raise UsageError(
                f"{source}: an input trace named like a figure, in the plots folder: writing "
                "the figures would replace it. Give another folder for --plots."
            )
    return out
