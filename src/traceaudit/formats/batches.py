"""Reading a trace in batches: bounded memory for captures of any size.

A multi-GB capture does not fit in memory as one event frame, and the analysis needs only a
small part of it (opens, closes, failures, mappings, process events). Every format can
therefore be read as a stream of event frames (:class:`TraceBatches`), and a reader is told
up front what is wanted so that it can skip work:

* ``columns``: the event-schema columns to produce (None: all). A reader may skip decoding
  what is not asked for; Procmon's Detail text, the most expensive column of every format,
  is only rendered when ``detail`` is asked for.
* ``keep``: a polars expression over the *cheap* columns (:data:`CHEAP_COLUMNS`: row, time,
  process, pid, tid, operation, event_class, result, duration). A reader applies it as early
  as it can: the PML reader before it decodes any path or detail, the text readers right
  after parsing a batch. Rows it rejects never leave the reader.

Frames yielded hold ``columns`` (plus any the ``keep`` expression reads), in schema order and
types; rows keep their 1-based ``row`` numbers of the whole trace, in source order. What the
reader learns on the way (warnings, damaged rows skipped, a cut) is complete once the frames
are exhausted.

A format without a batch reader of its own is read whole and then sliced
(:func:`whole_trace_batches`), which is correct but bounds nothing: every format of the
registry that can be big has its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path
from typing import Protocol

import polars as pl

from traceaudit.formats.input import TraceInput
from traceaudit.schema import EVENT_SCHEMA, Trace

__all__ = [
    "BATCH_ROWS",
    "CHEAP_COLUMNS",
    "BatchReader",
    "TraceBatches",
    "select_columns",
    "whole_trace_batches",
]

BATCH_ROWS = 100_000
"""Rows per batch by default: a few tens of MB of events, whatever the trace's size."""

CHEAP_COLUMNS = frozenset(
    {"row", "time", "process", "pid", "tid", "operation", "event_class", "result", "duration"}
)
"""Columns every reader has before it decodes paths or details: what ``keep`` may read."""


@dataclass
class TraceBatches:
    """A trace being read batch by batch, and what its reader learned so far.

    ``frames`` yields the event frames; ``warnings``, ``skipped``, ``skipped_rows``,
    ``truncated`` and ``time_precision_lost`` (as in :class:`~traceaudit.schema.Trace`) are
    complete once ``frames`` is exhausted. ``name`` is the trace's name in messages.
    """

    frames: Iterator[pl.DataFrame]
    format: str
    name: str
    source: Path | None = None
    clock: str = "local"
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[str] = field(default_factory=list)
    truncated: bool = False
    time_precision_lost: bool = False
    numbered: int | None = None
    """How many rows the reader numbers (rows run 1..numbered), where it knows before
    reading the frames: a rolled-over capture's next file numbers on from there."""
    process_exits: pl.DataFrame | None = None
    """As :attr:`~traceaudit.schema.Trace.process_exits`, known before the frames are read."""

    def trace(self, events: pl.DataFrame) -> Trace:
        """A :class:`Trace` of ``events`` (usually what was kept) with what was learned."""
        return Trace(
            events=events,
            format=self.format,
            source=self.source,
            clock=self.clock,
            warnings=tuple(self.warnings),
            skipped=dict(self.skipped),
            skipped_rows=tuple(self.skipped_rows),
            time_precision_lost=self.time_precision_lost,
            truncated=self.truncated,
            process_exits=self.process_exits,
        )


class BatchReader(Protocol):
    """Reads one format in batches (see the module docstring)."""

    def __call__(
        self,
        trace_input: TraceInput,
        *,
        date: Date | None = None,
        strict: bool = False,
        columns: Sequence[str] | None = None,
        keep: pl.Expr | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> TraceBatches: ...


def select_columns(
    frame: pl.DataFrame, columns: Sequence[str] | None, keep: pl.Expr | None
) -> pl.DataFrame:
    """``frame`` filtered by ``keep`` and cut down to ``columns`` (schema order)."""
    if keep is not None:
        frame = frame.filter(keep)
    if columns is None:
        return frame
    wanted = set(columns)
    return frame.select([c for c in EVENT_SCHEMA if c in wanted and c in frame.columns])


def whole_trace_batches(
    read: Callable[..., Trace],
) -> BatchReader:
    """A batch reader for a format that can only be read whole: read, then slice."""

    def batches(
        trace_input: TraceInput,
        *,
        date: Date | None = None,
        strict: bool = False,
        columns: Sequence[str] | None = None,
        keep: pl.Expr | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> TraceBatches:
        trace = read(trace_input, date=date, strict=strict)
        events = trace.events.sort("row") if trace.events.height else trace.events
        out = TraceBatches(
            frames=iter(()),
            format=trace.format,
            name=trace_input.name,
            source=trace.source,
            clock=trace.clock,
            warnings=list(trace.warnings),
            skipped=dict(trace.skipped),
            skipped_rows=list(trace.skipped_rows),
            truncated=trace.truncated,
            time_precision_lost=trace.time_precision_lost,
        )
        step = max(batch_rows, 1)
        frames = (
            select_columns(events.slice(start, step), columns, keep)
            for start in range(0, events.height, step)
        )
        return dataclasses.replace(out, frames=frames)

    return batches
