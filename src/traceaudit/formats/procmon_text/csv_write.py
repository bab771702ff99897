"""Write events the way Process Monitor itself writes them: CSV export and clipboard text.

Why this exists: the simulator (:mod:`traceaudit.simulation.generate`) and the sample traces need
files a Procmon CSV reader cannot tell apart from Procmon's own export, and tests need to
pin the exact bytes. What Procmon writes (measured on its own exports, docs/formats.md §1):

* UTF-8 with a byte-order mark; every field double-quoted, embedded ``"`` doubled; CRLF
  line ends; one header row of column names.
* ``Time of Day`` ``7:19:37.0147934 AM`` (12 h, no leading zero on the hour, 7 fractional
  digits = 100 ns); ``Date & Time`` ``7/31/2020 7:19:37 AM`` (no fraction);
  ``Duration`` ``0.0000112`` (seconds, 7 digits); ``Relative Time`` ``00:00:12.5561670``.
* Clipboard text (Ctrl+C on selected rows): no header, no quoting, the 7 default columns
  joined by tabs, an empty Detail still leaving its trailing tab.

Times are plain ``int`` nanoseconds since 1970-01-01 on the trace's own wall clock (no
time zone), so 100 ns precision survives; naive :class:`~datetime.datetime` values are
accepted too. Formatting is vectorised with polars, so a million rows take seconds.

Files are written atomically: a temporary file in the target directory, then
:func:`os.replace`, so a crash never leaves a half-written trace under the real name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from traceaudit._atomic import atomic_output
from traceaudit.errors import UsageError
from traceaudit.formats.procmon_text.columns import DEFAULT_COLUMNS

__all__ = [
    "DEFAULT_COLUMNS",
    "SIMULATION_COLUMNS",
    "SUPPORTED_COLUMNS",
    "ProcmonRow",
    "write_procmon_csv",
    "write_clipboard_rows",
    "format_clipboard_rows",
    "atomic_output",
    "to_ns",
    "event_class_of",
    "format_time_of_day",
    "format_date_time",
    "format_duration",
    "format_relative_time",
    "format_iso_time",
    "format_number",
    "format_share_mode",
    "format_detail_createfile",
    "format_detail_rename",
    "format_detail_disposition",
    "format_detail_readwrite",
    "format_detail_query_basic",
    "format_detail_query_standard",
    "format_detail_query_name",
    "format_detail_attribute_tag",
    "format_detail_mapping",
    "format_detail_size",
    "format_detail_process_exit",
]


SIMULATION_COLUMNS: tuple[str, ...] = (*DEFAULT_COLUMNS, "TID", "Date & Time", "Duration")
"""What :meth:`traceaudit.simulation.generate.Simulation.write_csv` writes: the defaults plus the
thread, the date (the only column that carries it) and the duration."""

SUPPORTED_COLUMNS: tuple[str, ...] = (
    *SIMULATION_COLUMNS,
    "Relative Time",
    "Completion Time",
    "Event Class",
)
"""Every column this writer can fill, by Procmon's own column name."""

_NS_PER_S = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS_PER_S
_EPOCH = datetime(1970, 1, 1)
_ROW_FIELDS = (
    "time",
    "process",
    "pid",
    "operation",
    "path",
    "result",
    "detail",
    "tid",
    "duration",
    "event_class",
)


@dataclass(frozen=True, slots=True)
class ProcmonRow:
    """One Procmon event as the writer needs it.

    ``time`` is nanoseconds since 1970-01-01 on the trace's own (local, zone-less) clock;
    Procmon's precision is 100 ns. ``duration`` is nanoseconds or ``None`` (an event still
    pending when the capture stopped: Procmon leaves the field empty). ``event_class``
    (``File System``, ``Registry``…) is derived from the operation when ``None``.
    """

    time: int
    process: str
    pid: int
    operation: str
    path: str
    result: str
    detail: str = ""
    tid: int | None = None
    duration: int | None = None
    event_class: str | None = None


# --------------------------------------------------------------------------- time values


