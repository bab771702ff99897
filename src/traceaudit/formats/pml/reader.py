"""Process Monitor's native log format (PML), read natively and in bulk.

::

    >>> from traceaudit.formats.pml.reader import read_pml, read_pml_processes
    >>> trace = read_pml("Logfile.PML")                     # or a list: Log-1.PML, Log-2.PML…
    >>> trace.events                                         # schema.EVENT_SCHEMA, UTC clock
    >>> read_pml_processes("Logfile.PML")                    # the process table

The file is memory-mapped and read table by table with numpy structured dtypes: the event
index, every event header, the process and strings tables, then each column of the
event schema for all events at once (paths and names are decoded in bulk, see
:mod:`.text`). No Python object is made per event; the byte-level passes (event headers,
path spans, strings) run as compiled kernels (:mod:`.kernels`, numba; the numpy path
when it is missing gives the same frames). On the 53,214-event corpus capture this
reader is about 25 times faster than iterating procmon-parser and 10 times faster than
procmon-reader (``benchmarks/bench_pml_read.py``). File pages are given back
as soon as a pass over the events is done, so memory stays under twice the file size.

A capture too big for that is read in batches (:func:`batches`, the format's batch reader
for :func:`~traceaudit.formats.load.open_batches`): the same decoding, a batch of events
at a time, each batch's offsets read from its own slice of the event index, the ``keep``
filter applied to the cheap columns before any path or detail is decoded, the columns
not asked for never made, and the file's pages given back after every batch. Memory then
follows the batch, not the file (``benchmarks/bench_pml_batches.py``: 100M events, 17 GB).

The modules, in reading order:

* :mod:`.layout` and :mod:`.names`: the binary layout (structured dtypes) and
  Procmon's display names, as data; :mod:`.kernels`: the compiled passes;
* :mod:`.tables`: header checks, strings, process, hosts and ports tables;
* :mod:`.events`: event offsets (index, or a walk of a damaged file) and headers;
* :mod:`.columns`: time (UTC FILETIME, 100 ns kept), process name, PID, TID,
  operation and result as Procmon's CSV shows them, duration, event class, path;
* :mod:`.detail`: typed CreateFile, rename/link, disposition, read/write and lock
  fields of the schema;
* :mod:`.render` and :mod:`.render_process`: the Detail text for the
  file-system operations the analysis uses and the common process and network ones
  (other operations have a null Detail).

PML versions 9 (Procmon 3.4 and later) and 7 (Procmon 2.x), 32- and 64-bit captures.
A capture cut short or not closed cleanly is read up to its last intact event, with a
warning counting the events lost (an error in strict mode). A copy cut past its events
(in the event index, the process and strings tables, or the hosts and ports tables that
end the file) keeps every event, with a warning naming what was lost; either way
``Trace.truncated`` is set.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from traceaudit.errors import TraceFormatError
from traceaudit.formats.batches import BATCH_ROWS, CHEAP_COLUMNS, TraceBatches, select_columns
from traceaudit.formats.binary import mapped_content
from traceaudit.formats.input import TraceInput, open_input
from traceaudit.formats.pml.columns import Named, base_columns, operation_names
from traceaudit.formats.pml.detail import decode_groups, groups_for, typed_columns
from traceaudit.formats.pml.events import Damage, EventArrays, Located, locate_events
from traceaudit.formats.pml.exits import joined_exits, process_exits
from traceaudit.formats.pml.layout import OFFSET_ENTRY_DTYPE
from traceaudit.formats.pml.paths import path_spans, start_decoding
from traceaudit.formats.pml.render_process import render_columns
from traceaudit.formats.pml.tables import (
    PmlHeader,
    read_hosts_and_ports,
    read_process_table,
    read_strings_table,
)
from traceaudit.schema import EVENT_SCHEMA, Trace, conform_events

__all__ = ["FORMAT_NAME", "sniff_pml", "read_pml", "read_pml_processes", "read", "batches"]

FORMAT_NAME = "procmon-pml"
CLOCK = "utc"
_MAGIC = b"PML_"


def sniff_pml(head: bytes) -> bool:
    """True when ``head`` (the first bytes of the content) starts a PML file."""
    return head[:4] == _MAGIC


@dataclass
class _Part:
    """One file's events, how many events it numbered, and what its reader noticed."""

    events: pl.DataFrame
    numbered: int
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[str] = field(default_factory=list)
    truncated: bool = False
    process_exits: pl.DataFrame | None = None


