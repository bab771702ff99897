"""Process Monitor's XML export (File > Save > XML, or ``/SaveAs x.xml``).

Layout::

    <procmon>
      <processlist><process><ProcessIndex/><ProcessId/>…<modulelist>…</modulelist></process>…
      <eventlist>
        <event><ProcessIndex/><Time_of_Day/><Process_Name/><PID/><Operation/><Path/>
               <Result/><Detail/>[<stack><frame>…</frame></stack>]</event>…

Each event holds one child per exported column, named like the CSV header with spaces
(and ``&``) replaced by ``_``: ``Time_of_Day``, ``Process_Name``, ``Date_&_Time`` …. The
values are the same display strings as in the CSV export, in the same locale (comma
decimals in a Russian export), so after collecting them the events go through the very
same normalisation as CSV rows (:func:`._events.build_trace`).

The file is streamed with ``iterparse`` and every element is cleared once read, so memory
follows the number of events, not the size of the process list and stacks.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from datetime import date as Date
from typing import IO

import polars as pl

from traceaudit.errors import MissingColumnsError, TraceFormatError
from traceaudit.formats.batches import BATCH_ROWS, TraceBatches
from traceaudit.formats.input import TraceInput
from traceaudit.formats.procmon_text.rows import BatchBuilder, RawRows, build_trace
from traceaudit.schema import Trace

__all__ = ["FORMAT_NAME", "sniff", "read", "batches"]

FORMAT_NAME = "procmon-xml"

# XML element name (spaces and "&" folded to "_") → raw field of _events.build_trace.
_FIELDS = {
    "time_of_day": "tod",
    "date_time": "dt",
    "date_and_time": "dt",
    "process_name": "process",
    "pid": "pid",
    "operation": "operation",
    "path": "path",
    "result": "result",
    "detail": "detail",
    "tid": "tid",
    "duration": "duration",
    "event_class": "event_class",
}
_REQUIRED = ("process", "pid", "operation", "path", "result")
_XML_NAME = {
    "process": "Process_Name",
    "pid": "PID",
    "operation": "Operation",
    "path": "Path",
    "result": "Result",
    "tod": "Time_of_Day",
}


def _field_of(tag: str) -> str | None:
    folded = re.sub(r"[^a-z0-9]+", "_", tag.lower()).strip("_")
    return _FIELDS.get(folded)


def sniff(head: bytes) -> bool:
    """An XML document whose root element is ``<procmon>``."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if not text.startswith(b"<"):
        return False
    return re.search(rb"<procmon[\s>]", text[:4096]) is not None


def read(trace_input: TraceInput, *, date: Date | None = None, strict: bool = False) -> Trace:
    """Read a Procmon XML export into a :class:`~traceaudit.schema.Trace`."""
    name = trace_input.name
    columns: dict[str, list[str | None]] = {}
    count = 0
    truncated = False
    seen_fields: set[str] = set()
    # A plain file on disk is parsed from the file itself; only archive members are in memory.
    stream = (
        trace_input.path if trace_input.path is not None else io.BytesIO(trace_input.read_bytes())
    )
    depth_in_event = False
    values: dict[str, str] = {}
    try:
        for event, element in ET.iterparse(stream, events=("start", "end")):
            tag = element.tag
            if event == "start":
                if tag == "event":
                    depth_in_event = True
                    values = {}
                continue
            if tag == "event":
                for key in seen_fields | values.keys():
                    if key not in columns:
                        columns[key] = [None] * count
                    columns[key].append(values.get(key))
                seen_fields |= values.keys()
                count += 1
                depth_in_event = False
                element.clear()
            elif depth_in_event:
                field = _field_of(tag)
                if field is not None and field not in values:
                    values[field] = element.text or ""
                if tag in ("stack", "frame"):
                    element.clear()
            elif tag in ("process", "module"):
                element.clear()
    except ET.ParseError as exc:
        line, column = exc.position
        if count == 0:
            raise TraceFormatError(
                f"{name}: line {line}, column {column}: not well-formed XML ({exc}). "
                "Save the log from Process Monitor again (File > Save > XML)."
            ) from None
        # A truncated export: keep the events read so far and say what was lost.
        truncated = True
        trace_input.warnings.append(
            f"{name}: the XML ends abruptly at line {line} (truncated file?); "
            f"the {count:,} events before it were read."
        )
    if count == 0:
        raise TraceFormatError(
            f"{name}: a Procmon XML document with no <event> elements. Save the log again "
            "with File > Save > XML and 'All events'."
        )
    _check(name, columns)
    frame = pl.DataFrame(
        {key: pl.Series(key, column, dtype=pl.String) for key, column in columns.items()}
    )
    raw = RawRows(
        frame=frame,
        name=name,
        source=trace_input.source,
        format=FORMAT_NAME,
        shape="the event's elements",
        line_of=_event_numbers,
        warnings=list(trace_input.warnings),
        truncated=truncated,
    )
    return build_trace(raw, date=date, strict=strict)


def _event_numbers(rows: Sequence[int]) -> list[int]:
    """Locations in messages are event numbers (``<event>`` elements, 1-based)."""
    return list(rows)


def _check(name: str, columns: dict[str, list[str | None]]) -> None:
    missing = [field for field in _REQUIRED if field not in columns]
    if "tod" not in columns and "dt" not in columns:
        missing.insert(0, "tod")
    if missing:
        found = ", ".join(sorted(columns))
        raise MissingColumnsError(
            f"{name}: the events lack {', '.join(repr(_XML_NAME[m]) for m in missing)} "
            f"(found: {found}). Export again from Process Monitor with these columns shown."
        )


