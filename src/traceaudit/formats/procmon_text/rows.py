"""Raw Procmon text columns → the event schema: shared by the CSV and clipboard readers.

Readers only split the input into string columns named after the schema (``tod`` and
``dt`` for the two time columns) and say which rows had the wrong number of fields. This
module does everything else, vectorised: damaged-row accounting (skip, count by reason,
or raise in strict mode), times, PIDs, TIDs, durations, event classes, the Detail columns,
schema conformance and ordering by (time, row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date as Date
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from traceaudit.errors import DamagedRowError
from traceaudit.formats.batches import CHEAP_COLUMNS, select_columns
from traceaudit.formats.procmon_text import kernels
from traceaudit.formats.procmon_text.detail import Operations, submit_detail_columns
from traceaudit.formats.procmon_text.times import (
    PLACEHOLDER_DATE,
    ShapeSample,
    StreamClock,
    TimeAssembly,
    assemble_times,
    parse_date_time,
    parse_durations,
    parse_time_of_day,
)
from traceaudit.schema import DETAIL_COLUMNS, EVENT_SCHEMA, Trace, conform_events

__all__ = ["RawRows", "BatchBuilder", "build_trace", "event_class", "MAX_SKIPPED_LOCATIONS"]

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
_THREADED_ROWS = 20_000
"""Frames shorter than this parse their time columns on the calling thread: handing a
small batch to a thread costs more than it saves."""

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


_EVENT_CLASS = event_class(pl.col("operation"))


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
    frame: pl.DataFrame, shapes: _Shapes | None = None
) -> tuple[
    pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, Callable[[], list[pl.Series]] | None
]:
    """Parse the raw strings side by side: (typed columns, time of day, Date & Time, the
    pending Detail columns).

    The two time columns, the Detail families and the other columns are independent, and
    polars releases the GIL, so they run on threads at once (the time columns of frames
    of :data:`_THREADED_ROWS` rows or more). The Detail, the longest, is returned still
    running (call it to wait for its columns) so that the caller can assemble the times
    meanwhile. ``shapes``: for a batch, what the batches before it decide for the time
    columns (see :class:`_Shapes`).
    """
    submit = _POOL.submit if frame.height >= _THREADED_ROWS else _now
    tod_job = dt_job = None
    if "tod" in frame.columns:
        sample = shapes.tod.add(frame["tod"]) if shapes is not None else None
        tod_job = submit(parse_time_of_day, frame["tod"], sample=sample)
    if "dt" in frame.columns:
        pieces = {} if shapes is None else {"rest_sample": shapes.dt, "previous": shapes.last_dt}
        dt_job = submit(parse_date_time, frame["dt"], **pieces)
        if shapes is not None and frame.height:
            shapes.last_dt = frame["dt"][-1]
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


def _now(fn: Callable[..., pl.DataFrame], /, *args: Any, **kwargs: Any) -> Future[pl.DataFrame]:
    """``fn`` run on the calling thread, its result as a finished future."""
    done: Future[pl.DataFrame] = Future()
    done.set_result(fn(*args, **kwargs))
    return done


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
            f"{PLACEHOLDER_DATE.isoformat()} (a placeholder). Give the capture day to date "
            "them (--date YYYY-MM-DD in the CLI, date= in Python)."
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


_PROBLEM = (
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
)


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
    ).select(_PROBLEM)["reason"]


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
    has_event_class = "event_class" in frame.columns
    compiled = kernels.available()
    # With the compiled loops, PIDs and TIDs are read by a loop (:func:`_integers`) and
    # the Event Class is stripped only when some value may have white space around it.
    strip = has_event_class and (not compiled or kernels.padded(frame["event_class"]) is not False)
    columns = frame.select(_column_exprs(tuple(frame.columns), integers=not compiled, strip=strip))
    extra = [
        _integers(frame[name]) for name in ("pid", "tid") if compiled and name in frame.columns
    ]
    if has_event_class and not strip:
        extra.append(frame["event_class"])
    if "duration" in frame.columns:
        extra.append(parse_durations(frame["duration"]))
    if extra:
        columns = columns.with_columns(extra)
    # The operation takes a few dozen distinct names: its event class is decided once
    # per name.
    per_name = _event_classes(tuple(operations.names.to_list()))
    derived = pl.lit(operations.each_row(per_name))
    if has_event_class:
        given = pl.col("event_class")
        derived = pl.when(given != "").then(given).otherwise(derived)
    return columns.with_columns(derived.alias("event_class"))


@lru_cache(maxsize=64)
def _event_classes(names: tuple[str, ...]) -> pl.Series:
    """The event class of each operation name (traces read one after the other, or in
    batches, have the same names: decided once for them)."""
    return (
        pl.DataFrame({"operation": names}, schema={"operation": pl.String})
        .select(_EVENT_CLASS)
        .to_series()
    )


@cache
def _column_exprs(
    names: tuple[str, ...], *, integers: bool = True, strip: bool = True
) -> tuple[pl.Expr, ...]:
    """:func:`_columns`' expressions for a frame of these raw columns (built once per
    shape: a trace read in batches asks for the same ones every batch); without
    ``integers`` the PID and TID, without ``strip`` the Event Class, are left out (the
    caller reads them)."""
    exprs: list[pl.Expr] = [
        pl.col("process").fill_null(""),
        pl.col("operation").fill_null(""),
        pl.col("path").fill_null(""),
        pl.col("result").fill_null(""),
    ]
    if integers:
        exprs.append(pl.col("pid").str.to_integer(strict=False))
    if "detail" in names:
        exprs.append(pl.col("detail").fill_null(""))
    if "tid" in names and integers:
        exprs.append(pl.col("tid").str.to_integer(strict=False))
    if "event_class" in names and strip:
        exprs.append(pl.col("event_class").str.strip_chars())
    return tuple(exprs)


def _integers(values: pl.Series) -> pl.Series:
    """``values.str.to_integer(strict=False)``: digits through the compiled loop, the
    values it is not sure of through polars."""
    compiled = kernels.integers(values)
    if compiled is None:  # pragma: no cover - called only with the loops available
        return values.str.to_integer(strict=False)
    numbers, status = compiled
    parsed = kernels.arrow_series(numbers, status != 0)
    unsure = np.flatnonzero(status == kernels.UNSURE)
    if len(unsure):
        index = pl.Series(unsure, dtype=pl.UInt32)
        parsed = parsed.scatter(index, values.gather(index).str.to_integer(strict=False))
    return parsed.alias(values.name)


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


# ------------------------------------------------------------------ reading in batches


@dataclass
class _Shapes:
    """What the batches so far decide for how the next one's time columns are parsed, so
    that they parse as in the whole read: the first values of the Time of Day column and
    of the Date & Time column's times (:class:`~.times.ShapeSample`), and the last Date &
    Time (a run of equal values that crosses into the next batch is one run)."""

    tod: ShapeSample = field(default_factory=ShapeSample)
    dt: ShapeSample = field(default_factory=ShapeSample)
    last_dt: str | None = None


@dataclass
class _Piece:
    """One batch's sound rows, typed but not yet timed (see :class:`BatchBuilder`)."""

    typed: pl.DataFrame
    rows: pl.Series
    tod: pl.DataFrame | None
    dt: pl.DataFrame | None
    detail: pl.Series | None


