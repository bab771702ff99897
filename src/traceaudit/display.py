"""How numbers, durations, times, access masks and share modes are shown to people.

The one set of formatters every face uses (terminal text, HTML, plots, the policy's own
descriptions and notes, warnings): a figure is spelled the same wherever it appears.

* :func:`fmt_ms` — a measured duration in a report: ``0.09 ms``, ``56.8 ms``, ``12.3 s``;
* :func:`fmt_duration` — a compact duration with three significant digits, for schedules,
  labels and notes: ``850 ms``, ``1.5 s``, ``2 min``;
* :func:`plural` — ``1 failure``, ``3 failures``;
* :func:`clock_expr`, :func:`iso_expr` — times from polars at the trace's 100 ns precision
  (converting a ``Datetime("ns")`` to a Python ``datetime`` would drop the last three
  digits), :func:`iso_time` for a Python ``datetime`` with its nanoseconds;
* :func:`share_text`, :func:`access_text` — ShareMode and the sharing-relevant part of an
  access mask, as Procmon's words.
"""

from __future__ import annotations

import math
from datetime import datetime

import polars as pl

from traceaudit.schema import (
    DELETE_BITS,
    READ_BITS,
    SHARE_DELETE,
    SHARE_READ,
    SHARE_WRITE,
    WRITE_BITS,
)

__all__ = [
    "format_expr",
    "fmt_ms",
    "fmt_duration",
    "plural",
    "clock_expr",
    "iso_expr",
    "iso_time",
    "share_text",
    "access_text",
]


def _unknown(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_ms(value: float | None) -> str:
    """A measured duration: ``0.09 ms``, ``56.8 ms``, ``1,789.9 ms``, ``12.3 s``; ``-``."""
    if value is None or _unknown(value):
        return "-"
    if math.isinf(value):
        return "∞"
    if abs(value) >= 10_000:
        return f"{value / 1000:,.1f} s"
    if abs(value) < 1:
        return f"{value:.2g} ms"
    return f"{value:,.1f} ms"


def fmt_duration(value: float | None) -> str:
    """A compact duration, three significant digits: ``850 ms``, ``1.5 s``, ``2 min``."""
    if value is None or _unknown(value):
        return "-"
    if math.isinf(value):
        return "∞"
    if abs(value) < 1:
        return f"{value:.2g} ms"
    if abs(value) < 1_000:
        return f"{value:.3g} ms"
    if abs(value) < 120_000:
        return f"{value / 1_000:.3g} s"
    return f"{value / 60_000:.3g} min"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 failure``, ``1,234 failures`` (``many`` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def format_expr(template: str, *values: pl.Expr | str) -> pl.Expr:
    """Like ``pl.format``: ``{}`` in ``template`` replaced by each value (column names or
    expressions), null when any value is null. Built from ``concat_str``, which every
    polars 2.x engine evaluates (polars 2.0's streaming engine panics on ``pl.format``)."""
    pieces = template.split("{}")
    if len(pieces) != len(values) + 1:
        raise ValueError(
            f"{template!r} has {len(pieces) - 1} placeholders for {len(values)} values"
        )
    parts: list[pl.Expr] = []
    for text, value in zip(pieces, [*values, None], strict=True):
        if text:
            parts.append(pl.lit(text))
        if value is not None:
            column = pl.col(value) if isinstance(value, str) else value
            parts.append(column.cast(pl.String))
    return pl.concat_str(parts)


def _fraction(expr: pl.Expr) -> pl.Expr:
    return (expr.dt.nanosecond() // 100).cast(pl.String).str.zfill(7)


def clock_expr(expr: pl.Expr) -> pl.Expr:
    """``HH:MM:SS.fffffff`` (null stays null)."""
    return format_expr("{}.{}", expr.dt.strftime("%H:%M:%S"), _fraction(expr))


def iso_expr(expr: pl.Expr) -> pl.Expr:
    """``YYYY-MM-DDTHH:MM:SS.fffffff`` (null stays null)."""
    return format_expr("{}.{}", expr.dt.strftime("%Y-%m-%dT%H:%M:%S"), _fraction(expr))


def iso_time(value: datetime | None, nanos: int | None = None) -> str | None:
    """ISO 8601 with the trace's 100 ns precision (7 fractional digits)."""
    if value is None:
        return None
    if nanos is None:
        nanos = value.microsecond * 1000
    return f"{value:%Y-%m-%dT%H:%M:%S}.{nanos // 100:07d}"


def share_text(bits: int | None) -> str:
    """``Read, Write, Delete`` style, as Procmon prints ShareMode; ``?`` when unknown."""
    if bits is None:
        return "?"
    names = [
        n
        for b, n in ((SHARE_READ, "Read"), (SHARE_WRITE, "Write"), (SHARE_DELETE, "Delete"))
        if bits & b
    ]
    return ", ".join(names) if names else "None"


def access_text(mask: int | None) -> str:
    """The sharing-relevant part of an access mask: ``read``, ``write``, ``delete``, or
    ``attributes`` for an attribute-only open; ``?`` when unknown."""
    if mask is None:
        return "?"
    kinds = [
        n
        for bits, n in ((READ_BITS, "read"), (WRITE_BITS, "write"), (DELETE_BITS, "delete"))
        if mask & bits
    ]
    return "+".join(kinds) if kinds else "attributes"
