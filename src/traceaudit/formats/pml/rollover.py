"""The files of one Process Monitor capture that rolled over: ``Log.PML``, ``Log-1.PML``…

Process Monitor writes a long capture to a backing file, and when that file reaches its
size limit it goes on in a new one beside it, numbered: ``Log.PML``, ``Log-1.PML``,
``Log-2.PML`` (Procmon 4.1 and later delete the oldest ones past the limit, so a capture
may also start at ``Log-3.PML``). Each part is a whole PML of its own: header, events,
index, process and strings tables. A failure in the last seconds of ``Log.PML`` may be
held by a handle opened in it and closed in ``Log-1.PML``: read apart, the first part
says "still open at the end of the capture" and the second "closed without an open", so
the parts must be read as one trace, rows numbered on across the files.

Parts are recognised from their names *and* their headers, never from names alone:

* the same folder, the same stem, and a number after ``-`` (no number: part 0), each
  plain or compressed on its own (``Log-1.PML.gz``);
* the same PML version, pointer size, computer name, Windows root folder and Windows
  version in the header (fields Procmon copies into every file of one capture);
* times in order: where both files are plain and have an intact index, no event of a part
  is earlier than the last event of the part before it (a compressed part is not
  decompressed twice to check this; its header is checked).

Files that look like parts but fail a check stay separate traces, and :func:`group_parts`
says why in a note.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from traceaudit.errors import UsageError
from traceaudit.formats.batches import TraceBatches
from traceaudit.formats.input import open_input
from traceaudit.formats.pml.events import index_offsets
from traceaudit.formats.pml.exits import joined_exits
from traceaudit.formats.pml.layout import HEADER_DTYPE, HEADER_SIZE
from traceaudit.formats.pml.tables import PmlHeader

__all__ = [
    "CaptureParts",
    "chain_batches",
    "group_parts",
    "one_capture",
    "part_name",
    "sibling_parts",
]

PathLike = str | os.PathLike[str]

# ``.gz``: parts compressed one by one to attach them (``Log-1.PML.gz``) are parts too.
_PART = re.compile(r"^(?P<stem>.+?)(?:-(?P<number>\d{1,6}))?\.pml(?:\.gz)?$", re.IGNORECASE)
_TIME_AT = 28  # an event's FILETIME, from the start of its header


@dataclass(frozen=True)
class _Part:
    """One file that may be part of a rolled-over capture."""

    path: Path
    stem: str
    number: int
    identity: tuple[object, ...]
    first_time: int | None
    last_time: int | None


@dataclass(frozen=True)
class CaptureParts:
    """The files of one trace, in order (one file for most traces), and notes about them."""

    paths: tuple[Path, ...]
    numbers: tuple[int, ...] = ()
    positions: tuple[int, ...] = ()
    """Where the files were in the list given to :func:`group_parts`."""
    kept_apart: tuple[str, ...] = ()
    """Why files named like further parts of this capture were not read with it."""

    @property
    def rolled_over(self) -> bool:
        return len(self.paths) > 1

    def note(self) -> str:
        """What the report says about reading the files as one trace."""
        names = ", ".join(p.name for p in self.paths)
        note = (
            f"{self.paths[0].name}: read {names} as one capture ({len(self.paths)} files "
            "Process Monitor rolled over into; same computer and system in their headers, "
            "times in order), rows numbered on across the files."
        )
        missing = self.missing()
        if missing:
            note += (
                f" Part{'s' if len(missing) > 1 else ''} "
                f"{', '.join(str(n) for n in missing)} of it {'are' if len(missing) > 1 else 'is'} "
                "not among the files: events are missing between the parts, so a handle opened "
                "before the gap and closed after it looks open to the end, or closed without "
                "an open."
            )
        return note

    def missing(self) -> list[int]:
        """Part numbers between the first and the last that were not given."""
        if len(self.numbers) < 2:
            return []
        have = set(self.numbers)
        return [n for n in range(self.numbers[0], self.numbers[-1]) if n not in have]


def part_name(path: PathLike) -> tuple[str, int] | None:
    """``("Log", 2)`` for ``Log-2.PML`` (or ``Log-2.PML.gz``), ``("Log", 0)`` for
    ``Log.PML``; None otherwise."""
    match = _PART.match(Path(path).name)
    if match is None:
        return None
    return match["stem"].lower(), int(match["number"] or 0)


def _read_part(path: Path) -> _Part | None:
    """The header fields and event-time span of a plain PML file; None when it is not one."""
    named = part_name(path)
    if named is None or not path.is_file():
        return None
    try:
        trace_input = open_input(path)
    except Exception:  # unreadable files are reported by the reader itself
        return None
    head = trace_input.head
    if len(head) < HEADER_SIZE or not head.startswith(b"PML_"):
        return None
    raw = np.frombuffer(head[:HEADER_SIZE], dtype=HEADER_DTYPE)[0]
    identity = (
        int(raw["version"]),
        int(raw["is_64bit"]),
        bytes(raw["computer_name"]),
        bytes(raw["system_root"]),
        int(raw["windows_major"]),
        int(raw["windows_minor"]),
        int(raw["windows_build"]),
    )
    first, last = _time_span(trace_input.path)
    return _Part(path, named[0], named[1], identity, first, last)


def _time_span(path: Path | None) -> tuple[int | None, int | None]:
    """The FILETIMEs of the first and last indexed events (None: no intact index, or the
    file is compressed and reading it whole to find out is not worth it)."""
    if path is None:
        return None, None
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError):
        return None, None
    try:
        header = PmlHeader.parse(path.name, data)
        if header.index_problem() is not None or header.number_of_events == 0:
            return None, None
        count = header.number_of_events
        ends = (
            index_offsets(header, data, 0, 1)[0],
            index_offsets(header, data, count - 1, count)[0],
        )
        times = []
        for offset in ends:
            at = int(offset) + _TIME_AT
            if at + 8 > header.size:
                return None, None
            times.append(int(np.frombuffer(data, dtype="<u8", count=1, offset=at)[0]))
        return times[0], times[1]
    except Exception:  # a damaged header: the reader says what is wrong
        return None, None
    finally:
        del data


def _why_apart(before: _Part, after: _Part) -> str | None:
    """Why two files named as consecutive parts are not one capture (None: they are)."""
    if before.identity != after.identity:
        return "their headers name different computers, systems or PML versions"
    starts, ended = after.first_time, before.last_time
    if starts is not None and ended is not None and starts < ended:
        return f"{after.path.name} starts before {before.path.name} ends"
    return None


def group_parts(paths: Sequence[PathLike]) -> tuple[list[CaptureParts], list[str]]:
    """Group the files of rolled-over captures among ``paths``; keep every other path alone.

    Returns the traces in the order of their first file on the command line, each with its
    files in part order, and notes for files that were named like parts but kept apart.
    """
    given = [Path(p) for p in paths]
    parts: dict[int, _Part] = {}
    for position, path in enumerate(given):
        if str(path) != "-":
            part = _read_part(path)
            if part is not None:
                parts[position] = part
    families: dict[tuple[str, str], list[int]] = {}
    for position, part in parts.items():
        key = (os.path.normcase(str(part.path.resolve().parent)), part.stem)
        families.setdefault(key, []).append(position)
    joined: dict[int, list[int]] = {}  # first position -> positions of its group
    member_of: dict[int, int] = {}
    notes: list[str] = []
    apart: dict[int, list[str]] = {}  # position -> notes on files kept apart from it
    for positions in families.values():
        if len(positions) < 2:
            continue
        ordered = sorted(positions, key=lambda k: parts[k].number)
        run = [ordered[0]]
        for position in ordered[1:]:
            previous = parts[run[-1]]
            why = _why_apart(previous, parts[position])
            if previous.number == parts[position].number:
                why = "they have the same part number"
            if why is None:
                run.append(position)
                continue
            if not previous.path.samefile(parts[position].path):  # a file given twice
                note = (
                    f"{previous.path.name} and {parts[position].path.name} are named like parts "
                    f"of one rolled-over capture, but {why}: analysed as separate traces."
                )
                notes.append(note)
                apart.setdefault(run[-1], []).append(note)
            _close_run(run, joined, member_of)
            run = [position]
        _close_run(run, joined, member_of)
    out: list[CaptureParts] = []
    for position in range(len(given)):
        group = joined.get(position, [] if position in member_of else [position])
        if not group:
            continue  # read with the first part of its capture
        out.append(
            CaptureParts(
                tuple(given[k] for k in group),
                tuple(parts[k].number for k in group if k in parts),
                tuple(group),
                tuple(note for k in group for note in apart.get(k, ())),
            )
        )
    return out, notes


def one_capture(paths: Sequence[PathLike]) -> list[Path]:
    """The files of the one trace ``paths`` must be: a single file, or the parts of one
    rolled-over capture in part order. Anything else is a :class:`UsageError` saying why
    (for commands that read one trace: ``timeline``, ``convert``)."""
    groups, notes = group_parts(paths)
    if len(groups) == 1:
        return list(groups[0].paths)
    names = ", ".join(p.name for g in groups for p in g.paths)
    why = f" ({notes[0]})" if notes else ""
    raise UsageError(
        f"{names}: these are not the files of one rolled-over Process Monitor capture{why}. "
        "Give one trace, or the files Log.PML, Log-1.PML… of one capture."
    )


def _close_run(run: list[int], joined: dict[int, list[int]], member_of: dict[int, int]) -> None:
    if len(run) < 2:
        return
    first = min(run)
    joined[first] = run
    for position in run:
        member_of[position] = first


def sibling_parts(paths: Sequence[PathLike]) -> list[str]:
    """Notes for rolled-over parts that lie beside the given files but were not given.

    ``analyze Log.PML`` alone reads one file; when ``Log-1.PML`` of the same capture is in
    the same folder, the note says so and how to read them together.
    """
    given_paths = [Path(p) for p in paths if str(p) != "-"]
    given = {os.path.normcase(str(p.resolve())) for p in given_paths}
    families: dict[str, list[_Part]] = {}
    for path in given_paths:
        part = _read_part(path)
        if part is not None:
            family = os.path.normcase(str(path.resolve().parent)) + "\0" + part.stem
            families.setdefault(family, []).append(part)
    notes = []
    for members in families.values():
        first = members[0]
        found = []
        for other in sorted(first.path.parent.iterdir()):
            named = part_name(other)
            if named is None or named[0] != first.stem:
                continue
            if os.path.normcase(str(other.resolve())) in given:
                continue
            candidate = _read_part(other)
            if candidate is not None and candidate.identity == first.identity:
                found.append(candidate)
        if not found:
            continue
        found.sort(key=lambda p: p.number)
        names = ", ".join(p.path.name for p in found)
        every = sorted([*members, *found], key=lambda p: p.number)
        command = " ".join(_quoted(p.path.name) for p in every)
        notes.append(
            f"{first.path.name}: {names} beside it "
            f"{'is a part' if len(found) == 1 else 'are parts'} of the same capture "
            f"(Process Monitor rolled it over); give them all to read the whole capture "
            f"as one trace: {command}."
        )
    return notes


def _quoted(name: str) -> str:
    return f'"{name}"' if " " in name else name


def chain_batches(paths: Sequence[Path], open_part: Callable[[Path], TraceBatches]) -> TraceBatches:
    """The files of one rolled-over capture read as one stream of batches.

    ``open_part`` opens one file for reading in batches (``open_batches`` with the
    caller's columns and filters). Files are opened one after the other, each when the
    one before is exhausted; rows number on across them (a file's rows are shifted by the
    rows the files before it numbered), as :func:`~traceaudit.formats.pml.read_pml` does
    with a list of files. Warnings, skipped events and the cut are those of every file,
    in order, complete once the frames are exhausted.
    """
    first = open_part(paths[0])
    out = TraceBatches(
        frames=iter(()),
        format=first.format,
        name=first.name,
        source=first.source,
        clock=first.clock,
    )

    def absorb(part: TraceBatches) -> None:
        out.warnings.extend(part.warnings)
        for reason, count in part.skipped.items():
            out.skipped[reason] = out.skipped.get(reason, 0) + count
        out.skipped_rows[:] = [*out.skipped_rows, *part.skipped_rows][:5]
        out.truncated = out.truncated or part.truncated
        out.time_precision_lost = out.time_precision_lost or part.time_precision_lost
        out.process_exits = joined_exits([out.process_exits, part.process_exits])

    def frames() -> Iterator[pl.DataFrame]:
        shift = 0
        for number, path in enumerate(paths):
            part = first if number == 0 else open_part(path)
            last_row = 0
            for frame in part.frames:
                if "row" not in frame.columns:
                    yield frame
                    continue
                if frame.height:
                    last_row = max(last_row, int(frame["row"].max()))  # type: ignore[arg-type]
                yield frame.with_columns(pl.col("row") + shift) if shift else frame
            absorb(part)
            shift += part.numbered if part.numbered is not None else last_row

    out.frames = frames()
    return out
