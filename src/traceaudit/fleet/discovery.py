"""Which files a fleet run analyses: files, folders (recursively) and glob patterns.

* A **file** named on the command line is always analysed; if it is not a trace, that is
  recorded as its failure.
* A **folder** is walked recursively (sorted, symbolic links to folders not followed,
  folders whose name starts with ``.`` skipped, and the output dataset never entered);
  each file in it is analysed when a reader recognises its content (the same sniffing as
  :func:`traceaudit.formats.detection.is_trace`, ``.gz`` and ``.zip`` unwrapped). The
  sniffing happens in the worker, beside the reading, so discovery only lists files.
* A **glob** (``*``, ``?``, ``[``; ``**`` crosses folders) stands for the files and
  folders it matches, which are then taken like folder contents (sniffed).

Nothing here reads a file's content, but for the headers of ``.PML`` files: the files of a
capture Process Monitor rolled over (``Log.PML``, ``Log-1.PML``…) are one trace, joined
here as :func:`traceaudit.analyze` joins them (:mod:`traceaudit.formats.pml.rollover`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from traceaudit.errors import TraceFormatError

__all__ = ["Candidate", "discover"]

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Candidate:
    """A file to analyse: its absolute path, whether to sniff it first, size and mtime.

    ``parts`` lists every file of a rolled-over capture, in part order (``path`` is the
    first; ``size`` their total, ``mtime_ns`` the latest); empty for a single file.
    """

    path: str
    sniff: bool
    size: int
    mtime_ns: int
    parts: tuple[str, ...] = ()


def _is_glob(text: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in text)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    return path == folder or folder in path.parents


def _walk(folder: Path, exclude: Path | None) -> Iterable[Path]:
    for top, dirs, files in os.walk(folder):
        here = Path(top)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not _inside(here / d, exclude)
        )
        for name in sorted(files):
            yield here / name


def discover(
    paths: Sequence[str | os.PathLike[str]], *, exclude: str | os.PathLike[str] | None = None
) -> list[Candidate]:
    """The files under ``paths`` (see the module docstring), each once, sorted by path.

    ``exclude`` is a folder never entered (the output dataset). Raises
    :class:`~traceaudit.errors.TraceFormatError` for a path that does not exist or a glob
    that matches nothing, before anything is analysed.
    """
    skip = Path(exclude).resolve() if exclude is not None else None
    found: dict[str, Candidate] = {}

    def add(path: Path, sniff: bool) -> None:
        resolved = path.resolve()
        if _inside(resolved, skip) or str(resolved) in found:
            return
        try:
            info = resolved.stat()
        except OSError:
            info = None
        found[str(resolved)] = Candidate(
            path=str(resolved),
            sniff=sniff,
            size=info.st_size if info else -1,
            mtime_ns=info.st_mtime_ns if info else -1,
        )

    def take(path: Path, *, named: bool) -> None:
        if path.is_dir():
            for file in _walk(path.resolve(), skip):
                if file.is_file():
                    add(file, sniff=True)
        elif path.is_file() or named:
            add(path, sniff=not named)

    for item in paths:
        text = os.fspath(item)
        path = Path(text)
        if path.exists():
            take(path, named=True)
        elif _is_glob(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise TraceFormatError(f"{text}: matches no file. Check the pattern.")
            for match in matches:
                take(Path(match), named=False)
        else:
            raise TraceFormatError(f"{text}: no such file or folder. Check the path.")
    return _join_rolled_over(sorted(found.values(), key=lambda c: c.path))


def _join_rolled_over(candidates: list[Candidate]) -> list[Candidate]:
    """One candidate for the files of each rolled-over PML capture, at its first file."""
    from traceaudit.formats.pml.rollover import group_parts, part_name

    named = [c for c in candidates if part_name(c.path) is not None]
    if len(named) < 2:
        return candidates
    by_path = {c.path: c for c in named}
    groups, _ = group_parts([c.path for c in named])
    joined: dict[str, Candidate] = {}
    for group in groups:
        if not group.rolled_over:
            continue
        members = [by_path[str(p)] for p in group.paths]
        joined.update({m.path: m for m in members[1:]})
        joined[members[0].path] = Candidate(
            path=members[0].path,
            sniff=all(m.sniff for m in members),
            size=sum(m.size for m in members),
            mtime_ns=max(m.mtime_ns for m in members),
            parts=tuple(m.path for m in members),
        )
    out = []
    for candidate in candidates:
        replacement = joined.get(candidate.path)
        if replacement is None:
            out.append(candidate)
        elif replacement.parts and replacement.path == candidate.path:
            out.append(replacement)
    return out
