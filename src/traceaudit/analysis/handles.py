"""Events → handle lifetimes: who had which file open, from when to when, how.

Pairing rule
------------
Procmon shows no handle value. Its ``CloseFile`` is IRP_MJ_CLEANUP: the moment the last
user handle to one file object is closed, which is also the moment that open's share-mode
lock is released. So a handle lifetime runs from a successful ``CreateFile`` to a
``CloseFile`` of the **same process and the same path** (compared case-insensitively).
When a process has several opens of one path at once, closes are matched **last in, first
out** — the nesting that code produces when it opens a file again while it holds it (a
stat inside an open, say). It is a heuristic; ETW traces carry the FILE_OBJECT address, and
when ``file_object`` is present the pairing uses it instead and is exact (file objects are
reused after a close, which the same stack matching handles).

Edges of the capture
--------------------
* a ``CloseFile`` with no open before it: the handle was **open before the capture
  started** (``opened`` is null, ``open_before_capture`` is true, access and share unknown);
* an open with no close: the handle was **still open when the capture ended** (``closed``
  is null, ``open_at_end`` is true).
Both are kept: they are exactly the long-lived holders an investigation looks for.

Handle columns
--------------
``handle`` (UInt32 id), ``pid``, ``process``, ``path``, ``path_key`` (folded path),
``opened`` / ``closed`` (Datetime, nullable), ``open_row`` / ``close_row`` (source rows,
nullable), ``access_mask``, ``share_mode``, ``is_directory``, ``delete_on_close``,
``file_object``, ``open_before_capture``, ``open_at_end``.
"""

from __future__ import annotations

import polars as pl

from traceaudit.analysis.rules import path_key
from traceaudit.display import format_expr

__all__ = ["OPEN_OPERATION", "CLOSE_OPERATION", "HANDLE_SCHEMA", "handles"]

OPEN_OPERATION = "CreateFile"
CLOSE_OPERATION = "CloseFile"

HANDLE_SCHEMA: dict[str, pl.DataType] = {
    "handle": pl.UInt32(),
    "pid": pl.Int64(),
    "process": pl.String(),
    "path": pl.String(),
    "path_key": pl.String(),
    "opened": pl.Datetime("ns"),
    "closed": pl.Datetime("ns"),
    "open_row": pl.UInt32(),
    "close_row": pl.UInt32(),
    "access_mask": pl.UInt32(),
    "share_mode": pl.UInt8(),
    "is_directory": pl.Boolean(),
    "delete_on_close": pl.Boolean(),
    "file_object": pl.UInt64(),
    "open_before_capture": pl.Boolean(),
    "open_at_end": pl.Boolean(),
}


def handles(events: pl.DataFrame) -> pl.DataFrame:
    """Rebuild handle lifetimes from an event frame (see the module docstring for the rule).

    Vectorised: within each pairing key the opens and closes are a bracket sequence; an
    open at nesting depth *d* is closed by the next close that brings the depth back below
    *d*. Grouping by (key, depth) leaves alternating open/close runs, so each open pairs
    with the event that follows it in its group.

    The pairing runs on narrow columns (a number per key, time, row, +1/-1); the wide ones
    (process, path, access, …) are gathered once at the end, which keeps a million opens
    and closes in a few hundred megabytes.
    """
    steps = events.filter(
        ((pl.col("operation") == OPEN_OPERATION) & (pl.col("result") == "SUCCESS"))
        | (pl.col("operation") == CLOSE_OPERATION)
    ).with_columns(path_key=path_key("path"))
    marks = _bracket_marks(steps)
    paired = _paired_opens(marks)
    orphans = marks.filter(pl.col("orphan_close")).select("step")
    opened = steps[paired["step"]].with_columns(paired.select("closes", "next_time", "next_row"))
    out = (
        pl.concat(
            [_open_handles(opened), _orphan_handles(steps[orphans["step"]])],
            how="vertical_relaxed",
        )
        .sort(pl.coalesce("opened", "closed"), pl.coalesce("open_row", "close_row"))
        .with_row_index("handle", offset=1)
    )
    return out.select([pl.col(name).cast(dtype) for name, dtype in HANDLE_SCHEMA.items()])