def batches(
    trace_input: TraceInput,
    *,
    date: Date | None = None,
    strict: bool = False,
    columns: Sequence[str] | None = None,
    keep: pl.Expr | None = None,
    batch_rows: int = BATCH_ROWS,
) -> TraceBatches:
    """Read a Procmon XML export in batches (:mod:`traceaudit.formats.batches`).

    The document is streamed with ``iterparse`` as :func:`read` streams it; every
    ``batch_rows`` events make a batch, normalised by :class:`~.rows.BatchBuilder`
    (rows numbered on, rollovers carried over, damaged events counted and named by their
    number), and each finished ``<event>`` is dropped from the tree, so memory follows
    the batch. The Detail is not kept unless ``columns`` needs it. A document that ends
    abruptly yields the events before the cut and says so, as :func:`read` does; errors
    :func:`read` raises before reading anything are raised by the first ``next``.

    With ``columns=None, keep=None`` the frames put together equal :func:`read`'s events
    sorted by row, and the warnings, skipped events and cut equal its own once they are
    exhausted, for exports whose events all have the same elements (as Procmon writes
    them): the columns are those seen so far, so an element that first appears in a
    later batch is missing (null) in the earlier ones, and the required ones are checked
    on the first batch.
    """
    builder = BatchBuilder(trace_input.name, date=date, strict=strict, columns=columns, keep=keep)
    out = TraceBatches(
        frames=iter(()),
        format=FORMAT_NAME,
        name=trace_input.name,
        source=trace_input.source,
        warnings=list(trace_input.warnings),
    )
    out.frames = _batch_frames(trace_input, builder, out, max(batch_rows, 1))
    return out


def _batch_frames(
    trace_input: TraceInput, builder: BatchBuilder, out: TraceBatches, batch_rows: int
) -> Iterator[pl.DataFrame]:
    name = trace_input.name
    stream: str | IO[bytes] = (
        str(trace_input.path)
        if trace_input.path is not None
        else io.BytesIO(trace_input.read_bytes())
    )
    skip = frozenset() if builder.wants_detail else frozenset({"detail"})
    columns: dict[str, list[str | None]] = {}
    seen_fields: set[str] = set()
    in_batch = count = 0
    cut: str | None = None

    def batch() -> list[pl.DataFrame]:
        nonlocal columns, in_batch
        if count == in_batch:  # the first batch: the columns the export has
            _check(name, columns)
            builder.set_time_columns(has_time_of_day="tod" in columns, has_date="dt" in columns)
        frame = pl.DataFrame(
            {key: pl.Series(key, column, dtype=pl.String) for key, column in columns.items()}
        )
        first = count - in_batch
        raw = RawRows(
            frame=frame,
            name=name,
            source=trace_input.source,
            format=FORMAT_NAME,
            shape="the event's elements",
            line_of=_numbers_from(first),
        )
        columns, in_batch = {}, 0
        frames = builder.add(raw)
        out.skipped.clear()
        out.skipped.update(builder.skipped)
        out.skipped_rows[:] = builder.skipped_rows
        return frames

    try:
        for values in _events(stream):
            seen_fields |= values.keys()
            for key in seen_fields - skip:
                if key not in columns:
                    columns[key] = [None] * in_batch
                columns[key].append(values.get(key))
            in_batch += 1
            count += 1
            if in_batch == batch_rows:
                yield from batch()
    except ET.ParseError as exc:
        line, column = exc.position
        if count == 0:
            raise TraceFormatError(
                f"{name}: line {line}, column {column}: not well-formed XML ({exc}). "
                "Save the log from Process Monitor again (File > Save > XML)."
            ) from None
        cut = (
            f"{name}: the XML ends abruptly at line {line} (truncated file?); "
            f"the {count:,} events before it were read."
        )
    if count == 0:
        raise TraceFormatError(
            f"{name}: a Procmon XML document with no <event> elements. Save the log again "
            "with File > Save > XML and 'All events'."
        )
    if in_batch:
        yield from batch()
    yield from builder.finish()
    out.truncated = cut is not None
    out.warnings.extend([*([cut] if cut else []), *builder.warnings()])
    out.skipped.clear()
    out.skipped.update(builder.skipped)
    out.skipped_rows[:] = builder.skipped_rows
    out.time_precision_lost = builder.time_precision_lost


def _events(stream: str | IO[bytes]) -> Iterator[dict[str, str]]:
    """Each ``<event>``'s fields (raw field name → text), as :func:`read` collects them;
    finished events are dropped from the tree."""
    parent: ET.Element | None = None  # the <eventlist>
    in_event = False
    values: dict[str, str] = {}
    for event, element in ET.iterparse(stream, events=("start", "end")):
        tag = element.tag
        if event == "start":
            if tag == "event":
                in_event = True
                values = {}
            elif tag == "eventlist":
                parent = element
            continue
        if tag == "event":
            in_event = False
            element.clear()
            if parent is not None and len(parent) > 1000:
                del parent[:-1]
            yield values
        elif in_event:
            field = _field_of(tag)
            if field is not None and field not in values:
                values[field] = element.text or ""
            if tag in ("stack", "frame"):
                element.clear()
        elif tag in ("process", "module"):
            element.clear()


def _numbers_from(first: int) -> Callable[[Sequence[int]], list[int]]:
    """Event numbers of a batch's 1-based rows, its first event being ``first + 1``."""
    return lambda rows: [first + row for row in rows]
