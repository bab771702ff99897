"""``scan_trace``: any trace as a polars LazyFrame, read in batches when it is collected.

::

    >>> import polars as pl, traceaudit
    >>> failures = (
    ...     traceaudit.scan_trace("huge.pml")
    ...     .filter(pl.col("result") == "SHARING VIOLATION")
    ...     .select("time", "process", "path")
    ...     .collect()
    ... )

The trace is a polars IO source (``polars.io.plugins.register_io_source``), so the query
optimiser hands the reader what the query needs:

* the **columns** selected: a reader decodes only those (Detail, the most expensive column
  of every format, only when asked for);
* the **filter**: when it reads only the cheap columns every reader has before it decodes
  paths (:data:`~traceaudit.formats.batches.CHEAP_COLUMNS`: time, process, pid, tid,
  operation, event_class, result, duration, row), the reader applies it as early as it
  can (the PML reader before it decodes the rows it rejects); any other filter is applied
  to each batch as it is read;
* a ``head(n)``/``limit(n)``: reading stops after ``n`` rows.

Memory therefore follows the batch size and what the query keeps, not the trace's size.
Errors (not a trace, a damaged file with ``strict``) are raised when the file is opened by
``scan_trace`` or when the query is collected; the warnings and skipped-row counts a reader
gathers are not part of a LazyFrame (use :func:`~traceaudit.formats.load.load_trace` or
:func:`~traceaudit.formats.load.open_batches` to see them). Rows come in source order, with
the columns and types of :data:`~traceaudit.schema.EVENT_SCHEMA`; ``load_trace`` sorts by
time, a scan does not (add ``.sort("time", "row")``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date as Date

import polars as pl
from polars.io.plugins import register_io_source

from traceaudit.formats.batches import BATCH_ROWS, CHEAP_COLUMNS
from traceaudit.formats.detection import is_trace
from traceaudit.formats.input import open_input
from traceaudit.formats.load import batches_of, trace_format_of
from traceaudit.schema import EVENT_SCHEMA

__all__ = ["scan_trace"]


def scan_trace(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    date: Date | None = None,
    strict: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> pl.LazyFrame:
    """A LazyFrame of the trace at ``path`` (see the module docstring).

    ``format``, ``date`` and ``strict`` are those of
    :func:`~traceaudit.formats.load.load_trace`; ``batch_rows`` is the number of events
    read at a time. The file is opened and its format recognised now, so a file that is
    not a trace fails here rather than at ``collect()``.
    """
    trace_input = open_input(path, sniff=is_trace)
    trace_format = trace_format_of(trace_input, format)

    def read(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        del batch_size  # a hint; the reader's batch size suits its format better
        roots = set(predicate.meta.root_names()) if predicate is not None else set()
        columns = None
        if with_columns is not None:
            wanted = set(with_columns) | roots
            columns = [c for c in EVENT_SCHEMA if c in wanted]
        batches = batches_of(
            trace_input,
            trace_format,
            date=date,
            strict=strict,
            columns=columns,
            keep=predicate if predicate is not None and roots <= CHEAP_COLUMNS else None,
            batch_rows=batch_rows,
        )
        left = n_rows
        for frame in batches.frames:
            if predicate is not None:
                frame = frame.filter(predicate)
            if with_columns is not None:
                frame = frame.select(with_columns)
            if left is not None:
                frame = frame.head(left)
                left -= frame.height
            if frame.height:
                yield frame
            if left is not None and left <= 0:
                return

    return register_io_source(read, schema=EVENT_SCHEMA)