def _bracket_marks(steps: pl.DataFrame) -> pl.DataFrame:
    """Successful opens (+1) and closes (-1) per pairing key, with their nesting ``level``.

    ``steps`` holds the successful opens and every close, in event order; the result has
    one narrow row per step (``step``: its position in ``steps``). Only a successful
    CreateFile yields a handle; every CloseFile (IRP_MJ_CLEANUP) ends one. The key is the
    FILE_OBJECT when the trace has it (ETW: exact), else (pid, folded path). A close that
    would take the depth below any seen so far closes a handle opened before the capture
    (``orphan_close``); counting those lifts the later events' level so that the remaining
    opens and closes still pair up by level.
    """
    return (
        steps.lazy()
        .select(
            "time",
            "row",
            step=pl.int_range(pl.len(), dtype=pl.UInt32),
            delta=pl.when(pl.col("operation") == OPEN_OPERATION).then(1).otherwise(-1),
            # pl.format gives null for a null file object, so the (pid, path) key takes over;
            # then a number per key, in the keys' order: windows over integers are cheap
            pair_key=pl.coalesce(
                format_expr("fo:{}", pl.col("file_object")),
                format_expr("{}|{}", pl.col("pid"), pl.col("path_key")),
            ).rank("dense"),
        )
        .sort("pair_key", "time", "row")
        .with_columns(depth=pl.col("delta").cum_sum().over("pair_key"))
        .with_columns(
            floor=pl.min_horizontal(
                pl.col("depth").cum_min().shift(1).over("pair_key").fill_null(0), pl.lit(0)
            )
        )
        .with_columns(orphan_close=(pl.col("delta") == -1) & (pl.col("depth") < pl.col("floor")))
        .with_columns(
            level=pl.col("depth")
            + pl.col("orphan_close").cast(pl.Int64).cum_sum().over("pair_key")
            + pl.when(pl.col("delta") == -1).then(1).otherwise(0)
        )
        .collect()
    )


def _paired_opens(marks: pl.DataFrame) -> pl.DataFrame:
    """One row per open (``step``): closed by the next event at its (key, level), if that
    is a close (``closes``, ``next_time``, ``next_row``). An open with no close after it
    was still open when the capture ended."""
    return (
        marks.lazy()
        .filter(~pl.col("orphan_close"))
        .with_columns(
            next_delta=pl.col("delta").shift(-1).over("pair_key", "level"),
            next_time=pl.col("time").shift(-1).over("pair_key", "level"),
            next_row=pl.col("row").shift(-1).over("pair_key", "level"),
        )
        .filter(pl.col("delta") == 1)
        .select(
            "step",
            "next_time",
            "next_row",
            closes=(pl.col("next_delta") == -1).fill_null(False),
        )
        .collect()
    )


def _open_handles(opened: pl.DataFrame) -> pl.DataFrame:
    """The handles of the opens, with their closes where the capture shows them."""
    return opened.select(
        "pid",
        "process",
        "path",
        "path_key",
        opened=pl.col("time"),
        closed=pl.when(pl.col("closes")).then(pl.col("next_time")),
        open_row=pl.col("row"),
        close_row=pl.when(pl.col("closes")).then(pl.col("next_row")),
        access_mask=pl.col("access_mask"),
        share_mode=pl.col("share_mode"),
        is_directory=pl.col("is_directory"),
        delete_on_close=pl.col("delete_on_close"),
        file_object=pl.col("file_object"),
        open_before_capture=pl.lit(False),
        open_at_end=~pl.col("closes"),
    )


def _orphan_handles(closes: pl.DataFrame) -> pl.DataFrame:
    """One handle per close with no open before it: open before the capture started.

    Its open is not in the trace, so its access, share mode and flags are unknown (null).
    """
    return closes.select(
        "pid",
        "process",
        "path",
        "path_key",
        opened=pl.lit(None, dtype=pl.Datetime("ns")),
        closed=pl.col("time"),
        open_row=pl.lit(None, dtype=pl.UInt32),
        close_row=pl.col("row"),
        access_mask=pl.lit(None, dtype=pl.UInt32),
        share_mode=pl.lit(None, dtype=pl.UInt8),
        is_directory=pl.lit(None, dtype=pl.Boolean),
        delete_on_close=pl.lit(None, dtype=pl.Boolean),
        file_object=pl.col("file_object"),
        open_before_capture=pl.lit(True),
        open_at_end=pl.lit(False),
    )
