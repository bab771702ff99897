"""Showing a UTC trace in local time (``--tz``).

PML and ETW captures are stamped in UTC; Procmon's own CSV/XML exports in the capturing
machine's local time, with no zone. ``to_timezone`` converts the events of a UTC trace to
the wall clock of an IANA zone (``Europe/Berlin``) or ``local`` (this machine's zone), so
times line up with the application's own logs. Traces already in local time are left as
they are: their zone is not recorded, so converting them would be a guess.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import polars as pl

from traceaudit.errors import UsageError
from traceaudit.schema import Trace

__all__ = ["to_timezone", "zone_name", "times_in_zone"]


def _zone_name(tz: str) -> str:
    if tz.lower() != "local":
        return tz
    local = datetime.now().astimezone().tzinfo
    key = getattr(local, "key", None)  # zoneinfo zones know their IANA name
    if key:
        return str(key)
    offset = datetime.now().astimezone().utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def to_timezone(trace: Trace, tz: str | None) -> Trace:
    """``trace`` with UTC times shown on the wall clock of ``tz`` (None: unchanged)."""
    if tz is None or trace.clock != "utc":
        return trace
    zone = zone_name(tz)
    exits = trace.process_exits
    if exits is not None:
        exits = times_in_zone(exits, zone, tz, columns=("started", "exited"))
    return dataclasses.replace(
        trace, events=times_in_zone(trace.events, zone, tz), clock=zone, process_exits=exits
    )


def zone_name(tz: str) -> str:
    """The zone ``tz`` names: itself, or this machine's zone for ``local``."""
    return _zone_name(tz)


def times_in_zone(
    events: pl.DataFrame, zone: str, tz: str, *, columns: tuple[str, ...] = ("time",)
) -> pl.DataFrame:
    """``events`` (a UTC trace's, or a batch of them) with times on the clock of ``zone``;
    ``tz`` is what the user asked for, named in the error for an unknown zone. ``columns``:
    the time columns (the events' ``time``; a process exits frame's two)."""
    try:
        return events.with_columns(
            pl.col(*columns)
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(zone)
            .dt.replace_time_zone(None)
        )
    except pl.exceptions.PolarsError:
        raise UsageError(
            f"--tz {tz!r}: unknown time zone; use an IANA name such as Europe/Berlin or "
            "America/New_York, or 'local'."
        ) from None
