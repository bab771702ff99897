"""Lock episodes: what a retry policy replay needs from the analysis.

An **episode** is the first failure of a retry chain whose failure has a holder in the
trace (verdict ``blocked-by-*``). Later attempts of the same chain are the application's own
retries; they are not new episodes, or a tool that retried a lot would weigh more.

For each episode, :func:`lock_episodes` gives the intervals, relative to the first failure,
during which a new attempt **would fail**: every handle that blocks the operation under the
same rules the conflict analysis uses, including handles that open after the first failure.
An attempt at time t succeeds iff t lies in no interval ``[start_ms, end_ms)``; an interval
with a null ``end_ms`` lasts past the end of the trace (``horizon_ms``), where nothing is
known. When the application's own retry succeeded, the intervals end there: an observed
success outweighs the model of who blocks whom.

Frames
------
``episodes``: ``episode`` (UInt32), ``trace``, ``conflict``, ``chain``, ``process``,
``operation``, ``path``, ``error_code`` (Win32 code the application saw), ``horizon_ms``.
``blocked``: ``episode``, ``start_ms``, ``end_ms`` (nullable).
"""

from __future__ import annotations

import polars as pl

__all__ = ["lock_episodes"]


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
        conflict_frame.filter(pl.col("verdict").str.starts_with("blocked-by-"))
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
            horizon_ms=(pl.col("last") - pl.col("time")).dt.total_nanoseconds() / 1_000_000,
        )
    )
    # Where the application's own retry succeeded, that observation beats the model: the
    # operation was not blocked then, whatever handles were open (an antivirus whose open
    # "requiring an oplock" is refused retries at once without one, and succeeds).
    succeeded_at = (
        chains.filter(pl.col("succeeded"))
        .select("trace", "chain", success_ms=pl.col("total_ms"))
        .join(episodes.select("episode", "trace", "chain"), on=["trace", "chain"], how="inner")
        .select("episode", "success_ms")
    )
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