@contextmanager
def _mapped(
    trace_input: TraceInput,
) -> Iterator[tuple[np.ndarray, pa.Buffer, Callable[..., None]]]:
    """The content as a uint8 array and an Arrow buffer over the same bytes, and a
    function that gives the pages read so far back to the system (see
    :func:`~traceaudit.formats.binary.mapped_content`). Nothing returned by the readers
    keeps a view of these bytes."""
    with mapped_content(trace_input) as (content, release):
        yield np.frombuffer(content, dtype=np.uint8), pa.py_buffer(content), release


@contextmanager
def _mapped_ahead(
    trace_input: TraceInput,
) -> Iterator[tuple[np.ndarray, pa.Buffer, Callable[..., None], Callable[[int, int], None]]]:
    """:func:`_mapped` without populating, plus a function that asks the system to read
    a range ahead (MADV_WILLNEED: it is read from disk while the batch before is
    decoded)."""
    with mapped_content(trace_input) as (content, release):

        def prefetch(start: int, end: int) -> None:
            if not isinstance(content, mmap.mmap) or not hasattr(mmap, "MADV_WILLNEED"):
                return
            first, last = _page_start(start), min(end, len(content))
            if last > first:
                with suppress(OSError, ValueError):
                    content.madvise(mmap.MADV_WILLNEED, first, last - first)

        yield np.frombuffer(content, dtype=np.uint8), pa.py_buffer(content), release, prefetch


def _processes(
    header: PmlHeader, data: np.ndarray, buf: pa.Buffer, *, strict: bool
) -> tuple[pl.DataFrame | None, list[str]]:
    """The process table, or None (with a warning; an error in strict mode) when the
    end of the file that holds it is missing."""
    problem = header.tables_problem()
    if problem is None:
        return read_process_table(header, data, read_strings_table(header, data, buf)), []
    message = (
        f"{header.name}: {problem}; process names and PIDs are unknown (null) for every event."
    )
    if strict:
        raise TraceFormatError(f"{message} Read without strict mode to keep the events anyway.")
    return None, [message]


def _names(
    header: PmlHeader, data: np.ndarray, *, strict: bool, said: bool
) -> tuple[dict[bytes, str], dict[tuple[int, bool], str], list[str], bool]:
    """The hosts and ports tables, a warning (an error in strict mode) when they are cut
    off and no earlier warning (``said``) already told that the file was cut short, and
    whether they are cut off: they close the file, so that is how a cut past the event
    index and the process and strings tables shows."""
    hosts, ports, problem = read_hosts_and_ports(header, data)
    if problem is None or said:
        return hosts, ports, [], problem is not None
    message = (
        f"{header.name}: {problem}; network paths show IP addresses and port numbers "
        "instead of the host and service names lost."
    )
    if strict:
        raise TraceFormatError(f"{message} Read without strict mode to keep the events anyway.")
    return hosts, ports, [message], True


@dataclass
class _Opened:
    """What is read before the events: the header, where the events are, the tables at
    the end of the file, and what was noticed on the way."""

    header: PmlHeader
    located: Located
    processes: pl.DataFrame | None
    hosts: dict[bytes, str]
    ports: dict[tuple[int, bool], str]
    table_warnings: list[str]
    truncated: bool

    def warnings(self, trace_input: TraceInput, damage: Damage) -> list[str]:
        """Every warning, in the order a reader of the whole file gives them."""
        return [
            *trace_input.warnings,
            *self.located.warnings,
            *damage.warnings(self.header.name),
            *self.table_warnings,
        ]


def _open(
    trace_input: TraceInput, data: np.ndarray, buf: pa.Buffer, *, strict: bool, whole: bool
) -> _Opened:
    """Check the header, find the events (``whole=False``: an intact index is left to be
    read part by part), and read the process, strings, hosts and ports tables."""
    header = PmlHeader.parse(trace_input.name, data)
    located = locate_events(header, data, strict=strict, whole=whole)
    processes, table_warnings = _processes(header, data, buf, strict=strict)
    said = located.truncated or header.tables_cut  # a warning already says "cut short"
    hosts, ports, name_warnings, names_cut = _names(header, data, strict=strict, said=said)
    truncated = located.truncated or names_cut or header.tables_cut
    return _Opened(
        header, located, processes, hosts, ports, [*table_warnings, *name_warnings], truncated
    )


ALL_COLUMNS = frozenset(EVENT_SCHEMA)
_PATH_TEXT = frozenset({"path", "rename_target", "detail"})
"""Columns that need the paths decoded (a relative rename target is joined to its
source's directory; the Detail of a rename shows the target)."""
_CHEAP = tuple(c for c in EVENT_SCHEMA if c in CHEAP_COLUMNS)
_KEPT = "__kept"
_RELEASE_PER_CHUNK = 64 << 20
"""Events spanning this many bytes or more give their pages back per path chunk."""


