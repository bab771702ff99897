"""Lock episodes: what a retry policy replay needs from the analysis.

An **episode** is the first failure of a retry chain whose failure has a blocker in the
trace (verdict ``blocked-by-*``): oplock probes, mapped sections and failures whose holder
the capture cannot show are not episodes. Later attempts of the same chain are the
application's own retries; they are not new episodes, or a tool that retried a lot would
weigh more.

For each episode, :func:`lock_episodes` gives the intervals, relative to the first failure,
during which a new attempt **would fail**: every handle that blocks the operation under the
same rules the conflict analysis uses, including handles that open after the first failure
(candidates, handles the capture cannot show closing, are left out).
An attempt at time t succeeds iff t lies in no interval ``[start_ms, end_ms)``; an interval
with a null ``end_ms`` lasts past the end of the trace (``horizon_ms``), where nothing is
known. When the application's own retry of the same request succeeded, the intervals end
there: an observed success outweighs the model of who blocks whom.

Blocked time
------------
An episode's **blocked time** (:func:`blocked_times`) is how long the operation stayed
blocked: from the first failure until a retry could first have succeeded. It is what a
retry policy must ride out. It differs from a failure's *hold time* (``remaining_ms``: until
the handles present at that instant closed) when other handles open meanwhile: a scanner
that moves on to the next file below a directory keeps its rename blocked after the first
holder let go.

Frames
------
``episodes``: ``episode`` (UInt32), ``trace``, ``conflict``, ``chain``, ``process``,
``operation``, ``path``, ``error_code`` (Win32 code the application saw), ``horizon_ms``.
``blocked``: ``episode``, ``start_ms``, ``end_ms`` (nullable).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from traceaudit.analysis.conflicts import BLOCKED_VERDICTS

__all__ = ["lock_episodes", "blocked_times", "blocked_table"]

BLOCKED_COLUMNS = ("count", "censored", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def lock_episodes(
    conflict_frame: pl.DataFrame,
    blocking: pl.DataFrame,
    chains: pl.DataFrame,
    trace_ends: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Episodes and their blocked intervals (frames stacked with a ``trace`` column).

    ``trace_ends`` has ``trace`` and ``last`` (Datetime): when each trace ends.
    """
    firsts = chains.select("trace", "chain", conflict=pl.col("first_conflict")).drop_nulls(
        "conflict"
    )
    episodes = (
        conflict_frame.filter(pl.col("verdict").is_in(list(BLOCKED_VERDICTS)))
        .join(firsts, on=["trace", "conflict"], how="inner")
        .join(trace_ends, on="trace", how="left")
        .sort("trace", "time", "conflict")
        .select(
            pl.int_range(1, pl.len() + 1, dtype=pl.UInt32).alias("episode"),
            "trace",
            "conflict",
            "chain",
            "process",
            "operation",
            "path",
            "error_code",
            "decisive_process",
            horizon_ms=(pl.col("last") - pl.col("time")).dt.total_nanoseconds() / 1_000_000,
        )
    )
    # Where the application's own retry succeeded, that observation beats the model: the
    # operation was not blocked then, whatever handles were open (an antivirus whose open
    # "requiring an oplock" is refused retries at once without one, and succeeds).
    same = pl.col("same_request") if "same_request" in chains.columns else pl.lit(True)
    succeeded_at = (
        chains.filter(pl.col("succeeded") & same)
        .select("trace", "chain", success_ms=pl.col("total_ms"))
        .join(episodes.select("episode", "trace", "chain"), on=["trace", "chain"], how="inner")
        .select("episode", "success_ms")
    )
    if "candidate" in blocking.columns:
        blocking = blocking.filter(~pl.col("candidate"))
    blocked = (
        blocking.join(
            episodes.select("episode", "trace", "conflict"), on=["trace", "conflict"], how="inner"
        )
        .select("episode", "start_ms", "end_ms")
        .join(succeeded_at, on="episode", how="left")
        .filter(pl.col("success_ms").is_null() | (pl.col("start_ms") < pl.col("success_ms") - 1e-6))
        .with_columns(
            end_ms=pl.when(pl.col("success_ms").is_null())
            .then(pl.col("end_ms"))
            .otherwise(
                pl.min_horizontal(pl.col("end_ms").fill_null(float("inf")), pl.col("success_ms"))
            )
        )
        .select("episode", "start_ms", "end_ms")
        .sort("episode", "start_ms")
    )
    return episodes, blocked


def blocked_times(episodes: pl.DataFrame, blocked: pl.DataFrame) -> pl.DataFrame:
    """Each episode's blocked time: until a retry could first have succeeded.

    Columns: ``trace``, ``episode``, ``conflict``, ``holder`` (the process whose handle
    blocked the first failure and let go last), ``blocked_ms`` (up to the end of the trace
    for a censored episode) and ``censored`` (still blocked when the trace ended).
    """
    schema = {
        "trace": pl.String,
        "episode": pl.UInt32,
        "conflict": pl.UInt32,
        "holder": pl.String,
        "blocked_ms": pl.Float64,
        "censored": pl.Boolean,
    }
    if episodes.is_empty():
        return pl.DataFrame(schema=schema)
    from traceaudit.policy.replay_engine import build_timeline

    tl = build_timeline(episodes, blocked)
    censored = ~np.isfinite(tl.window)
    times = pl.DataFrame(
        {
            "episode": tl.episode,
            "blocked_ms": np.where(censored, tl.horizon, tl.window),
            "censored": censored,
        }
    ).with_columns(pl.col("episode").cast(pl.UInt32))
    return (
        episodes.select(
            "trace", pl.col("episode").cast(pl.UInt32), "conflict", holder="decisive_process"
        )
        .join(times, on="episode", how="left")
        .select([pl.col(n).cast(t) for n, t in schema.items()])
    )


def _stats() -> list[pl.Expr]:
    known = pl.col("blocked_ms").filter(~pl.col("censored"))
    return [
        pl.len().cast(pl.Int64).alias("count"),
        pl.col("censored").sum().cast(pl.Int64).alias("censored"),
        known.quantile(0.5, "linear").alias("p50_ms"),
        known.quantile(0.9, "linear").alias("p90_ms"),
        known.quantile(0.99, "linear").alias("p99_ms"),
        known.max().alias("max_ms"),
    ]


def blocked_table(times: pl.DataFrame) -> pl.DataFrame:
    """Blocked times summarised like hold times: one row for all episodes (``holder`` =
    ``"all"``), then one per holder. Percentiles are over completed episodes; censored ones
    are counted beside them."""
    overall = times.select(pl.lit("all").alias("holder"), *_stats())
    per_holder = (
        times.group_by("holder").agg(_stats()).sort(["count", "holder"], descending=[True, False])
    )
    return pl.concat([overall, per_holder], how="vertical_relaxed")
