"""Procmon time strings to nanoseconds, vectorised with polars.

Procmon prints times in the capturing machine's locale, so one parser has to read all of:

* ``7:19:37.0147934 AM`` (en-US, no leading zero, 7 fractional digits = 100 ns),
* ``19:19:37.0147934`` and ``21:26:00,8032648`` (24 h, comma decimal),
* ``13.06.15,4237903`` (dots between the fields),
* markers before or after the time: ``上午 01:09:44.8222664`` / ``下午``, ``午前``/``午後``,
  ``오전``/``오후``, ``a.m.``/``p.m.`` (12 AM is hour 0 and 12 PM is hour 12),
* ``47:57.9``: Excel re-saves keep only minutes, seconds and one decimal; the hour is
  lost (``has_hour`` is False and the caller warns that ordering is unreliable).

Procmon's own shape (``H:MM:SS.fffffff`` with an optional `` AM``/`` PM``, dot or comma)
takes a fast path: the fraction is sliced from the right of every row and the
``H:MM:SS`` part, which changes once a second, is parsed once per run of equal values.
Anything else, and any row the fast path rejects, goes through one regular expression.
Where numba is available the fast path is a compiled loop over the column's bytes
(:func:`.kernels.time_of_day`), which leaves what it is not sure of to the polars one.
Which path a column takes is decided by its first :data:`FAST_SAMPLE_SIZE` values; a
column read in pieces passes those of the whole column (:class:`ShapeSample`), since the
two paths do not agree on every damaged value (the fast path does not look at the
character before the fraction). ``Date & Time`` is likewise parsed once per run of equal
values.

The expressions are built once, at import: for the small pieces of a trace read in
batches, building them costs as much as running them.

A day is ``PLACEHOLDER_DATE`` when the export has no date (7-column exports, clipboard
rows) and the caller gave none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date as Date

import numpy as np
import polars as pl

from traceaudit.display import format_expr
from traceaudit.formats.procmon_text import kernels

__all__ = [
    "PLACEHOLDER_DATE",
    "FAST_SAMPLE_SIZE",
    "ShapeSample",
    "fast_shape",
    "parse_time_of_day",
    "parse_date_time",
    "parse_duration",
    "parse_durations",
    "TimeAssembly",
    "assemble_times",
]

PLACEHOLDER_DATE = Date(2000, 1, 1)
"""The day given to times that carry no date (documented; override with ``date=``)."""

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_HOUR = 60 * NS_PER_MINUTE
NS_PER_DAY = 24 * NS_PER_HOUR

# AM/PM markers as Windows locales print them (compared lower-cased, dots and spaces removed).
_AM = ("am", "上午", "午前", "오전", "ص")
_PM = ("pm", "下午", "午後", "오후", "م")
_MARKER = r"(?:(?i:a\.?\s?m\.?|p\.?\s?m\.?)|上午|下午|午前|午後|오전|오후|ص|م)"
_TIME_PATTERN = (
    r"^\s*(?:(?P<pre>" + _MARKER + r")\s*)?"
    r"(?:(?P<h>\d{1,2})[:.](?P<m>\d{2})[:.](?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?"
    r"|(?P<m2>\d{2})[:.](?P<s2>\d{2})[.,](?P<f2>\d{1,9}))"
    r"\s*(?P<post>" + _MARKER + r")?\s*$"
)
_FAST_SAMPLE = re.compile(r"^\d{1,2}:\d{2}:\d{2}[.,]\d{7}( [AP]M)?$")
_DATE_PATTERN = (
    r"^\s*(?P<a>\d{1,4})(?P<sep>[/.\-])\s?(?P<b>\d{1,2})[/.\-]\s?(?P<c>\d{1,4})\.?"
    r"(?:[\sT,]+(?P<rest>.*?))?\s*$"
)


FAST_SAMPLE_SIZE = 200
"""How many of a column's first non-null values decide whether it takes the fast path."""


