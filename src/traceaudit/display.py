"""Times as text, from polars expressions, at the trace's own 100 ns precision.

Converting a polars ``Datetime("ns")`` to a Python ``datetime`` drops the last three digits
(it truncates to microseconds), so every face formats times here, in polars: the clock as
Procmon shows it (``11:27:28.2285886``) and ISO 8601 for JSON.
"""

from __future__ import annotations

import polars as pl

__all__ = ["clock_expr", "iso_expr"]


def _fraction(expr: pl.Expr) -> pl.Expr:
    return (expr.dt.nanosecond() // 100).cast(pl.String).str.zfill(7)


def clock_expr(expr: pl.Expr) -> pl.Expr:
    """``HH:MM:SS.fffffff`` (null stays null)."""
    return pl.format("{}.{}", expr.dt.strftime("%H:%M:%S"), _fraction(expr))


def iso_expr(expr: pl.Expr) -> pl.Expr:
    """``YYYY-MM-DDTHH:MM:SS.fffffff`` (null stays null)."""
    return pl.format("{}.{}", expr.dt.strftime("%Y-%m-%dT%H:%M:%S"), _fraction(expr))
