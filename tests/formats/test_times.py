"""Procmon's locale-dependent time strings, and how rows become instants."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from traceaudit.formats import (
    PLACEHOLDER_DATE,
    load_text,
    parse_date_time,
    parse_duration,
    parse_time_of_day,
)
from traceaudit.formats.procmon_text import times

H = 3_600_000_000_000
M = 60_000_000_000
S = 1_000_000_000


def tod(*values: str | None) -> list[int | None]:
    return parse_time_of_day(pl.Series(list(values), dtype=pl.String))["tod_ns"].to_list()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7:19:37.0147934 AM", 7 * H + 19 * M + 37 * S + 14_793_400),
        ("7:19:37.0147934 PM", 19 * H + 19 * M + 37 * S + 14_793_400),
        ("12:00:00.0000001 AM", 100),  # 12 AM is hour 0
        ("12:30:00.5000000 PM", 12 * H + 30 * M + S // 2),  # 12 PM stays 12 (beagle's bug)
        ("11:59:59.9999999 PM", 24 * H - 100),
        ("19:19:37.0147934", 19 * H + 19 * M + 37 * S + 14_793_400),
        ("21:26:00,8032648", 21 * H + 26 * M + 803_264_800),  # comma decimal
        ("13.06.15,4237903", 13 * H + 6 * M + 15 * S + 423_790_300),  # dots between fields
        ("00:00:00.0000000", 0),
        ("7:19:37", 7 * H + 19 * M + 37 * S),  # no fraction
        ("7:19:37.5 AM", 7 * H + 19 * M + 37 * S + S // 2),  # short fraction
        ("上午 01:09:44.8222664", 1 * H + 9 * M + 44 * S + 822_266_400),  # Chinese, before
        ("下午 01:09:44.8222664", 13 * H + 9 * M + 44 * S + 822_266_400),
        ("下午 12:00:00", 12 * H),
        ("上午 12:00:00", 0),
        ("午前 1:02:03", 1 * H + 2 * M + 3 * S),  # Japanese
        ("午後 1:02:03", 13 * H + 2 * M + 3 * S),
        ("오전 12:00:00.0000000", 0),  # Korean
        ("오후 3:00:00.0000000", 15 * H),
        ("3:04:05 a.m.", 3 * H + 4 * M + 5 * S),
        ("3:04:05 p.m.", 15 * H + 4 * M + 5 * S),
        ("3:04:05 p. m.", 15 * H + 4 * M + 5 * S),  # Spanish
        ("01:09:44.8222664 下午", 13 * H + 9 * M + 44 * S + 822_266_400),  # marker after
    ],
)
def test_time_of_day_variants(text: str, expected: int) -> None:
    assert tod(text) == [expected]
    # The same value inside a column of Procmon's own shape goes through the fast path
    # first, and must come out the same.
    assert tod("7:19:37.0147934 AM", text)[1] == expected


def test_fast_path_matches_the_general_parser() -> None:
    values = [
        f"{h}:{m:02d}:{s:02d}.{f:07d} {ap}"
        for h in (12, 1, 9, 11)
        for m in (0, 59)
        for s in (0, 31)
        for f in (0, 1, 9_999_999)
        for ap in ("AM", "PM")
    ]
    fast = tod(*values)
    general = [tod(v, "no")[0] for v in values]  # a bad sample row forces the regex path
    assert fast == general
    assert None not in fast


def test_excel_minutes_seconds_have_no_hour() -> None:
    out = parse_time_of_day(pl.Series(["47:57.9", "48:03.9"]))
    assert out["tod_ns"].to_list() == [47 * M + 57 * S + 900_000_000, 48 * M + 3 * S + 900_000_000]
    assert out["has_hour"].to_list() == [False, False]


@pytest.mark.parametrize(
    "text",
    ["25:99:00", "24:00:00.0000000", "7:60:00", "13:00", "garbage", "", "7:19:37.0147934 XM"],
)
def test_unreadable_times_are_null(text: str) -> None:
    assert tod(text) == [None]
    assert tod("7:19:37.0147934 AM", text)[1] is None


@pytest.mark.parametrize(
    ("text", "day", "seconds"),
    [
        ("7/31/2020 7:19:37 AM", date(2020, 7, 31), 7 * 3600 + 19 * 60 + 37),
        ("7/31/2020 12:05:00 AM", date(2020, 7, 31), 5 * 60),
        ("31.07.2020 19:19:37", date(2020, 7, 31), 19 * 3600 + 19 * 60 + 37),
        ("2020/07/31 上午 7:19:37", date(2020, 7, 31), 7 * 3600 + 19 * 60 + 37),
        ("2020-07-31 19:19:37", date(2020, 7, 31), 19 * 3600 + 19 * 60 + 37),
        ("31/07/2020 19:19", date(2020, 7, 31), 19 * 3600 + 19 * 60),  # day > 12: D/M/Y
        ("7/31/20 1:00:00 PM", date(2020, 7, 31), 13 * 3600),
    ],
)
def test_date_and_time_column(text: str, day: date, seconds: int) -> None:
    out = parse_date_time(pl.Series([text]))
    assert out["date"].to_list() == [day]
    assert out["dt_ns"].to_list() == [seconds * S]


def test_date_order_is_decided_for_the_whole_column() -> None:
    out = parse_date_time(pl.Series(["12/07/2020 10:00", "13/07/2020 10:00"]))
    assert out["date"].to_list() == [date(2020, 7, 12), date(2020, 7, 13)]


def test_duration() -> None:
    values = pl.DataFrame({"d": ["0.0000112", "168,7987784", "3", "", None, "x"]})
    out = values.select(parse_duration(pl.col("d")))["d"].to_list()
    assert out == [
        timedelta(microseconds=11.2),
        timedelta(seconds=168, microseconds=798778.4),
        timedelta(seconds=3),
        None,
        None,
        None,
    ]
    exact = values.select(parse_duration(pl.col("d")).cast(pl.Int64))["d"].to_list()
    assert exact[:2] == [11_200, 168_798_778_400]


def rows(*times: str) -> str:
    return "".join(f"{t}\tx.exe\t1\tCloseFile\tC:\\f\tSUCCESS\t\n" for t in times)


def test_midnight_rollover_adds_a_day() -> None:
    trace = load_text(rows("11:59:59.9000000 PM", "12:00:00.1000000 AM", "12:00:01.0000000 AM"))
    assert trace.events["time"].to_list() == [
        datetime(2000, 1, 1, 23, 59, 59, 900000),
        datetime(2000, 1, 2, 0, 0, 0, 100000),
        datetime(2000, 1, 2, 0, 0, 1),
    ]


def test_small_steps_back_are_not_a_rollover() -> None:
    trace = load_text(rows("10:00:00.5000000", "10:00:00.4000000", "09:59:00.0000000"))
    assert trace.events["time"].dt.date().unique().to_list() == [date(2000, 1, 1)]
    # Events are sorted by time; row keeps the source order.
    assert trace.events["row"].to_list() == [3, 2, 1]


def test_date_argument_replaces_the_placeholder() -> None:
    trace = load_text(rows("7:19:37.0147934 AM"), date=date(2024, 7, 15))
    assert trace.events["time"].to_list() == [datetime(2024, 7, 15, 7, 19, 37, 14793)]
    assert not any("placeholder" in w for w in trace.warnings)
    default = load_text(rows("7:19:37.0147934 AM"))
    assert default.events["time"].dt.date().to_list() == [PLACEHOLDER_DATE]
    assert any("placeholder" in w for w in default.warnings)


def test_hundred_nanoseconds_are_kept() -> None:
    trace = load_text(rows("7:19:37.0147934 AM", "7:19:37.0147935 AM"))
    ns = trace.events["time"].cast(pl.Int64).to_list()
    assert ns[1] - ns[0] == 100


def test_date_and_time_column_gives_each_row_its_day() -> None:
    csv = (
        '"Time of Day","Process Name","PID","Operation","Path","Result","Detail","Date & Time"\r\n'
        '"11:59:59.9000000 PM","a.exe","1","CloseFile","C:\\f","SUCCESS","","7/31/2020 11:59:59 PM"\r\n'
        '"12:00:00.1000000 AM","a.exe","1","CloseFile","C:\\f","SUCCESS","","8/1/2020 12:00:00 AM"\r\n'
    )
    trace = load_text(csv, date=date(1999, 1, 1))
    assert trace.events["time"].to_list() == [
        datetime(2020, 7, 31, 23, 59, 59, 900000),
        datetime(2020, 8, 1, 0, 0, 0, 100000),
    ]
    assert any("was not used" in w for w in trace.warnings)


def test_excel_hour_comes_from_date_and_time() -> None:
    csv = (
        "Time of Day,Process Name,PID,Operation,Path,Result,Detail,Date & Time\n"
        "59:59.9,a.exe,1,CloseFile,C:\\f,SUCCESS,,7/31/2020 7:59\n"
        "00:00.1,a.exe,1,CloseFile,C:\\f,SUCCESS,,7/31/2020 8:00\n"
    )
    trace = load_text(csv)
    assert trace.time_precision_lost
    assert trace.events["time"].to_list() == [
        datetime(2020, 7, 31, 7, 59, 59, 900000),
        datetime(2020, 7, 31, 8, 0, 0, 100000),
    ]


def test_excel_minutes_wrap_to_the_next_hour() -> None:
    csv = (
        "Time of Day,Process Name,PID,Operation,Path,Result,Detail\n"
        "59:59.9,a.exe,1,CloseFile,C:\\f,SUCCESS,\n"
        "00:00.1,a.exe,1,CloseFile,C:\\f,SUCCESS,\n"
    )
    trace = load_text(csv)
    assert trace.time_precision_lost
    assert any("unreliable" in w for w in trace.warnings)
    assert trace.events["time"].to_list() == [
        datetime(2000, 1, 1, 0, 59, 59, 900000),
        datetime(2000, 1, 1, 1, 0, 0, 100000),
    ]


def test_date_and_time_alone_gives_whole_seconds() -> None:
    csv = (
        '"Date & Time","Process Name","PID","Operation","Path","Result"\r\n'
        '"7/31/2020 7:19:37 AM","a.exe","1","CloseFile","C:\\f","SUCCESS"\r\n'
    )
    trace = load_text(csv)
    assert trace.events["time"].to_list() == [datetime(2020, 7, 31, 7, 19, 37)]
    assert trace.time_precision_lost
    assert trace.events["detail"].to_list() == [None]


# A few dozen Date & Time values of Procmon's en-US shape are read in Python, not polars
# (times._small_dates): both must give the same frame and the same shape sample.

_DATE_TIME = st.builds(
    lambda a, b, year, h, m, s, marker: f"{a}/{b}/{year} {h}:{m:02d}:{s:02d}{marker}",
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from([999, 1000, 1999, 2020, 2024, 9999]),
    st.integers(0, 30),
    st.integers(0, 70),
    st.integers(0, 70),
    st.sampled_from(["", " AM", " PM"]),
)


def _date_paths(values: list[str | None]) -> tuple[pl.DataFrame, pl.DataFrame]:
    series = pl.Series(values, dtype=pl.String)
    small_sample, plain_sample = times.ShapeSample(), times.ShapeSample()
    small = times._parse_date_values(series, rest_sample=small_sample, continued=False)
    plain = times._polars_date_values(series, rest_sample=plain_sample, continued=False)
    assert small_sample.values == plain_sample.values
    return small, plain


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(_DATE_TIME, st.sampled_from(["2/29/2023 1:00:00 AM", "7/31/2020 7:19:37 am"])),
        min_size=1,
        max_size=20,
    )
)
def test_small_date_time_columns_read_as_in_polars(values: list[str | None]) -> None:
    small, plain = _date_paths(values)
    assert_frame_equal(small, plain)


def test_small_date_time_path_is_taken_for_procmon_shapes() -> None:
    values = ["7/31/2020 7:19:37 AM", "13/01/2021 12:00:00 PM", "1/2/2020 0:00:00"]
    assert times._small_dates(pl.Series(values)) is not None
    assert times._small_dates(pl.Series([*values, "31.07.2020 7:19:37"])) is None
    small, plain = _date_paths(values)
    assert_frame_equal(small, plain)
    # Day first (13 > 12): 7/31 is no date, 1/2 is 1 February.
    assert small["date"].to_list() == [None, date(2021, 1, 13), date(2020, 2, 1)]