def parse_time_of_day(values: pl.Series, *, sample: Sequence[str] | None = None) -> pl.DataFrame:
    """Parse Procmon "Time of Day" strings.

    Returns a frame with ``tod_ns`` (Int64, nanoseconds since midnight; null when the
    string is not a time) and ``has_hour`` (Boolean; False for Excel's ``mm:ss.f``).
    ``sample``: the values that decide the path (:func:`fast_shape`), when ``values`` is
    a piece of a longer column (default: the first :data:`FAST_SAMPLE_SIZE` non-null of
    ``values``).
    """
    values = values.cast(pl.String)
    if sample is None:
        sample = values.drop_nulls().head(FAST_SAMPLE_SIZE).to_list()
    marker = fast_shape(sample)
    if marker is None:
        return _general_time(values)
    compiled = kernels.time_of_day(values, marker=marker) if kernels.available() else None
    if compiled is not None:
        return _compiled_time(values, marker, *compiled)
    return _polars_time(values, marker)


def _compiled_time(
    values: pl.Series, marker: bool, tod_ns: np.ndarray, status: np.ndarray
) -> pl.DataFrame:
    """The compiled loop's times, with the rows it left to the polars parser
    (:func:`_polars_time`) parsed there: the same frame as that parser's on every row."""
    tod = pl.Series("tod_ns", tod_ns, dtype=pl.Int64)
    has_hour = pl.repeat(True, len(tod), eager=True).alias("has_hour")
    unsure = np.flatnonzero(status == kernels.UNSURE)
    if len(unsure):
        index = pl.Series(unsure, dtype=pl.UInt32)
        slow = _polars_time(values.gather(index), marker)
        tod = tod.scatter(index, slow["tod_ns"])
        has_hour = has_hour.scatter(index, slow["has_hour"])
    return pl.DataFrame([tod, has_hour])


def _polars_time(values: pl.Series, marker: bool) -> pl.DataFrame:
    """The fast path in polars, then the general one for the rows it rejects."""
    tod = _fast_time(values, with_marker=marker)
    out = pl.DataFrame({"tod_ns": tod, "has_hour": pl.repeat(True, len(tod), eager=True)})
    todo = tod.is_null() & values.is_not_null()
    if todo.any():
        index = todo.arg_true()
        slow = _general_time(values.gather(index))
        out = pl.DataFrame(
            {
                "tod_ns": tod.scatter(index, slow["tod_ns"]),
                "has_hour": out["has_hour"].scatter(index, slow["has_hour"]),
            }
        )
    return out


def fast_shape(sample: Sequence[str]) -> bool | None:
    """Whether ``sample`` (a column's first non-null values) is all Procmon's own fixed
    shape: None if not, else "has AM/PM"."""
    if not sample or not all(_FAST_SAMPLE.match(v) for v in sample):
        return None
    markers = {v.endswith("M") for v in sample}
    return markers.pop() if len(markers) == 1 else None


@dataclass
class ShapeSample:
    """The first :data:`FAST_SAMPLE_SIZE` non-null values of a column that comes in
    pieces (in order): what decides :func:`parse_time_of_day`'s path for every piece, as
    for the whole column at once.

    While it is not full, a piece's values are all in it; so either they all have the
    fixed shape (and both paths read them alike) or the sample does not either (and the
    whole column takes the general path too). Once full, it decides as the whole column's
    does.
    """

    values: list[str] = field(default_factory=list)

    def add(self, values: pl.Series) -> list[str]:
        """Take in the next piece's values; the sample that decides for that piece."""
        room = FAST_SAMPLE_SIZE - len(self.values)
        if room > 0:
            self.values.extend(values.drop_nulls().head(room).to_list())
        return self.values


def _fast_exprs(with_marker: bool) -> list[pl.Expr]:
    """The fast path's expressions over ``t``: the fraction, whether the row has the
    shape, and its ``H:MM:SS[ AM]`` clock (marker included: runs of equal clocks break
    where the time or the marker changes)."""
    suffix = 3 if with_marker else 0
    t = pl.col("t")
    clock = t.str.head(-(suffix + 8))
    if with_marker:
        pm, am = t.str.ends_with("PM"), t.str.ends_with("AM")
        clock = pl.when(pm).then(clock + " PM").otherwise(clock + " AM")
        shape_ok = am | pm
    else:
        shape_ok = pl.lit(True)
    return [
        t.str.slice(-(suffix + 7), 7).str.to_integer(strict=False).alias("fraction"),
        ((t.str.len_chars() - suffix).is_between(15, 16) & shape_ok).alias("ok"),
        clock.alias("clock"),
    ]


_FAST = {marker: _fast_exprs(marker) for marker in (False, True)}
_RUN_SECONDS = pl.when(pl.col("has_hour")).then(pl.col("tod_ns"))


