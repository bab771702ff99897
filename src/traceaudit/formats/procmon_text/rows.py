"""Raw Procmon text columns → the event schema: shared by the CSV and clipboard readers.

Readers only split the input into string columns named after the schema (``tod`` and
``dt`` for the two time columns) and say which rows had the wrong number of fields. This
module does everything else, vectorised: damaged-row accounting (skip, count by reason,
or raise in strict mode), times, PIDs, TIDs, durations, event classes, the Detail columns,
schema conformance and ordering by (time, row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path

import polars as pl

from traceaudit.errors import DamagedRowError
from traceaudit.formats.procmon_text.detail import Operations, submit_detail_columns
from traceaudit.formats.procmon_text.times import (
    PLACEHOLDER_DATE,
    TimeAssembly,
    assemble_times,
    parse_date_time,
    parse_duration,
    parse_time_of_day,
)
from traceaudit.schema import Trace, conform_events

__all__ = ["RawRows", "build_trace", "event_class", "MAX_SKIPPED_LOCATIONS"]

MAX_SKIPPED_LOCATIONS = 5

WRONG_FIELDS = "wrong field count"
UNBALANCED_QUOTES = "unbalanced quotes"
MISPLACED_QUOTES = "misplaced quotes"
NUL_BYTES = "NUL bytes"
BAD_TIME = "unreadable time"
BAD_PID = "unreadable PID"

# RawRows.field_problem → the reason a row is counted under in Trace.skipped.
_FIELD_REASONS = {
    "more": WRONG_FIELDS,
    "fewer": WRONG_FIELDS,
    "quotes": UNBALANCED_QUOTES,
    "misquoted": MISPLACED_QUOTES,
    "nul": NUL_BYTES,
}

# The days a nanosecond timestamp can hold (1677-09-21 to 2262-04-11), in whole years.
_FIRST_DAY = Date(1678, 1, 1)
_LAST_DAY = Date(2261, 12, 31)

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="traceaudit-times")

_PROCESS_OPERATIONS = (
    "Process Start",
    "Process Exit",
    "Process Create",
    "Thread Create",
    "Thread Exit",
    "Load Image",
)


@dataclass
class RawRows:
    """What a reader hands over: string columns in source order and how to locate rows.

    ``frame`` has String columns among ``tod``, ``dt``, ``process``, ``pid``,
    ``operation``, ``path``, ``result``, ``detail``, ``tid``, ``duration`` and
    ``event_class``. ``field_problem`` is null for a well-formed row, else what is wrong
    with it: ``"more"`` or ``"fewer"`` (fields than ``shape`` says, e.g. "the header's 7
    columns"), ``"quotes"`` (a line whose quotes do not pair up: a quote missing, replaced
    or stray, or a line cut inside a quoted field), ``"misquoted"`` (quotes that pair up
    but are misplaced) or ``"nul"`` (NUL bytes: binary junk); a row the reader could not
    split into fields at all has null fields. ``line_of`` maps 1-based data-row
    numbers to the line numbers quoted in messages; it is only called when something is
    damaged.
    """

    frame: pl.DataFrame
    name: str
    source: Path | None
    format: str
    shape: str
    line_of: Callable[[Sequence[int]], list[int]]
    field_problem: pl.Series | None = None
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False


def event_class(operation: pl.Expr) -> pl.Expr:
    """Procmon's Event Class derived from the operation name (for exports without it)."""
    return (
        pl.when(operation.str.starts_with("Reg"))
        .then(pl.lit("Registry"))
        .when(operation == "Process Profiling")
        .then(pl.lit("Profiling"))
        .when(operation.is_in(_PROCESS_OPERATIONS))
        .then(pl.lit("Process"))
        .when(operation.str.starts_with("TCP ") | operation.str.starts_with("UDP "))
        .then(pl.lit("Network"))
        .otherwise(pl.lit("File System"))
    )


def build_trace(raw: RawRows, *, date: Date | None, strict: bool) -> Trace:
    """Normalise a reader's raw rows into a :class:`~traceaudit.schema.Trace`."""
    frame = raw.frame
    warnings = list(raw.warnings)
    typed, tod, dt, detail = _parse_columns(frame)
    pid = typed["pid"]
    time_ok = _time_ok(tod, dt)
    damaged_rows = raw.field_problem is not None or not time_ok.all() or pid.null_count() > 0
    # With every row sound, the times are assembled while the Detail is still being parsed.
    assembly = None if damaged_rows else _assemble(tod, dt, date)
    if detail is not None:
        typed = typed.with_columns(detail())

    skipped: dict[str, int] = {}
    skipped_rows: tuple[str, ...] = ()
    problems = _problems(raw, time_ok, pid) if damaged_rows else None
    if problems is not None and problems.null_count() < frame.height:
        keep, skipped, skipped_rows = _skip_damaged(raw, problems, strict)
        warnings.append(_skipped_warning(raw.name, skipped, skipped_rows))
        typed = typed.filter(keep)
        tod = tod.filter(keep) if tod is not None else None
        dt = dt.filter(keep) if dt is not None else None
        rows = pl.int_range(1, keep.len() + 1, dtype=pl.UInt32, eager=True).filter(keep)
    else:
        rows = pl.int_range(1, frame.height + 1, dtype=pl.UInt32, eager=True)

    if assembly is None:
        assembly = _assemble(tod, dt, date)
    warnings.extend(_time_warnings(raw.name, assembly, dt is not None, date, typed.height))

    events = conform_events(typed.with_columns(row=rows, time=assembly.time))
    if events.height and not events["time"].is_sorted():
        events = events.sort(["time", "row"], maintain_order=True)
    if not raw.frame.height:
        warnings.append(f"{raw.name}: the export has a header but no events.")
    return Trace(
        events=events,
        format=raw.format,
        source=raw.source,
        clock="local",
        warnings=tuple(warnings),
        skipped=skipped,
        skipped_rows=skipped_rows,
        time_precision_lost=assembly.precision_lost or assembly.seconds_only,
        truncated=raw.truncated,
    )


