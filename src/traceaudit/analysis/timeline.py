"""Per-file timelines: everything that happened to one path (and below it), in order.

This is the view a person reads to understand one failure: every operation on PATH by every
process, with its result, the parts of the Detail that matter (access, share mode, rename
target), its duration, and the handle it belongs to.

An event belongs to the handle of the same process on the same path that was open at that
moment and opened most recently (a CreateFile to the handle it opened, a CloseFile to the
one it closed); a failed CreateFile opened nothing and belongs to none. With ETW's file objects this is exact; with Procmon it follows the pairing
rule of :mod:`traceaudit.analysis.handles`.
"""

from __future__ import annotations

import polars as pl

from traceaudit.analysis.handles import handles as build_handles
from traceaudit.analysis.rules import SEP, fold, path_key

__all__ = ["TIMELINE_COLUMNS", "timeline", "on_path", "assign_handles"]

TIMELINE_COLUMNS = (
    "row",
    "time",
    "process",
    "pid",
    "tid",
    "operation",
    "path",
    "result",
    "access_mask",
    "share_mode",
    "rename_target",
    "duration",
    "handle",
    "detail",
)


def assign_handles(events: pl.DataFrame, handle_frame: pl.DataFrame) -> pl.DataFrame:
    """Add a ``handle`` column to ``events``: the handle each event was made through."""
    keyed = events.with_columns(path_key=path_key("path"))
    by_open = handle_frame.filter(pl.col("open_row").is_not_null()).select(
        row=pl.col("open_row"), open_handle=pl.col("handle")
    )
    by_close = handle_frame.filter(pl.col("close_row").is_not_null()).select(
        row=pl.col("close_row"), close_handle=pl.col("handle")
    )
    within = (
        keyed.sort("time")
        .join_asof(
            handle_frame.filter(pl.col("opened").is_not_null())
            .select("pid", "path_key", "handle", "opened", "closed")
            .sort("opened"),
            left_on="time",
            right_on="opened",
            by=["pid", "path_key"],
            strategy="backward",
            check_sortedness=False,  # sorted by time overall, hence within each group
        )
        .select(
            "row",
            asof_handle=pl.when(
                pl.col("closed").is_null() | (pl.col("closed") >= pl.col("time"))
            ).then(pl.col("handle")),
        )
    )
    return (
        keyed.join(by_open, on="row", how="left")
        .join(by_close, on="row", how="left")
        .join(within, on="row", how="left")
        .with_columns(
            # A failed CreateFile opened nothing: it belongs to no handle.
            handle=pl.when((pl.col("operation") == "CreateFile") & (pl.col("result") != "SUCCESS"))
            .then(pl.lit(None, dtype=pl.UInt32))
            .otherwise(pl.coalesce("open_handle", "close_handle", "asof_handle"))
        )
        .drop("open_handle", "close_handle", "asof_handle", "path_key")
    )


def on_path(path: str) -> pl.Expr:
    """Whether an event is on ``path`` or below it (case-insensitive; ``/`` in ``path``
    stands for ``\\``, as Windows takes either)."""
    key = fold(path.replace("/", SEP))
    return (path_key("path") == key) | path_key("path").str.starts_with(key + SEP)


def timeline(
    events: pl.DataFrame, path: str, *, handle_frame: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Every event on ``path`` or below it (case-insensitive), in time order, with handles."""
    selected = events.filter(on_path(path))
    if handle_frame is None:
        handle_frame = build_handles(selected)
    return assign_handles(selected, handle_frame).sort("time", "row").select(TIMELINE_COLUMNS)