def _fast_time(values: pl.Series, *, with_marker: bool) -> pl.Series:
    """``H:MM:SS.fffffff[ AM]``: the 7 fraction digits are sliced from the right of every
    row; the ``H:MM:SS[ AM]`` part changes once a second, so it is parsed once per run of
    equal values. Rows of any other shape come out null (the caller re-parses them).
    """
    parts = pl.DataFrame({"t": values}).select(_FAST[with_marker])
    clock = parts.get_column("clock")
    firsts = clock.rle().struct.field("value")
    seconds = _general_time(firsts).select(_RUN_SECONDS).to_series()
    return (
        parts.select(
            pl.when(pl.col("ok")).then(
                pl.lit(seconds).gather(clock.rle_id()) + pl.col("fraction") * 100
            )
        )
        .to_series()
        .alias("tod_ns")
    )


def _run_starts(run: pl.Series) -> pl.Series:
    """The first row of each run, from ``rle_id`` (0, 0, 1, 1, 1, 2 → 0, 2, 5)."""
    if run.is_empty():
        return run
    stop = int(run[-1]) + 1
    wanted = pl.int_range(stop, dtype=run.dtype, eager=True)  # type: ignore[call-overload]
    positions: pl.Series = run.search_sorted(wanted, side="left")
    return positions


def _general_exprs() -> tuple[pl.Expr, list[pl.Expr], pl.Expr, pl.Expr, list[pl.Expr]]:
    """:func:`_general_time`'s stages: the groups, the numbers, the 12-hour clock, the
    checks, and the results."""
    groups = pl.col("t").str.extract_groups(_TIME_PATTERN).struct.unnest()
    numbers = [
        pl.col("h").str.to_integer(strict=False).alias("hour"),
        pl.coalesce("m", "m2").str.to_integer(strict=False).alias("minute"),
        pl.coalesce("s", "s2").str.to_integer(strict=False).alias("second"),
        pl.coalesce("f", "f2")
        .str.pad_end(9, "0")
        .str.to_integer(strict=False)
        .fill_null(0)
        .alias("fraction"),
        pl.coalesce("pre", "post").str.to_lowercase().str.replace_all(r"[\s.]", "").alias("marker"),
    ]
    hour, minute, second = pl.col("hour"), pl.col("minute"), pl.col("second")
    twelve_hour = pl.col("marker").is_in(list(_AM + _PM)) & hour.is_between(1, 12)
    is_pm = pl.col("marker").is_in(list(_PM))
    clock = (
        pl.when(twelve_hour)
        .then(hour % 12 + pl.when(is_pm).then(12).otherwise(0))
        .otherwise(hour)
        .alias("hour")
    )
    checks = (
        minute.is_not_null() & (hour.fill_null(0) <= 23) & (minute <= 59) & (second <= 59)
    ).alias("ok")
    tod = ((hour.fill_null(0) * 60 + minute) * 60 + second) * NS_PER_SECOND + pl.col("fraction")
    results = [
        pl.when(pl.col("ok")).then(tod).cast(pl.Int64).alias("tod_ns"),
        pl.when(pl.col("ok")).then(hour.is_not_null()).alias("has_hour"),
    ]
    return groups, numbers, clock, checks, results


_GENERAL = _general_exprs()


def _general_time(values: pl.Series) -> pl.DataFrame:
    """Every supported shape, through one regular expression with named groups.

    Staged (groups first, then arithmetic on plain columns) so the expression is matched
    once per row.
    """
    groups, numbers, clock, checks, results = _GENERAL
    g = pl.DataFrame({"t": values}).select(groups)
    return g.select(numbers).with_columns(clock).with_columns(checks).select(results)


def parse_date_time(
    values: pl.Series, *, rest_sample: ShapeSample | None = None, previous: str | None = None
) -> pl.DataFrame:
    """Parse Procmon "Date & Time" strings (``7/31/2020 7:19:37 AM``, ``31.07.2020 7:19:37``).

    Returns ``date`` (Date), ``dt_ns`` (Int64 time of day in whole seconds, null if the
    string has no time) for every row. The day/month order is decided once for the file:
    a 4-digit first field is year-month-day, dots mean day.month.year, and slashes are
    month/day/year unless some first field is above 12. Only the first value of each run
    of equal strings is parsed.

    For a piece of a longer column: ``rest_sample`` gathers the times of the runs so far
    (their path is decided as for the whole column, see :class:`ShapeSample`) and
    ``previous`` is the value before the piece (a run it continues is not counted twice).
    The day/month order is still decided on the piece alone.
    """
    values = values.cast(pl.String)
    if values.len() == 0:
        return pl.DataFrame(schema={"date": pl.Date, "dt_ns": pl.Int64})
    run = values.rle_id()
    continued = previous is not None and values[0] == previous
    parsed = _parse_date_values(
        values.gather(_run_starts(run)), rest_sample=rest_sample, continued=continued
    )
    return parsed[run]