def _columns(
    opened: _Opened,
    events: EventArrays,
    *,
    wanted: frozenset[str] = ALL_COLUMNS,
    keep: pl.Expr | None = None,
    release: Callable[..., None] | None = None,
) -> pl.DataFrame:
    """The event frame of ``events`` (every schema column; those not ``wanted`` are null
    but ``row``).

    With ``keep``, only the columns it reads are made for every event; everything else
    (the other cheap columns, paths, typed details, the Detail text) only for the events
    it keeps, and each only when ``wanted`` needs it. ``release`` gives pages back as the
    paths are read, and once more after the typed details (a reader of the whole file).
    """
    operations: Named | None = None
    if keep is not None:
        reads = frozenset(keep.meta.root_names()) or frozenset({"row"})
        if "operation" in reads:
            operations = operation_names(events)
        kept = (
            pl.DataFrame(base_columns(events, opened.processes, operations, reads))
            .select(pl.col(name).cast(EVENT_SCHEMA[name]) for name in _CHEAP if name in reads)
            .with_row_index(_KEPT)
            .filter(keep)
        )
        if kept.height < events.count:
            index = kept[_KEPT].to_numpy().astype(np.int64)
            events = events.take(index)
            operations = None if operations is None else operations.take(index)
    if operations is None:
        operations = operation_names(events)
    cheap = (wanted & CHEAP_COLUMNS) | {"row"}
    if not events.count or not (wanted & _PATH_TEXT or groups_for(wanted)):
        columns = base_columns(events, opened.processes, operations, cheap)
    else:
        columns = _decoded_columns(opened, events, operations, wanted, cheap, release)
    return conform_events(pl.DataFrame(columns))


def _decoded_columns(
    opened: _Opened,
    events: EventArrays,
    operations: Named,
    wanted: frozenset[str],
    cheap: frozenset[str],
    release: Callable[..., None] | None,
) -> dict[str, pl.Series]:
    """The ``cheap`` columns plus what needs the details: paths, typed details, Detail.

    The paths' text is decoded on a second core, when that pays, while this thread makes
    the other columns (:func:`~traceaudit.formats.pml.paths.start_decoding`).
    """
    groups_wanted = groups_for(wanted)
    decode = bool(wanted & _PATH_TEXT)
    low, high = events.span
    # A small file's pages are given back once, after the typed details: a release per
    # path chunk costs more than it saves there (madvise is per page, and the typed
    # details fault released pages back in).
    chunked = release if high - low >= _RELEASE_PER_CHUNK else None
    spans = path_spans(events, operations)
    pending = start_decoding(events, spans, chunked) if decode else None
    try:  # the pages must stay mapped until the worker is done with them
        columns = base_columns(events, opened.processes, operations, cheap)
        groups = decode_groups(events, spans, groups_wanted)
        columns.update(typed_columns(groups, events.count, EVENT_SCHEMA))
    except BaseException:
        if pending is not None:
            pending.wait()
        raise
    # By now the worker is done, as a rule (its paths take less than the columns above).
    path = None if pending is None else pending.result()
    if release is not None:  # the Detail reads back only the few process and network events
        release()
    network = None
    if "detail" in wanted or "path" in wanted:
        detail, network = render_columns(
            events,
            operations,
            groups,
            spans.after,
            opened.hosts,
            opened.ports,
            detail="detail" in wanted,
        )
        if detail is not None:
            columns["detail"] = detail
    if path is not None:
        directory = groups.get("directory")
        if directory is not None:  # Procmon shows QueryDirectory's filter in the path
            path = path.scatter(directory.index, directory.columns["path"])
        if network is not None:
            path = path.scatter(*network)
        columns["path"] = path
    return columns


def _read_part(trace_input: TraceInput, *, strict: bool, first_row: int) -> _Part:
    """Read one PML file; ``first_row`` is added to its rows (multi-file captures)."""
    with _mapped(trace_input) as (data, buf, release):
        opened = _open(trace_input, data, buf, strict=strict, whole=True)
        located = opened.located
        damage = Damage()
        events = EventArrays.build(
            opened.header, data, buf, located.offsets, located.numbers, damage, strict=strict
        )
        # Pages are given back as the paths are read; later passes map back only the
        # pages they read (few), so the file is never resident alongside the results.
        frame = _columns(opened, events, release=release)
        del events, data, buf
    if first_row:
        frame = frame.with_columns(pl.col("row") + first_row)
    return _Part(
        frame,
        located.count,
        opened.warnings(trace_input, damage),
        damage.skipped,
        damage.where,
        opened.truncated,
        None if opened.processes is None else process_exits(opened.processes),
    )


