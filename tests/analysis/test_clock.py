"""``--tz``: UTC traces shown on a local wall clock; local traces left alone."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from builders import Story
from traceaudit.analysis.clock import to_timezone
from traceaudit.errors import UsageError
from traceaudit.schema import Trace


def utc_trace() -> Trace:
    events = Story().open_(0, 1, r"C:\a").close(5, 1, r"C:\a").events()
    return Trace(events=events, format="procmon-pml", clock="utc")


def test_utc_trace_moves_to_the_zone_wall_clock():
    shown = to_timezone(utc_trace(), "Europe/Berlin")  # July: UTC+2
    assert shown.clock == "Europe/Berlin"
    shift = shown.events["time"] - utc_trace().events["time"]
    assert shift.dt.total_hours().to_list() == [2, 2]


def test_local_traces_and_no_zone_are_left_alone():
    local = dataclasses.replace(utc_trace(), clock="local")
    assert to_timezone(local, "Europe/Berlin") is local
    assert to_timezone(utc_trace(), None).clock == "utc"


def test_local_means_this_machine():
    shown = to_timezone(utc_trace(), "local")
    assert shown.clock != "utc" and shown.events.height == 2
    assert shown.events.schema["time"] == pl.Datetime("ns")


def test_error_unknown_zone():
    with pytest.raises(UsageError) as info:
        to_timezone(utc_trace(), "Mars/Base")
    assert str(info.value) == (
        "--tz 'Mars/Base': unknown time zone; use an IANA name such as Europe/Berlin or "
        "America/New_York, or 'local'."
    )