def _date_exprs() -> tuple[pl.Expr, pl.Expr, dict[bool, pl.Expr], pl.Expr]:
    """:func:`_parse_date_values`' expressions: the groups, whether the file is
    day-first, the date (for each order) and the time part."""
    groups = pl.col("v").str.extract_groups(_DATE_PATTERN).struct.unnest()
    a, b, c = (pl.col(name).str.to_integer(strict=False) for name in ("a", "b", "c"))
    year_first = (pl.col("a").str.len_chars() == 4).fill_null(False)  # 2020/07/31, 2020-07-31
    day_first = (~year_first & ((pl.col("sep") == ".") | (a > 12))).any()

    def date(day_first: bool) -> pl.Expr:
        year = pl.when(year_first).then(a).otherwise(c)
        month = pl.when(year_first).then(b).otherwise(b if day_first else a)
        day = pl.when(year_first).then(c).otherwise(a if day_first else b)
        return (
            format_expr(
                "{}-{}-{}",
                pl.when(year < 100).then(year + 2000).otherwise(year),
                month.cast(pl.String).str.zfill(2),
                day.cast(pl.String).str.zfill(2),
            )
            .str.to_date("%Y-%m-%d", strict=False)
            .alias("date")
        )

    # Excel shortens the time to H:MM; read that as hours and minutes, not mm:ss.
    rest = pl.col("rest").str.replace(r"^(\D*\d{1,2}[:.]\d{2})(\D*)$", "${1}:00${2}")
    return groups, day_first, {True: date(True), False: date(False)}, rest.alias("rest")


_DATE = _date_exprs()


_US_DATE_TIME = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})( [AP]M)?", re.ASCII
)
_SMALL = 512
"""Up to this many distinct Date & Time values are read in Python when they all have
Procmon's en-US shape (:func:`_small_dates`): polars' fixed cost per call (regular
expressions compiled per call) is most of the time for a few dozen values."""


def _parse_date_values(
    values: pl.Series, *, rest_sample: ShapeSample | None, continued: bool
) -> pl.DataFrame:
    small = _small_dates(values) if values.len() <= _SMALL else None
    if small is not None:
        parsed, times = small
        if rest_sample is not None:  # what the polars path would add to the sample
            rest_sample.add(times.slice(1) if continued else times)
        return parsed
    return _polars_date_values(values, rest_sample=rest_sample, continued=continued)


def _small_dates(values: pl.Series) -> tuple[pl.DataFrame, pl.Series] | None:
    """:func:`_polars_date_values` of values that all have the shape ``7/31/2020 7:19:37
    AM`` (ASCII digits, a 4-digit year from 1000, the AM/PM marker optional) in Python
    (with their time parts, for the shape sample), or None if some value has not.

    Read as the polars path reads them: month/day unless some first field is above 12;
    an invalid date is null; 12 AM is hour 0, hours 1-12 take the marker, others stay;
    an hour above 23 or minutes or seconds above 59 give a null time."""
    matches = [_US_DATE_TIME.fullmatch(v) if v is not None else None for v in values.to_list()]
    if not all(matches):
        return None
    fields = [m.groups() for m in matches if m is not None]
    if any(int(year) < 1000 for _, _, year, *_ in fields):
        return None
    day_first = any(int(first) > 12 for first, *_ in fields)
    dates: list[Date | None] = []
    times: list[int | None] = []
    for first, second, year, h, m, sec, marker in fields:
        month, day = (int(second), int(first)) if day_first else (int(first), int(second))
        try:
            dates.append(Date(int(year), month, day))
        except ValueError:
            dates.append(None)
        hour, minute, second_ = int(h), int(m), int(sec)
        if marker and 1 <= hour <= 12:
            hour = hour % 12 + (12 if marker == " PM" else 0)
        ok = hour <= 23 and minute <= 59 and second_ <= 59
        times.append(((hour * 60 + minute) * 60 + second_) * NS_PER_SECOND if ok else None)
    rest = pl.Series("rest", [f"{h}:{m}:{sec}{marker or ''}" for *_, h, m, sec, marker in fields])
    parsed = pl.DataFrame(
        {"date": dates, "dt_ns": times}, schema={"date": pl.Date, "dt_ns": pl.Int64}
    )
    return parsed, rest


