"""traceaudit's own Parquet, read and written: normalised events (``traceaudit convert``).

Parquet keeps every column type of :data:`~traceaudit.schema.EVENT_SCHEMA` (nanosecond
datetimes and durations, unsigned masks), so a converted trace reads back exactly. The
file's key-value metadata records what the events came from (``traceaudit.source_format``)
and their clock (``traceaudit.clock``). Other Parquet files are refused unless they carry
the event columns.
"""

from __future__ import annotations

import io
from datetime import date as Date
from typing import IO, Any

import polars as pl

from traceaudit.errors import MissingColumnsError, TraceFormatError
from traceaudit.formats.input import LIMIT_VARIABLE, TraceInput, quote_name, uncompressed_limit
from traceaudit.schema import EVENT_SCHEMA, Trace, conform_events

__all__ = ["FORMAT_NAME", "METADATA_FORMAT", "METADATA_CLOCK", "sniff", "read", "write_parquet"]

FORMAT_NAME = "parquet"
METADATA_FORMAT = "traceaudit.source_format"
METADATA_CLOCK = "traceaudit.clock"
_REQUIRED = ("row", "time", "process", "pid", "operation", "path", "result")


def sniff(head: bytes) -> bool:
    return head.startswith(b"PAR1")


# What one event costs in memory once read (strings included), to bound a Parquet file
# that claims far more rows than its size can hold (identical rows compress to nothing).
_BYTES_PER_EVENT = 120
_EARLIEST, _LATEST = "1677-09-22", "2262-04-11"  # what nanosecond datetimes can hold


def _damaged(name: str) -> TraceFormatError:
    return TraceFormatError(
        f"{name}: cannot read this Parquet file: it is damaged, or was not written by "
        "'traceaudit convert'. Convert the trace again."
    )


def _read_frame(name: str, source: Any) -> tuple[dict[str, str], pl.DataFrame]:
    """Metadata and frame; every failure of the Parquet machinery becomes a clear error.

    The file is decoded by pyarrow, which reports a damaged page as an error, and handed
    to polars; polars' own reader can panic (and print a Rust backtrace) on damaged data.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq  # loaded only when a Parquet trace is read

    try:
        handle = pq.ParquetFile(source)
        rows = handle.metadata.num_rows
        size = (
            source.getbuffer().nbytes if isinstance(source, io.BytesIO) else source.stat().st_size
        )
        limit = uncompressed_limit(size)
        if limit is not None and rows * _BYTES_PER_EVENT > limit:
            raise TraceFormatError(
                f"{name}: claims {rows:,} events in {size:,} bytes, about "
                f"{rows * _BYTES_PER_EVENT / 2**30:,.1f} GB once read: refused before memory "
                f"runs out. If it really is one trace, set {LIMIT_VARIABLE}=64GB (or 0 for no "
                "limit) and run again."
            )
        raw = handle.metadata.metadata or {}
        metadata = {
            k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()
        }
        table = handle.read()
        # Only the event columns, and no field metadata: polars panics (and prints a Rust
        # backtrace) on a field whose metadata is not UTF-8, as a flipped byte can make it.
        keep = [i for i, f in enumerate(table.schema) if f.name in EVENT_SCHEMA]
        clean = pa.schema([pa.field(table.schema[i].name, table.schema[i].type) for i in keep])
        frame = pl.from_arrow(pa.Table.from_arrays([table.column(i) for i in keep], schema=clean))
    except TraceFormatError:
        raise
    except (Exception, pl.exceptions.PanicException) as exc:
        if isinstance(exc, (MemoryError, pa.ArrowMemoryError)):
            raise
        raise _damaged(name) from None
    if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table gives a frame
        raise _damaged(name)
    return metadata, frame


def _check_time(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    dtype = frame.schema["time"]
    if not isinstance(dtype, pl.Datetime):
        raise TraceFormatError(
            f"{name}: its 'time' column holds {dtype}, not timestamps: not a trace written by "
            "'traceaudit convert'. Convert the trace again."
        )
    if dtype.time_zone is not None:
        frame = frame.with_columns(pl.col("time").dt.replace_time_zone(None))
    if dtype.time_unit != "ns":
        bounds = frame.select(
            low=pl.col("time").min() < pl.lit(_EARLIEST).str.to_datetime(time_unit=dtype.time_unit),
            high=pl.col("time").max() > pl.lit(_LATEST).str.to_datetime(time_unit=dtype.time_unit),
        ).row(0)
        if any(bounds):
            raise TraceFormatError(
                f"{name}: event times outside {_EARLIEST} to {_LATEST}, which a trace cannot "
                "hold: the file is damaged or not a trace written by 'traceaudit convert'."
            )
    return frame


def read(trace_input: TraceInput, *, date: Date | None = None, strict: bool = False) -> Trace:
    """Read events written by :func:`traceaudit.formats.convert.write_events` (``date`` and
    ``strict`` do not apply: the events are already normalised).

    Anything else is refused with a clear message: a damaged file, one without the event
    columns or with columns of other types, times a trace cannot hold, or more rows than
    its size could honestly hold (see :func:`~traceaudit.formats.input.uncompressed_limit`).
    """
    name = trace_input.name
    source: Any = (
        trace_input.path if trace_input.path is not None else io.BytesIO(trace_input.read_bytes())
    )
    metadata, frame = _read_frame(name, source)
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise MissingColumnsError(
            f"{name}: a Parquet file without the event columns {', '.join(map(repr, missing))}. "
            "Only Parquet written by 'traceaudit convert' can be analysed."
        )
    frame = _check_time(name, frame)
    kept = frame.select([c for c in frame.columns if c in EVENT_SCHEMA])
    try:
        events = conform_events(kept)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        wrong = [
            f"{c} ({kept.schema[c]})"
            for c in kept.columns
            if kept.schema[c] != EVENT_SCHEMA[c] and not _casts(kept[c], EVENT_SCHEMA[c])
        ]
        raise TraceFormatError(
            f"{name}: columns of the wrong type for a trace: {', '.join(wrong[:5]) or '?'}. Only "
            "Parquet written by 'traceaudit convert' can be analysed."
        ) from None
    source_format = metadata.get(METADATA_FORMAT, "unknown")
    return Trace(
        events=events.sort("time", "row"),
        format=f"{FORMAT_NAME} ({quote_name(source_format, 60)})",
        source=trace_input.source,
        clock=metadata.get(METADATA_CLOCK, "local"),
    )


def _casts(column: pl.Series, dtype: pl.DataType) -> bool:
    try:
        column.cast(dtype)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        return False
    return True


def write_parquet(trace: Trace, handle: IO[bytes]) -> None:
    """Write ``trace``'s events as traceaudit Parquet: every schema type kept, and the
    source format and clock in the file's metadata, so :func:`read` gives them back."""
    trace.events.write_parquet(
        handle, metadata={METADATA_FORMAT: trace.format, METADATA_CLOCK: trace.clock}
    )
