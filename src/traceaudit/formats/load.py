"""``load_trace``, ``load_text`` and ``read_trace``: detect the format, run its reader.

``load_trace`` returns the :class:`~traceaudit.schema.Trace` (events and what the reader
noticed: warnings, skipped rows, clock); ``read_trace`` just its event frame.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from datetime import date as Date
from pathlib import Path

import polars as pl

from traceaudit.errors import TraceFormatError, UnknownFormatError
from traceaudit.formats.batches import BATCH_ROWS, TraceBatches
from traceaudit.formats.detection import is_trace, sniff_format, unknown_format_message
from traceaudit.formats.input import NotThisFormat, TraceInput, input_from_bytes, open_input
from traceaudit.formats.registry import TraceFormat, get_format
from traceaudit.schema import Trace

__all__ = ["load_trace", "load_text", "read_trace", "open_batches", "refuse_if_nothing_read"]


def load_trace(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    date: Date | None = None,
    strict: bool = False,
) -> Trace:
    """Read the trace at ``path`` into a :class:`~traceaudit.schema.Trace`.

    The format is detected from the content (``.gz`` and ``.zip`` are opened
    transparently) unless ``format`` names one (see :data:`FORMATS`). ``date`` is the
    capture day for exports without a ``Date & Time`` column (default: the placeholder
    :data:`PLACEHOLDER_DATE`, with a warning). Damaged rows are skipped and counted in
    ``Trace.skipped``; with ``strict=True`` the first one raises
    :class:`~traceaudit.errors.DamagedRowError`.

    Events are in the schema of :data:`traceaudit.schema.EVENT_SCHEMA`, sorted by
    (time, row). ``row`` is the 1-based data row of the source (blank lines are not rows;
    skipped rows keep their numbers, so gaps show where they were). Messages, warnings
    and errors start with the file name (``logs.zip/Logfile.txt`` for a zip member).
    """
    trace_input = open_input(path, sniff=is_trace)
    return _read(trace_input, format, date, strict)


def load_text(
    text: str,
    *,
    date: Date | None = None,
    strict: bool = False,
    name: str = "<pasted>",
) -> Trace:
    """Read a trace held in a string: pasted Procmon rows, or a whole CSV export."""
    trace_input = input_from_bytes(text.encode("utf-8"), name)
    return _read(trace_input, None, date, strict)


def _read(trace_input: TraceInput, format: str | None, date: Date | None, strict: bool) -> Trace:
    trace_format: TraceFormat | None = (
        get_format(format) if format is not None else sniff_format(trace_input.head)
    )
    if trace_format is None:
        raise UnknownFormatError(unknown_format_message(trace_input.name, trace_input.head))
    try:
        trace = trace_format.read(trace_input, date=date, strict=strict)
    except NotThisFormat:
        raise UnknownFormatError(
            unknown_format_message(trace_input.name, trace_input.head)
        ) from None
    _refuse_if_nothing_read(trace_input.name, trace)
    missing = [w for w in trace_input.warnings if w not in trace.warnings]
    if missing:
        trace = dataclasses.replace(trace, warnings=(*missing, *trace.warnings))
    return trace


def _refuse_if_nothing_read(name: str, trace: Trace) -> None:
    refuse_if_nothing_read(name, trace.events.height, trace.skipped, trace.skipped_rows)


def refuse_if_nothing_read(
    name: str, events_read: int, skipped: dict[str, int], skipped_rows: Sequence[str]
) -> None:
    """Rows were there, but not one could be read: an error, never an empty clean report."""
    lost = sum(skipped.values())
    if events_read or not lost:
        return
    reasons = ", ".join(f"{n:,} {reason}" for reason, n in skipped.items())
    where = ", ".join(skipped_rows[:3])
    raise TraceFormatError(
        f"{name}: not one event could be read: all {lost:,} rows are damaged ({reasons})"
        + (f", first at {where}" if where else "")
        + ". Check that the file is a trace whose header matches its rows, or export it again."
    )


def read_trace(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    date: Date | None = None,
    strict: bool = False,
) -> pl.DataFrame:
    """Read a trace file into the event schema (:data:`traceaudit.schema.EVENT_SCHEMA`).

    The format is detected from the content unless ``format`` names it; ``date`` supplies
    the day for exports whose rows carry only a time of day. Damaged rows are skipped (use
    :func:`load_trace` to see how many and why), or raise with ``strict=True``.
    """
    return load_trace(Path(path), format=format, date=date, strict=strict).events


def open_batches(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    date: Date | None = None,
    strict: bool = False,
    columns: Sequence[str] | None = None,
    keep: pl.Expr | None = None,
    batch_rows: int = BATCH_ROWS,
) -> TraceBatches:
    """Open the trace at ``path`` for reading in batches (see :mod:`.batches`).

    Detection, decompression and errors are those of :func:`load_trace`; the frames come
    as the reader produces them, ``keep`` and ``columns`` applied.
    """
    trace_input = open_input(path, sniff=is_trace)
    return batches_of(
        trace_input,
        trace_format_of(trace_input, format),
        date=date,
        strict=strict,
        columns=columns,
        keep=keep,
        batch_rows=batch_rows,
    )


def trace_format_of(trace_input: TraceInput, format: str | None) -> TraceFormat:
    """The format named, or the one the content shows; an error when it shows none."""
    trace_format = get_format(format) if format is not None else sniff_format(trace_input.head)
    if trace_format is None:
        raise UnknownFormatError(unknown_format_message(trace_input.name, trace_input.head))
    return trace_format


def batches_of(
    trace_input: TraceInput,
    trace_format: TraceFormat,
    *,
    date: Date | None = None,
    strict: bool = False,
    columns: Sequence[str] | None = None,
    keep: pl.Expr | None = None,
    batch_rows: int = BATCH_ROWS,
) -> TraceBatches:
    """An opened input read in batches by ``trace_format``'s reader (see :mod:`.batches`)."""
    try:
        batches = trace_format.batch_reader()(
            trace_input,
            date=date,
            strict=strict,
            columns=columns,
            keep=keep,
            batch_rows=batch_rows,
        )
    except NotThisFormat:
        raise UnknownFormatError(
            unknown_format_message(trace_input.name, trace_input.head)
        ) from None
    batches.warnings[:0] = [w for w in trace_input.warnings if w not in batches.warnings]
    return batches