def to_ns(value: int | datetime) -> int:
    """Nanoseconds since 1970-01-01 for an ``int`` (returned as is) or a naive datetime.

    Aware datetimes are refused: Procmon's clock has no zone, so converting one would
    silently pick a zone for the caller.
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise UsageError(
                f"time {value.isoformat()} has a time zone; Procmon times are zone-less "
                "wall-clock times: pass a naive datetime"
            )
        return ((value - _EPOCH) // timedelta(microseconds=1)) * 1000
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"time must be int nanoseconds or a datetime, not {value!r}")
    return value


def _duration_ns(value: int | timedelta | None) -> int | None:
    """Nanoseconds for a duration given as int ns, a timedelta, or None (pending)."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        return (value // timedelta(microseconds=1)) * 1000
    raise UsageError(f"duration must be int nanoseconds, a timedelta or None, not {value!r}")


def _split_ns(ns: int) -> tuple[date, int, int, int, int]:
    """(date, hour, minute, second, 100-ns fraction) of a non-negative ns timestamp."""
    if ns < 0:
        raise UsageError(f"time {ns} ns is before 1970-01-01; Procmon times cannot be")
    days, in_day = divmod(ns, _NS_PER_DAY)
    seconds, sub = divmod(in_day, _NS_PER_S)
    hour, rest = divmod(seconds, 3600)
    minute, second = divmod(rest, 60)
    return date(1970, 1, 1) + timedelta(days=days), hour, minute, second, sub // 100


def _clock(hour: int, minute: int, second: int, clock_12h: bool) -> str:
    """``7:05:09 AM`` (12 h, hour unpadded) or ``07:05:09`` (24 h)."""
    if clock_12h:
        h12 = hour % 12 or 12
        return f"{h12}:{minute:02d}:{second:02d} {'AM' if hour < 12 else 'PM'}"
    return f"{hour:02d}:{minute:02d}:{second:02d}"


def format_time_of_day(ns: int, clock_12h: bool = True) -> str:
    """Procmon's ``Time of Day``: ``7:19:37.0147934 AM`` or, 24 h, ``19:19:37.0147934``.

    Midnight is ``12:…AM`` and noon ``12:…PM`` on the 12 h clock. The 24 h form pads the
    hour to two digits (``07:…``) as the common 24 h Windows locales do.
    """
    _, hour, minute, second, frac = _split_ns(ns)
    clock = _clock(hour, minute, second, clock_12h)
    if clock_12h:
        hms, suffix = clock.rsplit(" ", 1)
        return f"{hms}.{frac:07d} {suffix}"
    return f"{clock}.{frac:07d}"


def format_date_time(ns: int, clock_12h: bool = True) -> str:
    """Procmon's ``Date & Time``: ``7/31/2020 7:19:37 AM`` (US date, no fraction)."""
    day, hour, minute, second, _ = _split_ns(ns)
    return f"{day.month}/{day.day}/{day.year} {_clock(hour, minute, second, clock_12h)}"


def format_duration(ns: int | None) -> str:
    """Procmon's ``Duration`` in seconds with 7 digits (``0.0000112``); ``""`` if pending."""
    if ns is None:
        return ""
    ticks = ns // 100
    return f"{ticks // 10_000_000}.{ticks % 10_000_000:07d}"


def format_relative_time(ns: int) -> str:
    """Procmon's ``Relative Time`` (time since the first event): ``00:00:12.5561670``."""
    ticks = ns // 100
    seconds, frac = divmod(ticks, 10_000_000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{frac:07d}"


def format_iso_time(ns: int) -> str:
    """ISO 8601 with 7 fractional digits and no zone: ``2024-07-15T11:27:28.2285886``."""
    day, hour, minute, second, frac = _split_ns(ns)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}.{frac:07d}"


def event_class_of(operation: str) -> str:
    """Procmon's Event Class for an operation name, for sources without the column."""
    if operation.startswith("Reg"):
        return "Registry"
    if operation.startswith(("TCP ", "UDP ")):
        return "Network"
    if operation.startswith(("Process ", "Thread ", "Load Image")):
        return "Process"
    if operation == "Profiling":
        return "Profiling"
    return "File System"