def _polars_date_values(
    values: pl.Series, *, rest_sample: ShapeSample | None, continued: bool
) -> pl.DataFrame:
    groups, day_first, date, rest = _DATE
    g = pl.DataFrame({"v": values}).select(groups)
    parts = g.select(date[bool(g.select(day_first).item())], rest)
    times = parts.get_column("rest")
    sample = None
    if rest_sample is not None:
        sample = rest_sample.add(times.slice(1) if continued else times)
    dt_ns = parse_time_of_day(times, sample=sample)["tod_ns"]
    return pl.DataFrame({"date": parts.get_column("date"), "dt_ns": dt_ns})


def parse_duration(value: pl.Expr) -> pl.Expr:
    """Procmon "Duration" (seconds, ``0.0000112`` or ``0,0000112``) as Duration(ns), exactly.

    Read as a decimal with 9 places (no float rounding); anything else is null.
    """
    seconds = value.str.strip_chars().str.replace(",", ".", literal=True).str.to_decimal(scale=9)
    # Too long for Int64 nanoseconds (9.2e9 s): null. Values far beyond are nulled before
    # the product, which would overflow the decimal (``1e20``) and raise.
    bounded = pl.when(seconds.abs() < 10**10).then(seconds)
    nanoseconds = (bounded * NS_PER_SECOND).cast(pl.Int64, strict=False)
    return nanoseconds.cast(pl.Duration("ns")).name.keep()


def parse_durations(values: pl.Series) -> pl.Series:
    """:func:`parse_duration` of a column: through the compiled loop where numba is
    available (the values it is not sure of go through polars), else in polars."""
    compiled = kernels.durations(values) if kernels.available() else None
    if compiled is None:
        return _polars_durations(values)
    ns, status = compiled
    parsed = kernels.arrow_series(ns, status != 0)
    unsure = np.flatnonzero(status == kernels.UNSURE)
    if len(unsure):
        index = pl.Series(unsure, dtype=pl.UInt32)
        slow = _polars_durations(values.gather(index))
        parsed = parsed.scatter(index, slow.cast(pl.Int64))
    durations: pl.Series = parsed.cast(pl.Duration("ns"))
    return durations.alias(values.name)


def _polars_durations(values: pl.Series) -> pl.Series:
    frame = pl.DataFrame({"d": values})
    return frame.select(parse_duration(pl.col("d"))).to_series().alias(values.name)


@dataclass(frozen=True)
class TimeAssembly:
    """Event instants plus what the caller must warn about."""

    time: pl.Series
    placeholder_date: bool
    precision_lost: bool
    seconds_only: bool
    days_rolled: int