def _trace(parts: list[_Part], source: Path | None) -> Trace:
    """Join the parts of a capture into one Trace sorted by (time, row)."""
    events = pl.concat([p.events for p in parts]) if len(parts) > 1 else parts[0].events
    times = events["time"].to_numpy().view(np.int64)
    if not bool(np.all(times[1:] >= times[:-1])):  # Procmon's order is almost always by time
        events = events.sort(["time", "row"])
    skipped: dict[str, int] = {}
    for part in parts:
        for reason, count in part.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
    return Trace(
        events=events,
        format=FORMAT_NAME,
        source=source,
        clock=CLOCK,
        warnings=tuple(w for p in parts for w in p.warnings),
        skipped=skipped,
        skipped_rows=tuple(r for p in parts for r in p.skipped_rows)[:5],
        truncated=any(p.truncated for p in parts),
        # one file's exits are already each process once, in order
        process_exits=(
            parts[0].process_exits
            if len(parts) == 1
            else joined_exits(p.process_exits for p in parts)
        ),
    )


def read_pml(
    path_or_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    strict: bool = False,
) -> Trace:
    """Read a Procmon PML log (or the files of one multi-file capture) into a Trace.

    Give a list of paths for a capture Procmon split into ``Log-1.PML``, ``Log-2.PML``…
    (in that order): their events become one trace, ``row`` numbering on across files.
    ``.gz``/``.zip``-wrapped logs are opened transparently. Times are UTC
    (``Trace.clock == "utc"``); events are in the schema of
    :data:`~traceaudit.schema.EVENT_SCHEMA`, sorted by (time, row), ``row`` being the
    1-based position of the event in the log.

    A file cut short or not closed cleanly is read up to its last intact event with a
    warning counting the events lost; with ``strict=True`` that, and any damaged event,
    raises :class:`~traceaudit.errors.TraceFormatError`.
    """
    if isinstance(path_or_paths, (str, os.PathLike)):
        paths = [path_or_paths]
    else:
        paths = list(path_or_paths)
        if not paths:
            raise TraceFormatError("read_pml: no files given. Give a PML file or a list of them.")
    parts: list[_Part] = []
    first_row = 0
    for path in paths:
        part = _read_part(open_input(path, sniff=sniff_pml), strict=strict, first_row=first_row)
        first_row += part.numbered
        parts.append(part)
    return _trace(parts, Path(paths[0]))


def read(trace_input: TraceInput, *, date: Date | None = None, strict: bool = False) -> Trace:
    """The reader for the format table: one already opened PML input. ``date`` is
    ignored (PML times carry their date)."""
    return _trace([_read_part(trace_input, strict=strict, first_row=0)], trace_input.source)


def batches(
    trace_input: TraceInput,
    *,
    date: Date | None = None,
    strict: bool = False,
    columns: Sequence[str] | None = None,
    keep: pl.Expr | None = None,
    batch_rows: int = BATCH_ROWS,
) -> TraceBatches:
    """The batch reader for the format table (:mod:`traceaudit.formats.batches`): one PML
    input read ``batch_rows`` events at a time, in memory bounded by the batch.

    The header, the event index's place and the tables at the end of the file are read
    (and checked: errors are raised) here; the events when the frames are iterated. Each
    batch's offsets come from its own slice of the event index (a damaged file is walked
    first, as :func:`read` does), its cheap columns are decoded and ``keep`` applied to
    them, and only then the paths, typed details and Detail text of the events kept, each
    only when ``columns`` needs it. The file's pages are given back after every batch.
    Frames hold ``columns`` in schema order (all with None), rows in display order with
    their 1-based ``row``; ``date`` is ignored. With ``columns=None, keep=None`` the frames
    put together equal :func:`read`'s events sorted by row, and the warnings, skipped
    events and cut equal its own once the frames are exhausted (damaged events are
    counted as their batches are read; in strict mode the first one raises then).

    A ``keep`` that reads more than :data:`~traceaudit.formats.batches.CHEAP_COLUMNS` (or
    columns picked by a selector) is applied after the columns it reads are decoded
    (correct, but slower).
    """
    wanted = ALL_COLUMNS if columns is None else frozenset(columns) & ALL_COLUMNS
    late: pl.Expr | None = None
    if keep is not None:
        reads = frozenset(keep.meta.root_names())
        if not reads and not keep.meta.is_literal():
            reads = ALL_COLUMNS  # selectors (pl.all(), several columns): read what they may
        if not reads <= CHEAP_COLUMNS:
            late, keep = keep, None
            wanted |= reads & ALL_COLUMNS
    with _mapped(trace_input) as (data, buf, _release):
        opened = _open(trace_input, data, buf, strict=strict, whole=False)
        del data, buf
    damage = Damage()
    out = TraceBatches(
        frames=iter(()),
        format=FORMAT_NAME,
        name=trace_input.name,
        source=trace_input.source,
        clock=CLOCK,
        warnings=opened.warnings(trace_input, damage),
        truncated=opened.truncated,
        numbered=opened.located.count,
        process_exits=None if opened.processes is None else process_exits(opened.processes),
    )
    project = None if columns is None else list(columns)

    def frames() -> Iterator[pl.DataFrame]:
        for frame in _batch_frames(
            trace_input,
            opened,
            out,
            damage,
            strict=strict,
            wanted=wanted,
            keep=keep,
            batch_rows=batch_rows,
        ):
            if late is not None:
                frame = frame.filter(late)
            frame = select_columns(frame, project, None)
            if frame.height:
                yield frame

    out.frames = frames()
    return out