def _parse_columns(
    frame: pl.DataFrame,
) -> tuple[
    pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, Callable[[], list[pl.Series]] | None
]:
    """Parse the raw strings side by side: (typed columns, time of day, Date & Time, the
    pending Detail columns).

    The two time columns, the Detail families and the other columns are independent, and
    polars releases the GIL, so they run on threads at once. The Detail, the longest, is
    returned still running (call it to wait for its columns) so that the caller can
    assemble the times meanwhile.
    """
    tod_job = _POOL.submit(parse_time_of_day, frame["tod"]) if "tod" in frame.columns else None
    dt_job = _POOL.submit(parse_date_time, frame["dt"]) if "dt" in frame.columns else None
    operations = Operations.of(frame["operation"].fill_null(""))
    detail = (
        submit_detail_columns(frame["detail"].fill_null(""), operations)
        if "detail" in frame.columns
        else None
    )
    typed = _columns(frame, operations)
    tod = tod_job.result() if tod_job is not None else None
    dt = dt_job.result() if dt_job is not None else None
    if dt is not None:
        # A damaged year (``7/15/202``) parses, but no nanosecond time can hold it: it is
        # no date, like one that does not parse.
        dt = dt.with_columns(
            pl.when(pl.col("date").is_between(_FIRST_DAY, _LAST_DAY)).then(pl.col("date"))
        )
    return typed, tod, dt, detail


def _time_ok(tod: pl.DataFrame | None, dt: pl.DataFrame | None) -> pl.Series:
    """Which rows have a readable time: the time of day when the export has one, else a
    Date & Time with both its date and its time."""
    if tod is not None:
        return tod["tod_ns"].is_not_null()
    assert dt is not None
    return dt["dt_ns"].is_not_null() & dt["date"].is_not_null()


def _skip_damaged(
    raw: RawRows, problems: pl.Series, strict: bool
) -> tuple[pl.Series, dict[str, int], tuple[str, ...]]:
    """Account for the damaged rows (``problems`` not null): raise on the first in strict
    mode, else (rows to keep, count by reason, the first few locations) for the report."""
    damaged = problems.is_not_null()
    first = damaged.arg_true().head(MAX_SKIPPED_LOCATIONS).to_list()
    lines = raw.line_of([i + 1 for i in first])
    if strict:
        raise DamagedRowError(_damaged_message(raw, first[0], lines[0], problems[first[0]]))
    counts = problems.drop_nulls().value_counts(sort=True)
    skipped = dict(zip(counts[:, 0].to_list(), counts[:, 1].to_list(), strict=True))
    skipped_rows = tuple(f"line {line}" for line in lines)
    return ~damaged, skipped, skipped_rows


def _skipped_warning(name: str, skipped: dict[str, int], skipped_rows: tuple[str, ...]) -> str:
    """The warning that rows were skipped: how many, why, and where the first ones are."""
    total = sum(skipped.values())
    reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.items())
    return (
        f"{name}: skipped {total} damaged row{'s' if total != 1 else ''} ({reasons}); "
        f"first at {', '.join(skipped_rows)}. Use strict mode to stop at the first one."
    )


def _time_warnings(
    name: str, assembly: TimeAssembly, has_dt: bool, date: Date | None, events: int
) -> list[str]:
    """What the reader must say about the times: a given date left unused, a placeholder
    date, whole seconds only, or minutes:seconds only (an Excel re-save)."""
    warnings: list[str] = []
    if has_dt and date is not None:
        warnings.append(
            f"{name}: the export has a Date & Time column, so the date given "
            f"({date.isoformat()}) was not used."
        )
    if assembly.placeholder_date and events:
        warnings.append(
            f"{name}: the export has no Date & Time column, so events are dated "
            f"{PLACEHOLDER_DATE.isoformat()} (a placeholder). Pass the capture day "
            "(date=, --date YYYY-MM-DD) to date them."
        )
    if assembly.seconds_only and events:
        warnings.append(
            f"{name}: no Time of Day column, so times come from Date & Time in whole "
            "seconds: the order within a second and lock windows are unreliable. Export "
            "again from Process Monitor with the Time of Day column."
        )
    elif assembly.precision_lost:
        hour = "taken from Date & Time" if has_dt else "unknown (counted from 0)"
        warnings.append(
            f"{name}: times are minutes:seconds only (mm:ss.f, as Excel re-saves them); "
            f"the hour is {hour} and only tenths of seconds remain, so event order and lock "
            "windows are unreliable. Export the CSV again from Process Monitor and do not "
            "re-save it in Excel."
        )
    return warnings


