"""Hold times: how long after a failure the handles that blocked it let go.

The **hold time** of a conflict is its ``remaining_ms``: from the failed attempt to the close
of the last handle that blocked it at that instant. (How long the *operation* stayed blocked,
which other handles opened meanwhile can prolong, is an episode's blocked time:
:func:`traceaudit.analysis.episodes.blocked_times`.) Conflicts whose holder was still open when the
trace ended are **censored**: the window is at least as long as the rest of the trace, and
is counted as such, never dropped. Percentiles are taken over the uncensored windows and
the censored count is shown beside them.

Only conflicts blocked by handles the capture shows (verdicts ``blocked-by-*``) have a hold
time; oplock probes, mapped sections, and failures whose holder the capture cannot show
have none to time.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from traceaudit.analysis.conflicts import BLOCKED_VERDICTS

__all__ = ["WINDOW_COLUMNS", "window_summary", "window_table"]

WINDOW_COLUMNS = ("count", "censored", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def _stats() -> list[pl.Expr]:
    known = pl.col("remaining_ms").drop_nulls()
    return [
        pl.len().cast(pl.Int64).alias("count"),
        pl.col("censored").sum().cast(pl.Int64).alias("censored"),
        known.quantile(0.5, "linear").alias("p50_ms"),
        known.quantile(0.9, "linear").alias("p90_ms"),
        known.quantile(0.99, "linear").alias("p99_ms"),
        known.max().alias("max_ms"),
    ]


def _timed(conflict_frame: pl.DataFrame) -> pl.DataFrame:
    if "verdict" not in conflict_frame.columns:
        return conflict_frame.filter(pl.col("n_blockers") > 0)
    return conflict_frame.filter(pl.col("verdict").is_in(list(BLOCKED_VERDICTS)))


def window_table(conflict_frame: pl.DataFrame) -> pl.DataFrame:
    """One row for all windows (``blocker`` = ``"all"``), then one per blocking process.

    A conflict is attributed to its *decisive* blocker: the one that closed last (or one
    still open at the end of the trace).
    """
    timed = _timed(conflict_frame)
    overall = timed.select(pl.lit("all").alias("blocker"), *_stats())
    per_process = (
        timed.group_by(pl.col("decisive_process").alias("blocker"))
        .agg(_stats())
        .sort(["count", "blocker"], descending=[True, False])
    )
    return pl.concat([overall, per_process], how="vertical_relaxed")


def window_summary(conflict_frame: pl.DataFrame) -> dict[str, Any]:
    """The window table as plain data: ``{"overall": {...}, "by_process": [{...}, ...]}``."""
    table = window_table(conflict_frame).to_dicts()
    overall, rest = table[0], table[1:]
    overall.pop("blocker")
    return {"overall": overall, "by_process": rest}