def _batch_frames(
    trace_input: TraceInput,
    opened: _Opened,
    out: TraceBatches,
    damage: Damage,
    *,
    strict: bool,
    wanted: frozenset[str],
    keep: pl.Expr | None,
    batch_rows: int,
) -> Iterator[pl.DataFrame]:
    """The frames of :func:`batches` (every schema column; those not wanted are null),
    noting in ``out`` the damaged events as they are found."""
    header, located = opened.header, opened.located
    step = max(batch_rows, 1)
    entry = OFFSET_ENTRY_DTYPE.itemsize
    with _mapped_ahead(trace_input) as (data, buf, release, prefetch):
        try:
            done = header.events_offset  # the file's pages before this were given back
            said: str | None = None  # the warning about damaged events, once there is one
            for start in range(0, located.count, step):
                offsets, numbers = located.part(header, data, start, start + step)
                if located.in_index:  # this slice of the index is read: give it back
                    at = header.event_offsets_offset + start * entry
                    release(_page_start(at), at + len(offsets) * entry)
                damaged = damage.count
                events = EventArrays.build(
                    header, data, buf, offsets, numbers, damage, strict=strict
                )
                if damage.count != damaged:
                    said = _note_damage(out, opened, damage, said)
                low, high = events.span
                prefetch(high, 2 * high - low)  # the next batch's, likely, read meanwhile
                frame = _columns(opened, events, wanted=wanted, keep=keep)
                del events
                if high > low:  # the batch's events are done with: give their pages back
                    release(_page_start(min(low, done)), high)
                    done = max(done, high)
                yield frame
        finally:
            del data, buf  # no view may outlive the mapping


def _page_start(offset: int) -> int:
    """The start of the page that holds ``offset`` (so that page is given back too)."""
    return offset // mmap.PAGESIZE * mmap.PAGESIZE


def _note_damage(out: TraceBatches, opened: _Opened, damage: Damage, said: str | None) -> str:
    """Put the damage found so far into ``out``: its warning (replacing ``said``, the one
    put before) where a reader of the whole file puts it, before the warnings about the
    tables; the count and first places. Returns the warning."""
    (message,) = damage.warnings(opened.header.name)
    if said is not None and said in out.warnings:
        out.warnings[out.warnings.index(said)] = message
    else:
        out.warnings.insert(len(out.warnings) - len(opened.table_warnings), message)
    out.skipped.update(damage.skipped)
    out.skipped_rows[:] = damage.where
    return message


def read_pml_processes(path: str | os.PathLike[str]) -> pl.DataFrame:
    """The process table of a PML log: one row per process the capture saw.

    Columns (see ``_pml_tables.PROCESS_SCHEMA``): process_index (what events refer to),
    pid, parent_pid, name, image_path, command_line, user, integrity, session,
    start_time, end_time (UTC; null while running), authentication_id, is_64bit,
    virtualized, company, version, description.
    """
    trace_input = open_input(path, sniff=sniff_pml)
    with _mapped(trace_input) as (data, buf, _release):
        header = PmlHeader.parse(trace_input.name, data)
        problem = header.tables_problem()
        if problem is not None:
            raise TraceFormatError(
                f"{trace_input.name}: process table at 0x{header.process_table_offset:X}: "
                f"{problem}. The events may still be read with read_pml."
            )
        processes = read_process_table(header, data, read_strings_table(header, data, buf))
        del data, buf
    return processes