# --------------------------------------------------------------------------- Detail text


def format_number(value: int) -> str:
    """Integers as Procmon prints them in Detail (en-US): ``4,096``."""
    return f"{value:,}"


def format_share_mode(names: Sequence[str]) -> str:
    """``Read, Write, Delete``; no sharing at all prints as ``None``."""
    return ", ".join(names) if names else "None"


def format_detail_createfile(
    access_names: Sequence[str],
    disposition: str,
    options: Sequence[str],
    share_names: Sequence[str],
    open_result: str | None = None,
    *,
    attributes: str = "n/a",
    allocation_size: int | str = "n/a",
    impersonating: str | None = None,
) -> str:
    """CreateFile's Detail, e.g. ``Desired Access: Generic Read, Disposition: Open, …``.

    A failed CreateFile has no ``OpenResult`` (pass ``None``). ``options`` may be empty,
    which Procmon prints as ``Options: , Attributes: …``. ``allocation_size`` is ``n/a``
    for opens of existing files and a number (``0``) for creates.
    """
    alloc = format_number(allocation_size) if isinstance(allocation_size, int) else allocation_size
    parts = [
        f"Desired Access: {', '.join(access_names)}",
        f"Disposition: {disposition}",
        f"Options: {', '.join(options)}",
        f"Attributes: {attributes}",
        f"ShareMode: {format_share_mode(share_names)}",
        f"AllocationSize: {alloc}",
    ]
    if impersonating is not None:
        parts.append(f"Impersonating: {impersonating}")
    if open_result is not None:
        parts.append(f"OpenResult: {open_result}")
    return ", ".join(parts)


def format_detail_rename(target: str, replace_if_exists: bool) -> str:
    """SetRenameInformationFile's Detail: ``ReplaceIfExists: True, FileName: C:\\…``."""
    return f"ReplaceIfExists: {replace_if_exists}, FileName: {target}"


def format_detail_disposition(delete: bool = True) -> str:
    """SetDispositionInformationFile's Detail: ``Delete: True``."""
    return f"Delete: {delete}"


def format_detail_readwrite(
    offset: int,
    length: int,
    *,
    io_flags: Sequence[str] = (),
    priority: str | None = "Normal",
) -> str:
    """ReadFile/WriteFile Detail: ``Offset: 0, Length: 4,096, Priority: Normal``.

    ``io_flags`` adds ``I/O Flags: Non-cached, Paging I/O``; ``priority=None`` drops the
    Priority key, as Procmon does on FAST IO DISALLOWED rows.
    """
    parts = [f"Offset: {format_number(offset)}", f"Length: {format_number(length)}"]
    if io_flags:
        parts.append(f"I/O Flags: {', '.join(io_flags)}")
    if priority is not None:
        parts.append(f"Priority: {priority}")
    return ", ".join(parts)


def format_detail_query_basic(
    creation: int, last_access: int, last_write: int, change: int, attributes: str = "A"
) -> str:
    """QueryBasicInformationFile's Detail; the four times are ns timestamps."""
    stamps = (creation, last_access, last_write, change)
    names = ("CreationTime", "LastAccessTime", "LastWriteTime", "ChangeTime")
    parts = [f"{n}: {format_date_time(t)}" for n, t in zip(names, stamps, strict=True)]
    return ", ".join([*parts, f"FileAttributes: {attributes}"])


def format_detail_query_standard(
    allocation_size: int, end_of_file: int, *, links: int = 1, directory: bool = False
) -> str:
    """QueryStandardInformationFile's Detail (``AllocationSize: 249,856, EndOfFile: …``)."""
    return (
        f"AllocationSize: {format_number(allocation_size)}, "
        f"EndOfFile: {format_number(end_of_file)}, NumberOfLinks: {links}, "
        f"DeletePending: False, Directory: {directory}"
    )


def format_detail_query_name(path: str) -> str:
    """QueryNameInformationFile's Detail: the path without its drive (``Name: \\Users\\…``)."""
    return f"Name: {path[2:] if path[1:2] == ':' else path}"