def _problems(raw: RawRows, time_ok: pl.Series, pid: pl.Series) -> pl.Series:
    """Each row's damage (null for a sound row): its shape (fields, quotes, NUL bytes),
    then its time, then its PID."""
    return pl.DataFrame(
        {
            "fields": raw.field_problem
            if raw.field_problem is not None
            else pl.repeat(None, raw.frame.height, dtype=pl.String, eager=True),
            "time_ok": time_ok,
            "pid_ok": pid.is_not_null(),
        }
    ).select(
        pl.when(pl.col("fields").is_not_null())
        .then(
            pl.col("fields").replace_strict(
                _FIELD_REASONS, default=WRONG_FIELDS, return_dtype=pl.String
            )
        )
        .when(~pl.col("time_ok"))
        .then(pl.lit(BAD_TIME))
        .when(~pl.col("pid_ok"))
        .then(pl.lit(BAD_PID))
        .alias("reason")
    )["reason"]


def _assemble(tod: pl.DataFrame | None, dt: pl.DataFrame | None, date: Date | None) -> TimeAssembly:
    return assemble_times(
        tod["tod_ns"] if tod is not None else None,
        tod["has_hour"] if tod is not None else None,
        dt["date"] if dt is not None else None,
        dt["dt_ns"] if dt is not None else None,
        date,
    )


def _columns(frame: pl.DataFrame, operations: Operations) -> pl.DataFrame:
    """Every schema column but ``row`` and ``time``, from the raw strings, in source order
    (types are finalised by conform_events)."""
    names = frame.columns
    exprs: list[pl.Expr] = [
        pl.col("process").fill_null(""),
        pl.col("pid").str.to_integer(strict=False),
        pl.col("operation").fill_null(""),
        pl.col("path").fill_null(""),
        pl.col("result").fill_null(""),
    ]
    if "detail" in names:
        exprs.append(pl.col("detail").fill_null(""))
    if "tid" in names:
        exprs.append(pl.col("tid").str.to_integer(strict=False))
    if "duration" in names:
        exprs.append(parse_duration(pl.col("duration")))
    if "event_class" in names:
        exprs.append(pl.col("event_class").str.strip_chars())
    columns = frame.select(exprs)
    # The operation takes a few dozen distinct names: its event class is decided once
    # per name.
    derived = pl.lit(
        operations.each_row(pl.select(event_class(pl.lit(operations.names))).to_series())
    )
    if "event_class" in names:
        given = pl.col("event_class")
        derived = pl.when(given != "").then(given).otherwise(derived)
    return columns.with_columns(derived.alias("event_class"))


def _damaged_message(raw: RawRows, index: int, line: int, reason: str) -> str:
    where = f"{raw.name}: line {line}"
    fix = "Fix or delete the row, or read without strict mode to skip damaged rows."
    if reason == UNBALANCED_QUOTES:
        return (
            f"{where}: unbalanced quotes (a quote missing, replaced or stray, or the line "
            f"cut inside a quoted field?). {fix}"
        )
    if reason == MISPLACED_QUOTES:
        return (
            f"{where}: misplaced quotes (text after a closing quote, or a quote inside a "
            f"field that is not doubled?). {fix}"
        )
    if reason == NUL_BYTES:
        return f"{where}: NUL bytes in the row (binary junk: a damaged or overwritten file?). {fix}"
    if reason == WRONG_FIELDS:
        assert raw.field_problem is not None
        more = raw.field_problem[index] == "more"
        return (
            f"{where}: {'more' if more else 'fewer'} fields than {raw.shape} (a stray "
            f"delimiter or quote, or a cut line?). {fix}"
        )
    if reason == BAD_TIME:
        column, value = (
            ("time", raw.frame["tod"][index])
            if "tod" in raw.frame.columns
            else ("Date & Time", raw.frame["dt"][index])
        )
        return (
            f"{where}: cannot read {column} {_quoted(value)} (expected a Procmon time such as "
            f"'7:19:37.0147934 AM' or '19:19:37,0147934'). {fix}"
        )
    value = raw.frame["pid"][index]
    return f"{where}: cannot read PID {_quoted(value)} (expected a whole number). {fix}"


def _quoted(value: str | None) -> str:
    """A raw field for a message: single-quoted, shortened, empty for a missing field."""
    text = value or ""
    return "'" + (text if len(text) <= 60 else text[:57] + "...") + "'"
