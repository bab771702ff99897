"""traceaudit's own Parquet: normalised events written by ``traceaudit convert``.

Parquet keeps every column type of :data:`~traceaudit.schema.EVENT_SCHEMA` (nanosecond
datetimes and durations, unsigned masks), so a converted trace reads back exactly. The
file's key-value metadata records what the events came from (``traceaudit.source_format``)
and their clock (``traceaudit.clock``). Other Parquet files are refused unless they carry
the event columns.
"""

from __future__ import annotations

import io
from datetime import date as Date

import polars as pl

from traceaudit.errors import MissingColumnsError, TraceFormatError
from traceaudit.formats._input import TraceInput
from traceaudit.schema import EVENT_SCHEMA, Trace, conform_events

__all__ = ["FORMAT_NAME", "METADATA_FORMAT", "METADATA_CLOCK", "sniff", "read"]

FORMAT_NAME = "parquet"
METADATA_FORMAT = "traceaudit.source_format"
METADATA_CLOCK = "traceaudit.clock"
_REQUIRED = ("row", "time", "process", "pid", "operation", "path", "result")


def sniff(head: bytes) -> bool:
    return head.startswith(b"PAR1")


def read(trace_input: TraceInput, *, date: Date | None = None, strict: bool = False) -> Trace:
    """Read events written by :func:`traceaudit.convert.write_events` (``date`` and
    ``strict`` do not apply: the events are already normalised)."""
    name = trace_input.name
    source = (
        trace_input.path if trace_input.path is not None else io.BytesIO(trace_input.read_bytes())
    )
    try:
        metadata = pl.read_parquet_metadata(source)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        frame = pl.read_parquet(source)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise TraceFormatError(f"{name}: cannot read this Parquet file ({exc}).") from None
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise MissingColumnsError(
            f"{name}: a Parquet file without the event columns {', '.join(map(repr, missing))}. "
            "Only Parquet written by 'traceaudit convert' can be analysed."
        )
    events = conform_events(frame.select([c for c in frame.columns if c in EVENT_SCHEMA]))
    source_format = metadata.get(METADATA_FORMAT, "unknown")
    return Trace(
        events=events.sort("time", "row"),
        format=f"{FORMAT_NAME} ({source_format})",
        source=trace_input.source,
        clock=metadata.get(METADATA_CLOCK, "local"),
    )