def format_detail_attribute_tag(attributes: str = "D", reparse_tag: int = 0) -> str:
    """QueryAttributeTagFile's Detail: ``Attributes: D, ReparseTag: 0x0``."""
    return f"Attributes: {attributes}, ReparseTag: {reparse_tag:#x}"


def format_detail_mapping(page_protection: str | None = "PAGE_EXECUTE_READ|PAGE_NOCACHE") -> str:
    """CreateFileMapping's Detail; ``None`` gives the ``SyncTypeOther`` form."""
    if page_protection is None:
        return "SyncType: SyncTypeOther"
    return f"SyncType: SyncTypeCreateSection, PageProtection: {page_protection}"


def format_detail_size(size: int, *, allocation: bool = False) -> str:
    """SetEndOfFileInformationFile's Detail (``EndOfFile: 12,288``), or with
    ``allocation`` SetAllocationInformationFile's (``AllocationSize: 12,288``)."""
    return f"{'AllocationSize' if allocation else 'EndOfFile'}: {format_number(size)}"


def format_detail_process_exit(
    exit_status: int = 0,
    *,
    user_ns: int = 0,
    kernel_ns: int = 0,
    private_bytes: int = 0,
    peak_private_bytes: int = 0,
    working_set: int = 0,
    peak_working_set: int = 0,
) -> str:
    """Process Exit's Detail: ``Exit Status: 0, User Time: 0.0312500 seconds, …``."""

    def seconds(ns: int) -> str:
        return f"{ns // 1_000_000_000}.{ns % 1_000_000_000 // 100:07d}"

    return (
        f"Exit Status: {exit_status}, User Time: {seconds(user_ns)} seconds, Kernel Time: "
        f"{seconds(kernel_ns)} seconds, Private Bytes: {private_bytes:,}, Peak Private Bytes: "
        f"{peak_private_bytes:,}, Working Set: {working_set:,}, Peak Working Set: "
        f"{peak_working_set:,}"
    )


# --------------------------------------------------------------------------- vectorised


def _zfill(expr: pl.Expr, width: int) -> pl.Expr:
    return expr.cast(pl.String).str.zfill(width)


