"""Retry chains: the same process trying the same operation on the same path again.

A chain starts at a lock failure (a conflict) and takes in every following attempt of the
same (process id, operation, path) that comes within :data:`MAX_GAP` of the one before,
as long as the attempts keep failing; the first attempt that does not fail with a lock
result ends the chain (it is its last attempt, and the chain succeeded if it says
SUCCESS). A lone failure is a chain of one attempt.

Chain columns
-------------
``chain`` (UInt32), ``pid``, ``process``, ``operation``, ``path``, ``error_code`` (of the
first failure), ``attempts``, ``failures``, ``first_row`` / ``last_row``,
``first_failure`` / ``last_attempt`` (Datetime), ``succeeded`` (Boolean), ``delays_ms``
(List[Float64]: gaps between consecutive attempts), ``total_ms`` (first failure → last
attempt), ``first_conflict`` (the conflict id of the first failure), ``same_request``
(the last attempt asked for what the first did: same access, share mode, oplock option and
rename target; an oplock probe's fallback open without the oplock is not the same request,
so its success says nothing about when the probe itself could have succeeded).
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from traceaudit.analysis.rules import LOCK_RESULTS, WIN32_ERROR, path_key
from traceaudit.schema import CREATE_OPTION_BITS

__all__ = ["MAX_GAP", "retry_chains"]

MAX_GAP = timedelta(seconds=30)

# What makes two attempts the same request (beyond process, operation and path).
_REQUEST_FIELDS = ("access_mask", "share_mode", "oplock", "target")


def retry_chains(events: pl.DataFrame, conflict_frame: pl.DataFrame) -> pl.DataFrame:
    """Group the attempts behind each conflict into chains (see the module docstring)."""
    failing_keys = conflict_frame.select("pid", "operation", key=path_key("path")).unique()
    chains = _summarise_chains(_chain_attempts(events, failing_keys)).collect()
    chains = chains.with_columns(chain=pl.int_range(1, pl.len() + 1, dtype=pl.UInt32)).join(
        conflict_frame.select(first_row=pl.col("row"), first_conflict=pl.col("conflict")),
        on="first_row",
        how="left",
    )
    return chains.select(
        "chain",
        "pid",
        "process",
        "operation",
        "path",
        "error_code",
        "attempts",
        "failures",
        "first_row",
        "last_row",
        "first_failure",
        "last_attempt",
        "succeeded",
        pl.col("delays_ms").cast(pl.List(pl.Float64)),
        "total_ms",
        "first_conflict",
        "same_request",
    )


def _chain_attempts(events: pl.DataFrame, failing_keys: pl.DataFrame) -> pl.LazyFrame:
    """The attempts that belong to a chain, numbered by ``chain``, with their request fields.

    Only (pid, operation, folded path) keys that failed with a lock result are looked at.
    An attempt joins the chain of the one before it when that one failed and it came within
    :data:`MAX_GAP`; a failure that does not follow a failure starts a new chain.
    """
    return (
        events.lazy()
        .filter(pl.col("event_class") == "File System")
        .with_columns(key=path_key("path"))
        .join(failing_keys.lazy(), on=["pid", "operation", "key"], how="semi")
        .sort("pid", "operation", "key", "time", "row")
        .with_columns(failed=pl.col("result").is_in(list(LOCK_RESULTS)))
        .with_columns(
            follows_failure=(
                pl.col("failed").shift(1).over("pid", "operation", "key").fill_null(False)
                & (
                    (pl.col("time") - pl.col("time").shift(1).over("pid", "operation", "key"))
                    < MAX_GAP
                )
            ).fill_null(False)
        )
        .with_columns(
            starts=pl.col("failed") & ~pl.col("follows_failure"),
            member=pl.col("failed") | pl.col("follows_failure"),
        )
        .with_columns(chain=pl.col("starts").cast(pl.UInt32).cum_sum())
        .filter(pl.col("member"))
        .with_columns(
            # An open "requiring oplock" (FILE_OPEN_REQUIRING_OPLOCK) is a probe; its fallback
            # open without the flag is a different request.
            oplock=(
                pl.col("create_options").fill_null(0)
                & pl.lit(CREATE_OPTION_BITS["Open Requiring Oplock"], dtype=pl.UInt32)
            )
            != 0,
            target=path_key("rename_target"),
        )
    )


def _summarise_chains(attempts: pl.LazyFrame) -> pl.LazyFrame:
    """One row per chain, in time order: counts, first/last attempt, delays, outcome.

    ``error_code`` is the Win32 error of the first failure (what the application saw).
    """
    ms = 1_000_000.0
    return (
        attempts.group_by("chain")
        .agg(
            pid=pl.col("pid").first(),
            process=pl.col("process").first(),
            operation=pl.col("operation").first(),
            path=pl.col("path").first(),
            first_result=pl.col("result").first(),
            attempts=pl.len().cast(pl.Int64),
            failures=pl.col("failed").sum().cast(pl.Int64),
            first_row=pl.col("row").first(),
            last_row=pl.col("row").last(),
            first_failure=pl.col("time").first(),
            last_attempt=pl.col("time").last(),
            succeeded=pl.col("result").last() == "SUCCESS",
            delays_ms=(pl.col("time").diff().drop_nulls().dt.total_nanoseconds() / ms),
            same_request=pl.all_horizontal(
                pl.col(c).first().eq_missing(pl.col(c).last()) for c in _REQUEST_FIELDS
            ),
        )
        .with_columns(
            error_code=pl.col("first_result").replace_strict(
                WIN32_ERROR, default=None, return_dtype=pl.Int64
            ),
            total_ms=(pl.col("last_attempt") - pl.col("first_failure")).dt.total_nanoseconds() / ms,
        )
        .sort("first_failure", "first_row")
    )