class BatchBuilder:
    """:func:`build_trace` for a trace read in batches (:mod:`traceaudit.formats.batches`).

    A reader hands over each batch of raw rows in source order (:meth:`add`) and says
    when there are no more (:meth:`finish`); each call returns the event frames ready to
    yield. Rows are numbered on from the previous batch, damaged rows are counted (the
    first few located) or raised in strict mode, and times carry the day and hour
    rollovers over (:class:`~.times.StreamClock`). A batch whose times need a later
    batch (rows before the trace's first date) is held back until that batch comes.

    Work not asked for is skipped: ``keep``, when it reads only cheap columns, is applied
    before the Detail is parsed (so only kept rows are), and the Detail is not parsed
    unless ``columns`` asks for its text or a column drawn from it; :attr:`wants_detail`
    tells the reader whether to hand the Detail text over at all. The frames hold
    ``columns`` (all when None) in schema order. With ``columns=None, keep=None`` they
    put together equal ``build_trace``'s events sorted by row, and :meth:`warnings`,
    :attr:`skipped` and :attr:`skipped_rows` equal its own.
    """

    def __init__(
        self,
        name: str,
        *,
        date: Date | None,
        strict: bool,
        columns: Sequence[str] | None,
        keep: pl.Expr | None,
        has_time_of_day: bool = True,
        has_date: bool = False,
    ) -> None:
        self.name = name
        self.date = date
        self.strict = strict
        self.columns = None if columns is None else list(columns)
        wanted = set(EVENT_SCHEMA) if columns is None else set(columns)
        self.keep: pl.Expr | None = None  # applied before the Detail is parsed
        self.late_keep: pl.Expr | None = None  # applied to the whole frame
        if keep is not None:
            reads = set(keep.meta.root_names())
            if reads <= CHEAP_COLUMNS:
                self.keep = keep
            else:
                self.late_keep = keep
                wanted |= reads
        self.wants_detail_text = "detail" in wanted
        self.wants_detail_columns = bool(wanted & set(DETAIL_COLUMNS))
        self.clock = StreamClock(date, has_date, has_time_of_day)
        self.rows = 0  # raw rows so far (the next batch's rows are numbered on)
        self.events = 0  # sound rows so far
        self.counts: dict[str, int] = {}  # damaged rows by reason, in order of first sight
        self.skipped_rows: list[str] = []
        self._held: list[_Piece] = []
        self._shapes = _Shapes()

    def set_time_columns(self, *, has_time_of_day: bool, has_date: bool) -> None:
        """Which time columns the export has, when only the first batch tells (before it
        is added)."""
        assert not self.rows and not self._held
        self.clock = StreamClock(self.date, has_date, has_time_of_day)

    @property
    def wants_detail(self) -> bool:
        """Whether the Detail text is needed at all (for itself or the columns it gives)."""
        return self.wants_detail_text or self.wants_detail_columns

    def add(self, raw: RawRows) -> list[pl.DataFrame]:
        """Take the next batch of raw rows; the event frames now ready, in order."""
        frame = raw.frame
        detail = frame["detail"] if "detail" in frame.columns and self.wants_detail else None
        typed, tod, dt, _ = _parse_columns(frame.drop("detail", strict=False), self._shapes)
        pid = typed["pid"]
        time_ok = _time_ok(tod, dt)
        if raw.field_problem is not None or not time_ok.all() or pid.null_count() > 0:
            problems = _problems(raw, time_ok, pid)
            if problems.null_count() < frame.height:
                keep = self._account(raw, problems)
                typed = typed.filter(keep)
                tod = tod.filter(keep) if tod is not None else None
                dt = dt.filter(keep) if dt is not None else None
                detail = detail.filter(keep) if detail is not None else None
                rows = self._numbers(frame.height).filter(keep)
            else:
                rows = self._numbers(frame.height)
        else:
            rows = self._numbers(frame.height)
        self.rows += frame.height
        self.events += typed.height
        self.clock.observe(
            dt["date"] if dt is not None else None, dt["dt_ns"] if dt is not None else None
        )
        self._held.append(_Piece(typed, rows, tod, dt, detail))
        return self._flush()

    def finish(self) -> list[pl.DataFrame]:
        """No more batches: the frames still held back."""
        self.clock.finished = True
        return self._flush()

    @property
    def skipped(self) -> dict[str, int]:
        """Damaged rows by reason, most frequent first (ties in order of first sight)."""
        ordered = sorted(self.counts.items(), key=lambda item: -item[1])
        return dict(ordered)

    def warnings(self) -> list[str]:
        """What ``build_trace`` would add to the reader's warnings (after :meth:`finish`)."""
        warnings: list[str] = []
        if self.counts:
            warnings.append(_skipped_warning(self.name, self.skipped, tuple(self.skipped_rows)))
        assembly = self.clock.assembly(self.events)
        warnings.extend(
            _time_warnings(self.name, assembly, self.clock.has_date, self.date, self.events)
        )
        if not self.rows:
            warnings.append(f"{self.name}: the export has a header but no events.")
        return warnings

    @property
    def time_precision_lost(self) -> bool:
        assembly = self.clock.assembly(self.events)
        return assembly.precision_lost or assembly.seconds_only

    def _numbers(self, height: int) -> pl.Series:
        return pl.int_range(self.rows + 1, self.rows + height + 1, dtype=pl.UInt32, eager=True)

    def _account(self, raw: RawRows, problems: pl.Series) -> pl.Series:
        """Count a batch's damaged rows (``problems`` not null) and locate the first few
        of the trace; raise on the first in strict mode. Returns the rows to keep."""
        damaged = problems.is_not_null()
        if self.strict:
            index = int(damaged.arg_true()[0])
            line = raw.line_of([index + 1])[0]
            raise DamagedRowError(_damaged_message(raw, index, line, problems[index]))
        room = MAX_SKIPPED_LOCATIONS - len(self.skipped_rows)
        if room > 0:
            first = damaged.arg_true().head(room).to_list()
            self.skipped_rows.extend(f"line {line}" for line in raw.line_of([i + 1 for i in first]))
        reasons = problems.drop_nulls()
        for reason in reasons.unique(maintain_order=True).to_list():
            self.counts[reason] = self.counts.get(reason, 0) + int((reasons == reason).sum())
        return ~damaged

    def _flush(self) -> list[pl.DataFrame]:
        """Time the held batches that can be timed now, in order, into event frames."""
        frames: list[pl.DataFrame] = []
        while self._held:
            piece = self._held[0]
            tod, dt = piece.tod, piece.dt
            if not self.clock.ready(
                tod["has_hour"] if tod is not None else None, dt["date"] if dt is not None else None
            ):
                break
            self._held.pop(0)
            time = self.clock.assemble(
                tod["tod_ns"] if tod is not None else None,
                tod["has_hour"] if tod is not None else None,
                dt["date"] if dt is not None else None,
                dt["dt_ns"] if dt is not None else None,
            )
            frame = self._events(piece, time)
            if frame.height:
                frames.append(frame)
        return frames

    def _events(self, piece: _Piece, time: pl.Series) -> pl.DataFrame:
        """A batch's event frame: ``keep`` on the cheap columns, then the Detail of the
        rows kept, then the late ``keep`` and ``columns``.

        The columns are brought to the schema once, after the Detail, unless ``keep``
        needs them typed before (the Detail columns do not depend on the others' types).
        """
        events = piece.typed.with_columns(row=piece.rows, time=time)
        detail = piece.detail
        if self.keep is not None:
            events = conform_events(events)
            kept = events.with_columns(self.keep.fill_null(False).alias("__keep"))["__keep"]
            events = events.filter(kept)
            detail = detail.filter(kept) if detail is not None else None
        if detail is not None and self.wants_detail:
            detail = detail.fill_null("")
            parsed: list[pl.Series] = []
            if self.wants_detail_columns:
                operations = Operations.of(events["operation"])
                parsed = submit_detail_columns(detail, operations)()
            if self.wants_detail_text:
                parsed.append(detail.alias("detail"))
            events = events.with_columns(parsed)
        events = conform_events(events)
        if self.late_keep is not None:
            events = events.filter(self.late_keep)
        return select_columns(events, self.columns, None)