def _clock_expr(ns: pl.Expr, clock_12h: bool, fraction: bool) -> pl.Expr:
    """Polars twin of :func:`format_time_of_day` / the clock half of Date & Time."""
    seconds = (ns // _NS_PER_S) % 86_400
    hour = seconds // 3600
    parts: list[pl.Expr | str] = []
    if clock_12h:
        h12 = pl.when(hour % 12 == 0).then(12).otherwise(hour % 12)
        parts.append(h12.cast(pl.String))
    else:
        parts.append(_zfill(hour, 2))
    parts += [pl.lit(":"), _zfill((seconds // 60) % 60, 2), pl.lit(":"), _zfill(seconds % 60, 2)]
    if fraction:
        parts += [pl.lit("."), _zfill((ns % _NS_PER_S) // 100, 7)]
    if clock_12h:
        parts.append(pl.when(hour < 12).then(pl.lit(" AM")).otherwise(pl.lit(" PM")))
    return pl.concat_str(parts)


def _date_expr(ns: pl.Expr) -> pl.Expr:
    """``M/D/YYYY`` of a ns timestamp column."""
    day = (ns // _NS_PER_DAY).cast(pl.Int32).cast(pl.Date)
    return pl.concat_str(
        [
            day.dt.month().cast(pl.String),
            pl.lit("/"),
            day.dt.day().cast(pl.String),
            pl.lit("/"),
            day.dt.year().cast(pl.String),
        ]
    )


def _seconds_expr(ns: pl.Expr) -> pl.Expr:
    """Polars twin of :func:`format_duration` (null stays null)."""
    ticks = ns // 100
    return pl.concat_str(
        [(ticks // 10_000_000).cast(pl.String), pl.lit("."), _zfill(ticks % 10_000_000, 7)]
    )


def _relative_expr(ns: pl.Expr) -> pl.Expr:
    """Polars twin of :func:`format_relative_time`."""
    ticks = ns // 100
    seconds = ticks // 10_000_000
    return pl.concat_str(
        [
            _zfill(seconds // 3600, 2),
            pl.lit(":"),
            _zfill((seconds // 60) % 60, 2),
            pl.lit(":"),
            _zfill(seconds % 60, 2),
            pl.lit("."),
            _zfill(ticks % 10_000_000, 7),
        ]
    )


def _column_expr(name: str, clock_12h: bool) -> pl.Expr:
    """The expression rendering one Procmon column from the normalised row frame."""
    t = pl.col("time")
    exprs: dict[str, pl.Expr] = {
        "Time of Day": _clock_expr(t, clock_12h, fraction=True),
        "Process Name": pl.col("process"),
        "PID": pl.col("pid").cast(pl.String),
        "Operation": pl.col("operation"),
        "Path": pl.col("path"),
        "Result": pl.col("result"),
        "Detail": pl.col("detail"),
        "TID": pl.col("tid").cast(pl.String),
        "Date & Time": pl.concat_str(
            [_date_expr(t), pl.lit(" "), _clock_expr(t, clock_12h, fraction=False)]
        ),
        "Duration": _seconds_expr(pl.col("duration")),
        "Relative Time": _relative_expr(t - t.min()),
        "Completion Time": pl.when(pl.col("duration").is_null())
        .then(pl.lit(None, pl.String))
        .otherwise(_clock_expr(t + pl.col("duration"), clock_12h, fraction=True)),
        "Event Class": pl.col("event_class"),
    }
    return exprs[name].fill_null("").alias(name)


# --------------------------------------------------------------------------- row input

_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "time": pl.Int64(),
    "process": pl.String(),
    "pid": pl.Int64(),
    "operation": pl.String(),
    "path": pl.String(),
    "result": pl.String(),
    "detail": pl.String(),
    "tid": pl.Int64(),
    "duration": pl.Int64(),
    "event_class": pl.String(),
}


def _row_values(row: ProcmonRow | Mapping[str, Any]) -> tuple[Any, ...]:
    """The writer's 10 fields of one row given as a ProcmonRow or a mapping."""
    if isinstance(row, ProcmonRow):
        values = [getattr(row, f.name) for f in fields(ProcmonRow)]
    else:
        missing = [
            k for k in ("time", "process", "pid", "operation", "path", "result") if k not in row
        ]
        if missing:
            raise UsageError(f"row {dict(row)!r} lacks {', '.join(missing)}")
        values = [row.get(k, "" if k == "detail" else None) for k in _ROW_FIELDS]
    values[0] = to_ns(values[0])
    values[8] = _duration_ns(values[8])
    return tuple(values)


def _rows_frame(rows: Iterable[ProcmonRow | Mapping[str, Any]] | pl.DataFrame) -> pl.DataFrame:
    """Normalise any accepted row input into one frame with :data:`_FRAME_SCHEMA`.

    A polars frame (for instance a simulation's event frame) is used column-wise, which
    is what makes writing a million rows fast; ``time`` may be Int64 ns or Datetime and
    ``duration`` Int64 ns or Duration there.
    """
    if hasattr(rows, "frame") and isinstance(rows.frame, pl.DataFrame):
        rows = rows.frame
    if isinstance(rows, pl.DataFrame):
        frame = rows
        if isinstance(frame.schema.get("time"), pl.Datetime):
            frame = frame.with_columns(pl.col("time").dt.cast_time_unit("ns").cast(pl.Int64))
        if isinstance(frame.schema.get("duration"), pl.Duration):
            frame = frame.with_columns(pl.col("duration").dt.total_nanoseconds())
    else:
        columns = list(zip(*(_row_values(r) for r in rows), strict=False)) or [()] * 10
        frame = pl.DataFrame(dict(zip(_ROW_FIELDS, columns, strict=True)), schema=_FRAME_SCHEMA)
    exprs = []
    for name, dtype in _FRAME_SCHEMA.items():
        if name in frame.columns:
            exprs.append(pl.col(name).cast(dtype))
        else:
            exprs.append(pl.lit("" if name == "detail" else None, dtype=dtype).alias(name))
    frame = frame.select(exprs)
    earliest = frame["time"].min() if frame.height else None
    if isinstance(earliest, int) and earliest < 0:
        raise UsageError("a row's time is before 1970-01-01; Procmon times cannot be")
    return frame.with_columns(
        pl.col("detail").fill_null(""),
        pl.col("event_class").fill_null(_event_class_expr(pl.col("operation"))),
    )


def _event_class_expr(operation: pl.Expr) -> pl.Expr:
    """Polars twin of :func:`event_class_of`."""
    return (
        pl.when(operation.str.starts_with("Reg"))
        .then(pl.lit("Registry"))
        .when(operation.str.starts_with("TCP ") | operation.str.starts_with("UDP "))
        .then(pl.lit("Network"))
        .when(
            operation.str.starts_with("Process ")
            | operation.str.starts_with("Thread ")
            | operation.str.starts_with("Load Image")
        )
        .then(pl.lit("Process"))
        .when(operation == "Profiling")
        .then(pl.lit("Profiling"))
        .otherwise(pl.lit("File System"))
    )


def _check_columns(columns: Sequence[str]) -> None:
    unknown = [c for c in columns if c not in SUPPORTED_COLUMNS]
    if unknown:
        raise UsageError(
            f"cannot write {'column' if len(unknown) == 1 else 'columns'} "
            f"{', '.join(map(repr, unknown))}; "
            f"supported: {', '.join(SUPPORTED_COLUMNS)}"
        )
    if len(set(columns)) != len(columns):
        raise UsageError(f"columns repeat a name: {list(columns)}")
    if not columns:
        raise UsageError("at least one column is needed")


# --------------------------------------------------------------------------- writing


def write_procmon_csv(
    rows: Iterable[ProcmonRow | Mapping[str, Any]] | pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    clock_12h: bool = True,
) -> Path:
    """Write ``rows`` as Procmon's own CSV export to ``path`` (atomically); return the path.

    ``rows`` are :class:`ProcmonRow` objects, mappings with the same keys (``time`` as int
    ns or naive datetime), or a polars frame with those columns. ``columns`` are Procmon
    column names from :data:`SUPPORTED_COLUMNS`, written in the given order. Rows are
    written in the order given (Procmon's own export is in event order).
    """
    columns = tuple(columns)
    _check_columns(columns)
    frame = _rows_frame(rows)
    out = frame.select([_column_expr(c, clock_12h) for c in columns])
    with atomic_output(path) as handle:
        out.write_csv(handle, include_bom=True, quote_style="always", line_terminator="\r\n")
    return Path(path)


def format_clipboard_rows(
    rows: Iterable[ProcmonRow | Mapping[str, Any]] | pl.DataFrame,
    *,
    clock_12h: bool = True,
    newline: str = "\r\n",
) -> str:
    """The text Procmon puts on the clipboard for ``rows``: 7 tab-separated fields a line.

    No header, no quoting (a tab or newline inside a field is copied as is, exactly as
    Procmon does); every line, the last included, ends with ``newline``.
    """
    frame = _rows_frame(rows)
    lines = frame.select(
        pl.concat_str([_column_expr(c, clock_12h) for c in DEFAULT_COLUMNS], separator="\t")
    ).to_series()
    return "".join(line + newline for line in lines)


def write_clipboard_rows(
    rows: Iterable[ProcmonRow | Mapping[str, Any]] | pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    clock_12h: bool = True,
    newline: str = "\r\n",
) -> Path:
    """Write :func:`format_clipboard_rows` text to ``path`` as UTF-8 without BOM (atomic).

    ``newline`` is CRLF as on the Windows clipboard; pass ``"\\n"`` to reproduce text
    that went through a web form (GitHub stores pasted text with LF).
    """
    text = format_clipboard_rows(rows, clock_12h=clock_12h, newline=newline)
    with atomic_output(path) as handle:
        handle.write(text.encode("utf-8"))
    return Path(path)