def assemble_times(
    tod_ns: pl.Series | None,
    has_hour: pl.Series | None,
    date: pl.Series | None,
    dt_ns: pl.Series | None,
    default_date: Date | None,
) -> TimeAssembly:
    """Combine parsed parts (rows in source order, no nulls in the time used) into instants.

    * With a ``Date & Time`` column each row takes its own day (gaps forward-filled); an
      hour lost by Excel is taken from that column's time.
    * Without one, the first row gets ``default_date`` (else :data:`PLACEHOLDER_DATE`) and a
      day is added whenever the time of day goes back by more than 12 hours (midnight).
    * Without an hour (``mm:ss.f``), an hour is added whenever minutes:seconds go back by
      more than 30 minutes, so order survives within the capture.
    * Without ``Time of Day``, ``Date & Time`` alone gives whole seconds.
    """
    placeholder = False
    if date is not None:
        day_ns = date.forward_fill().backward_fill().cast(pl.Datetime("ns")).cast(pl.Int64)
        if day_ns.null_count() == len(day_ns) and len(day_ns):
            placeholder = default_date is None
            day_ns = pl.repeat(_day_ns(default_date), len(day_ns), dtype=pl.Int64, eager=True)
    else:
        placeholder = default_date is None
        n = len(tod_ns) if tod_ns is not None else len(dt_ns)  # type: ignore[arg-type]
        day_ns = pl.repeat(_day_ns(default_date), n, dtype=pl.Int64, eager=True)

    if tod_ns is None:
        assert dt_ns is not None
        time = (day_ns + dt_ns).cast(pl.Datetime("ns"))
        return TimeAssembly(time, placeholder, True, True, 0)

    assert has_hour is not None
    frame = pl.DataFrame({"tod": tod_ns, "has_hour": has_hour, "day": day_ns})
    lost = not bool(has_hour.all())
    if lost:
        if dt_ns is not None and dt_ns.is_not_null().any():
            hour = (dt_ns.forward_fill().backward_fill() // NS_PER_HOUR) * NS_PER_HOUR
            frame = frame.with_columns(
                pl.when(pl.col("has_hour")).then(pl.col("tod")).otherwise(pl.col("tod") + hour)
            )
        else:
            step_back = pl.col("tod").diff() < -30 * NS_PER_MINUTE
            hours = step_back.fill_null(False).cum_sum() * NS_PER_HOUR
            frame = frame.with_columns(
                pl.when(pl.col("has_hour")).then(pl.col("tod")).otherwise(pl.col("tod") + hours)
            )
    rolled = 0
    if date is None:
        step_back = (pl.col("tod").diff() < -12 * NS_PER_HOUR).fill_null(False)
        frame = frame.with_columns(step_back.cum_sum().alias("days"))
        rolled = int(frame["days"].max() or 0)  # type: ignore[arg-type]
        frame = frame.with_columns(pl.col("day") + pl.col("days") * NS_PER_DAY)
    time = frame.select((pl.col("day") + pl.col("tod")).cast(pl.Datetime("ns")))
    return TimeAssembly(time.to_series().alias("time"), placeholder, lost, False, rolled)


def _day_ns(day: Date | None) -> int:
    day = day or PLACEHOLDER_DATE
    return (day - Date(1970, 1, 1)).days * NS_PER_DAY


@dataclass
class StreamClock:
    """:func:`assemble_times` for rows that come in pieces, in source order.

    What crosses pieces is carried: the last time of day (for the midnight and Excel
    hour rollovers), the days and hours added so far, and the last date and Date & Time
    seen (forward fill). What :func:`assemble_times` fills *backwards* (rows before the
    first date, or hours lost before the first Date & Time) needs a later piece: such a
    piece is not :meth:`ready` until one with a value has been :meth:`observe`\\ d or the
    last piece is known (:attr:`finished`); the caller holds it back meanwhile. Pieces
    must be observed in order and assembled in order; the times are exactly those of
    :func:`assemble_times` over all the rows at once.
    """

    default_date: Date | None
    has_date: bool  # the export has a Date & Time column
    has_time_of_day: bool
    finished: bool = False
    lost: bool = False  # some row had no hour (mm:ss.f)
    dated: bool = False  # some row had a date
    _first_day: int | None = None  # the first date of the trace (ns), once observed
    _first_dt: int | None = None  # the first Date & Time's time of day, once observed
    _last_tod: int | None = None
    _last_adjusted: int | None = None
    _last_day: int | None = None
    _last_dt: int | None = None
    _hours: int = 0
    _days: int = 0

    def observe(self, date: pl.Series | None, dt_ns: pl.Series | None) -> None:
        """Note the first date and Date & Time of a piece not yet assembled."""
        if date is not None and self._first_day is None:
            days = _date_ns(date).drop_nulls()
            if len(days):
                self._first_day = int(days[0])
                self.dated = True
        if dt_ns is not None and self._first_dt is None:
            values = dt_ns.drop_nulls()
            if len(values):
                self._first_dt = int(values[0])

    def ready(self, has_hour: pl.Series | None, date: pl.Series | None) -> bool:
        """Whether a piece (observed) can be assembled now."""
        if self.finished or not (self.has_date and self.has_time_of_day):
            return True
        assert date is not None and has_hour is not None
        if self._last_day is None and self._first_day is None and len(date):
            return False  # no date yet: its rows take the first one to come
        # Hours lost: taken from Date & Time if any row of the trace has one, else counted.
        return self._first_dt is not None or bool(has_hour.all())

    def assemble(
        self,
        tod_ns: pl.Series | None,
        has_hour: pl.Series | None,
        date: pl.Series | None,
        dt_ns: pl.Series | None,
    ) -> pl.Series:
        """The instants of the next piece (rows in source order), carrying state over."""
        n = len(tod_ns) if tod_ns is not None else len(dt_ns)  # type: ignore[arg-type]
        if date is not None:
            day_ns = self._filled(_date_ns(date), self._last_day, self._first_day)
            if self._first_day is None:
                day_ns = pl.repeat(_day_ns(self.default_date), n, dtype=pl.Int64, eager=True)
            last = _date_ns(date).drop_nulls()
            if len(last):
                self._last_day = int(last[-1])
        else:
            day_ns = pl.repeat(_day_ns(self.default_date), n, dtype=pl.Int64, eager=True)
        if tod_ns is None:
            assert dt_ns is not None
            seconds: pl.Series = (day_ns + dt_ns).cast(pl.Datetime("ns"))
            return seconds.alias("time")

        assert has_hour is not None
        if n and not bool(has_hour.all()):
            self.lost = True
        every_hour = not has_hour.null_count() and bool(has_hour.all())
        frame = pl.DataFrame({"tod": tod_ns, "has_hour": has_hour, "day": day_ns})
        back_hour = _steps_back(frame["tod"], self._last_tod, -30 * NS_PER_MINUTE)
        if not every_hour:  # else no row takes an hour from elsewhere
            if dt_ns is not None and self._first_dt is not None:
                dt_filled = self._filled(dt_ns, self._last_dt, self._first_dt)
                hour = (dt_filled // NS_PER_HOUR) * NS_PER_HOUR
            else:
                # In Int64 (a Boolean's cum_sum is UInt32, where the product overflows).
                hour = (back_hour.cum_sum().cast(pl.Int64) + self._hours) * NS_PER_HOUR
            frame = frame.with_columns(
                pl.when(pl.col("has_hour")).then(pl.col("tod")).otherwise(pl.col("tod") + hour)
            )
        if n:
            self._hours += int(back_hour.sum())
            self._last_tod = int(tod_ns[-1])
        if dt_ns is not None:
            last_dt = dt_ns.drop_nulls()
            if len(last_dt):
                self._last_dt = int(last_dt[-1])
        if date is None:
            back_day = _steps_back(frame["tod"], self._last_adjusted, -12 * NS_PER_HOUR)
            frame = frame.with_columns(
                pl.col("day") + (back_day.cum_sum().cast(pl.Int64) + self._days) * NS_PER_DAY
            )
            if n:
                self._days += int(back_day.sum())
        if n:
            self._last_adjusted = int(frame["tod"][-1])
        time = frame.select((pl.col("day") + pl.col("tod")).cast(pl.Datetime("ns")))
        return time.to_series().alias("time")

    @staticmethod
    def _filled(values: pl.Series, last: int | None, first: int | None) -> pl.Series:
        """Forward fill from ``last`` (the previous pieces' last value), then backward fill
        (the rows before the trace's first value take ``first``)."""
        filled: pl.Series = values.cast(pl.Int64).forward_fill()
        if last is not None:
            filled = filled.fill_null(last)
        filled = filled.backward_fill()
        if first is not None:
            filled = filled.fill_null(first)
        return filled

    def assembly(self, rows: int) -> TimeAssembly:
        """What the trace's times come to, once every piece is assembled (``rows``: rows
        assembled), for the warnings: as :func:`assemble_times` would say."""
        if self.has_date:
            placeholder = self.default_date is None and not self.dated and rows > 0
        else:
            placeholder = self.default_date is None
        if not self.has_time_of_day:
            return TimeAssembly(pl.Series(dtype=pl.Datetime("ns")), placeholder, True, True, 0)
        return TimeAssembly(
            pl.Series(dtype=pl.Datetime("ns")), placeholder, self.lost, False, self._days
        )


def _date_ns(date: pl.Series) -> pl.Series:
    days: pl.Series = date.cast(pl.Datetime("ns")).cast(pl.Int64)
    return days


def _steps_back(tod: pl.Series, last: int | None, limit: int) -> pl.Series:
    """Whether each time of day is more than ``limit`` (negative) before the previous one
    (``last`` for the first row: the previous piece's last)."""
    back = (tod.diff() < limit).fill_null(False)
    if last is not None and len(tod):
        back = back.scatter(0, bool(int(tod[0]) - last < limit))
    return back
