"""Failed file operations and the handles that explain them, under Windows rules.

Which failures are conflicts
----------------------------
A file-system event (never a registry one) whose result can mean "somebody else has this
open": see :data:`LOCK_RESULTS`. Informational statuses (:data:`INFORMATIONAL_RESULTS`:
FILE LOCKED WITH ONLY READERS, FAST IO DISALLOWED, OPLOCK HANDLE CLOSED, REPARSE, …) are
not failures and never become conflicts.

Which handles block it (the ``relation`` of a blocker)
-----------------------------------------------------
``same-path``   a handle on the same file. For SHARING VIOLATION only when access and share
                modes exclude each other in either direction (:mod:`traceaudit._sharing`);
                attribute-only opens never do. For DELETE PENDING / CANNOT DELETE any
                handle; for byte-range and oplock failures any handle with data access.
                Never for ACCESS DENIED: a share-mode clash is reported as SHARING
                VIOLATION, so a refused open is a permission (ACL, read-only) refusal.
``below``       for a rename, link or delete of a directory: any handle on a file or folder
                strictly below it, **whatever its share mode**. Scanners open with
                ``ShareMode: Read, Write, Delete`` and still block a directory rename (the
                uv case); sources disagree on whether share-delete matters, so every open
                descendant is reported with its share mode shown.
``target``      for a rename onto an existing name: any handle on the target.
The process's own handles count too (``own`` is true). For operations issued through a
handle (everything but CreateFile) the handle they were issued through is not a blocker:
it is the most recently opened handle of that process on that path, open at that instant.
A handle whose access is unknown (open before the capture started) counts as a possible
blocker.

A blocker is a handle open at the failure instant: opened before it (or before the capture)
and closed after it (or never, within the trace). :func:`blocking_handles` also returns
handles that open *after* the failure and would block a retry, which the policy replay
needs.

Verdicts
--------
``blocked-by-other-process``  at least one blocker belongs to another process;
``blocked-by-own-handle``     every blocker is the failing process's own;
``no-holder-permission``      ACCESS DENIED and nothing in the trace holds the file: most
                              likely a plain permission (ACL / read-only) refusal;
``no-holder-filtered``        a lock-type failure with no holder in the trace: the holder was
                              most likely filtered out of the capture (or opened it before
                              the capture with a name the trace never shows).
An ACCESS DENIED on a rename/delete in a capture that holds a single process is judged
``no-holder-filtered``: the usual cause, an antivirus handle below the directory, cannot be
seen in such a capture.

``remaining_ms`` is the time from the failure until the last blocker present at that instant
closed; null (and ``censored`` true) when one of them was still open when the trace ended.
"""

from __future__ import annotations

import polars as pl

from traceaudit import _sharing
from traceaudit._paths import SEP, path_key

__all__ = [
    "LOCK_RESULTS",
    "INFORMATIONAL_RESULTS",
    "NAMESPACE_OPERATIONS",
    "WIN32_ERROR",
    "VERDICTS",
    "lock_failures",
    "blocking_handles",
    "conflicts",
    "find_conflicts",
]

# NTSTATUS display strings (Procmon's) that can mean an open handle is in the way.
LOCK_RESULTS = frozenset(
    {
        "SHARING VIOLATION",
        "ACCESS DENIED",
        "DELETE PENDING",
        "CANNOT DELETE",
        "FILE LOCK CONFLICT",
        "NOT GRANTED",
        "LOCK NOT GRANTED",
        "OPLOCK NOT GRANTED",
        "CANNOT BREAK OPLOCK",
        "USER MAPPED FILE",
    }
)

# Statuses that look alarming but are not failures of the operation.
INFORMATIONAL_RESULTS = frozenset(
    {
        "FILE LOCKED WITH ONLY READERS",
        "FILE LOCKED WITH WRITERS",
        "OPLOCK HANDLE CLOSED",
        "OPLOCK BREAK IN PROGRESS",
        "FAST IO DISALLOWED",
        "REPARSE",
        "BUFFER OVERFLOW",
    }
)

# Operations that change the namespace: they fail while anything below a directory is open.
NAMESPACE_OPERATIONS = frozenset(
    {
        "SetRenameInformationFile",
        "SetRenameInformationEx",
        "SetRenameInformationExBypassAccessCheck",
        "SetLinkInformationFile",
        "SetLinkInformationEx",
        "SetDispositionInformationFile",
        "SetDispositionInformationEx",
    }
)

# What the application saw: RtlNtStatusToDosError of each status.
WIN32_ERROR: dict[str, int] = {
    "ACCESS DENIED": 5,
    "SHARING VIOLATION": 32,
    "DELETE PENDING": 5,
    "CANNOT DELETE": 5,
    "FILE LOCK CONFLICT": 33,
    "NOT GRANTED": 33,
    "LOCK NOT GRANTED": 33,
    "OPLOCK NOT GRANTED": 300,
    "CANNOT BREAK OPLOCK": 802,
    "USER MAPPED FILE": 1224,
}

VERDICTS = (
    "blocked-by-other-process",
    "blocked-by-own-handle",
    "no-holder-permission",
    "no-holder-filtered",
)

_BLOCKER_FIELDS = (
    "handle",
    "pid",
    "process",
    "path",
    "opened",
    "closed",
    "access_mask",
    "share_mode",
    "relation",
    "own",
    "open_before_capture",
)


def lock_failures(events: pl.DataFrame) -> pl.DataFrame:
    """The file-system events whose result can mean a lock, numbered as ``conflict``."""
    return (
        events.lazy()
        .filter(
            (pl.col("event_class") == "File System")
            & pl.col("result").is_in(list(LOCK_RESULTS))
            & pl.col("path").is_not_null()
            & (pl.col("path") != "")
        )
        .sort("time", "row")
        .with_row_index("conflict", offset=1)
        .with_columns(
            path_key=path_key("path"),
            target_key=path_key("rename_target"),
            namespace_op=pl.col("operation").is_in(list(NAMESPACE_OPERATIONS)),
            error_code=pl.col("result").replace_strict(
                WIN32_ERROR, default=None, return_dtype=pl.Int64
            ),
        )
        .select(
            "conflict",
            "row",
            "time",
            "pid",
            "process",
            "tid",
            "operation",
            "path",
            "result",
            "error_code",
            "access_mask",
            "share_mode",
            "rename_target",
            "path_key",
            "target_key",
            "namespace_op",
        )
        .collect()
    )


def _same_path_rule(result: pl.Expr, operation: pl.Expr, namespace_op: pl.Expr) -> pl.Expr:
    """Whether a same-path handle blocks, given the failure (columns suffixed ``_f``)."""
    held_mask, held_share = pl.col("access_mask"), pl.col("share_mode")
    share_rule = _sharing.incompatible(
        held_mask, held_share, pl.col("access_mask_f"), pl.col("share_mode_f")
    ).fill_null(True)
    data_rule = _sharing.is_data_access(held_mask).fill_null(True)
    return (
        # A share-mode clash makes an open fail with SHARING VIOLATION, never ACCESS DENIED:
        # a refused CreateFile is an ACL or read-only refusal, and a refused rename/delete
        # is explained by handles below or on the target, not on the path itself.
        pl.when(result == "ACCESS DENIED")
        .then(pl.lit(False))
        .when(result == "SHARING VIOLATION")
        .then(share_rule)
        .when(result.is_in(["DELETE PENDING", "CANNOT DELETE", "USER MAPPED FILE"]))
        .then(pl.lit(True))
        .otherwise(data_rule)
    )


def _failure_side(failures: pl.DataFrame) -> pl.LazyFrame:
    return failures.lazy().select(
        "conflict",
        pl.col("time").alias("time_f"),
        pl.col("pid").alias("pid_f"),
        pl.col("operation").alias("operation_f"),
        pl.col("result").alias("result_f"),
        pl.col("access_mask").alias("access_mask_f"),
        pl.col("share_mode").alias("share_mode_f"),
        pl.col("namespace_op").alias("namespace_op_f"),
        "path_key",
        "target_key",
    )


def _below_pairs(failures: pl.DataFrame, handles: pl.DataFrame) -> pl.LazyFrame:
    """(conflict, handle) for handles strictly below a renamed/deleted path.

    Handles sorted by folded path put every descendant of ``d`` in one contiguous run,
    from ``d + "\\"`` up to (not including) ``d + "]"`` (the next character after the
    backslash), so two binary searches per failure find them all.
    """
    namespace = failures.filter(pl.col("namespace_op"))
    if namespace.is_empty() or handles.is_empty():
        return pl.LazyFrame(schema={"conflict": pl.UInt32, "handle": pl.UInt32})
    by_path = handles.select("handle", "path_key").sort("path_key")
    keys = by_path["path_key"]
    lo = keys.search_sorted(namespace["path_key"] + SEP, side="left")
    hi = keys.search_sorted(namespace["path_key"] + chr(ord(SEP) + 1), side="left")
    positions = (
        pl.DataFrame({"conflict": namespace["conflict"], "lo": lo, "hi": hi})
        .filter(pl.col("hi") > pl.col("lo"))
        .select("conflict", position=pl.int_ranges("lo", "hi"))
        .explode("position")
    )
    handle_ids = by_path["handle"]
    return positions.lazy().select(
        "conflict",
        handle=pl.col("position").map_batches(
            lambda p: handle_ids.gather(p), return_dtype=pl.UInt32
        ),
    )


def blocking_handles(failures: pl.DataFrame, handles: pl.DataFrame) -> pl.DataFrame:
    """Every handle that blocks each failure at, or at any time after, its instant.

    One row per (conflict, handle) with the handle's columns, ``relation``, ``own``,
    ``at_failure`` (open at the failure instant: a blocker), and the interval during which
    it blocks, relative to the failure: ``start_ms`` (≥ 0) and ``end_ms`` (null when it was
    still open at the end of the trace).
    """
    side = _failure_side(failures)
    lazy_handles = handles.lazy()

    same = (
        side.join(lazy_handles, on="path_key", how="inner")
        .filter(
            _same_path_rule(pl.col("result_f"), pl.col("operation_f"), pl.col("namespace_op_f"))
        )
        .with_columns(relation=pl.lit("same-path"))
    )

    below = (
        _below_pairs(failures, handles)
        .join(side, on="conflict")
        .join(lazy_handles.drop("path_key"), on="handle")
        .with_columns(relation=pl.lit("below"), path_key=pl.col("path"))
    )
    target = (
        side.filter(pl.col("namespace_op_f") & pl.col("target_key").is_not_null())
        .join(lazy_handles, left_on="target_key", right_on="path_key", how="inner")
        .with_columns(relation=pl.lit("target"), path_key=pl.col("target_key"))
    )
    columns = [
        "conflict",
        "time_f",
        "pid_f",
        "operation_f",
        "path_key",
        *HANDLE_COLUMNS,
        "relation",
    ]
    pairs = pl.concat(
        [frame.select(columns) for frame in (same, below, target)], how="vertical_relaxed"
    )

    opened_before = pl.col("opened").is_null() | (pl.col("opened") < pl.col("time_f"))
    still_open = pl.col("closed").is_null() | (pl.col("closed") > pl.col("time_f"))
    pairs = pairs.filter(still_open).with_columns(
        own=pl.col("pid") == pl.col("pid_f"), at_failure=opened_before
    )

    # The handle an operation was issued through is not its own blocker.
    issuing = (
        pairs.filter(
            (pl.col("operation_f") != "CreateFile")
            & (pl.col("relation") == "same-path")
            & pl.col("own")
            & pl.col("at_failure")
        )
        .sort("opened", nulls_last=False)
        .group_by("conflict")
        .agg(pl.col("handle").last().alias("issuing"))
    )
    pairs = (
        pairs.join(issuing, on="conflict", how="left")
        .filter(pl.col("issuing").is_null() | (pl.col("handle") != pl.col("issuing")))
        .unique(subset=["conflict", "handle"], keep="first", maintain_order=True)
    )
    ms = 1_000_000.0
    return (
        pairs.with_columns(
            start_ms=pl.when(pl.col("at_failure"))
            .then(0.0)
            .otherwise((pl.col("opened") - pl.col("time_f")).dt.total_nanoseconds() / ms),
            end_ms=(pl.col("closed") - pl.col("time_f")).dt.total_nanoseconds() / ms,
        )
        .drop("time_f", "pid_f", "operation_f", "issuing", "path_key")
        .sort("conflict", "start_ms", "handle")
        .collect()
    )


HANDLE_COLUMNS = (
    "handle",
    "pid",
    "process",
    "path",
    "opened",
    "closed",
    "open_row",
    "close_row",
    "access_mask",
    "share_mode",
    "open_before_capture",
)


def conflicts(
    failures: pl.DataFrame, blocking: pl.DataFrame, *, single_process: bool = False
) -> pl.DataFrame:
    """Join failures with their blockers; decide the verdict and the remaining time.

    ``single_process`` says the capture holds one process only (a filtered capture), which
    changes how an unexplained ACCESS DENIED on a rename/delete is judged.
    """
    at_failure = blocking.filter(pl.col("at_failure"))
    per_conflict = at_failure.group_by("conflict").agg(
        blockers=pl.struct(*_BLOCKER_FIELDS),
        n_blockers=pl.len().cast(pl.UInt32),
        any_other=(~pl.col("own")).any(),
        censored=pl.col("closed").is_null().any(),
        last_close=pl.col("closed").max(),
        decisive_process=pl.col("process").sort_by(pl.col("closed"), nulls_last=True).last(),
    )
    ms = 1_000_000.0
    out = failures.join(per_conflict, on="conflict", how="left").with_columns(
        n_blockers=pl.col("n_blockers").fill_null(0),
        censored=pl.col("censored").fill_null(False),
    )
    no_holder_verdict = (
        pl.when(
            (pl.col("result") == "ACCESS DENIED")
            & ~(pl.col("namespace_op") & pl.lit(single_process))
        )
        .then(pl.lit("no-holder-permission"))
        .otherwise(pl.lit("no-holder-filtered"))
    )
    out = out.with_columns(
        verdict=pl.when(pl.col("n_blockers") == 0)
        .then(no_holder_verdict)
        .when(pl.col("any_other"))
        .then(pl.lit("blocked-by-other-process"))
        .otherwise(pl.lit("blocked-by-own-handle")),
        remaining_ms=pl.when((pl.col("n_blockers") > 0) & ~pl.col("censored")).then(
            (pl.col("last_close") - pl.col("time")).dt.total_nanoseconds() / ms
        ),
        decisive_process=pl.when(pl.col("n_blockers") > 0).then(
            pl.when(pl.col("censored"))
            .then(
                # With a holder still open at the end, the decisive one is a never-closed one.
                pl.col("blockers")
                .list.eval(pl.element().filter(pl.element().struct.field("closed").is_null()))
                .list.first()
                .struct.field("process")
            )
            .otherwise(pl.col("decisive_process"))
        ),
    ).with_columns(verdict_reason=_reason())
    return out.select(
        "conflict",
        "row",
        "time",
        "pid",
        "process",
        "tid",
        "operation",
        "path",
        "result",
        "error_code",
        "rename_target",
        "verdict",
        "verdict_reason",
        "n_blockers",
        pl.col("blockers").fill_null(pl.lit([], dtype=per_conflict.schema["blockers"])),
        "remaining_ms",
        "censored",
        "decisive_process",
        "access_mask",
        "share_mode",
        "namespace_op",
    ).sort("conflict")


def _reason() -> pl.Expr:
    """One sentence per conflict saying why the verdict was given."""
    what = (
        pl.when(pl.col("namespace_op"))
        .then(pl.lit("a handle open on a file or folder below it"))
        .otherwise(pl.lit("a handle whose access and share mode exclude this open"))
    )
    return (
        pl.when(pl.col("verdict") == "blocked-by-other-process")
        .then(pl.format("{} held {} at the failure", pl.col("decisive_process"), what))
        .when((pl.col("verdict") == "blocked-by-own-handle") & pl.col("censored"))
        .then(
            pl.format(
                "the process's own handle: {}, never closed in this trace. If the capture "
                "was cut short or filtered (to one thread, say), its CloseFile may just be "
                "missing and the real holder filtered out",
                what,
            )
        )
        .when(pl.col("verdict") == "blocked-by-own-handle")
        .then(pl.format("the process's own earlier handle: {}", what))
        .when(pl.col("verdict") == "no-holder-permission")
        .then(
            pl.lit(
                "ACCESS DENIED and no handle in the trace explains it: most likely a "
                "permission (ACL or read-only) refusal"
            )
        )
        .otherwise(
            pl.lit(
                "no handle in the trace explains it: the holder was most likely filtered "
                "out of the capture"
            )
        )
    )


def find_conflicts(
    events: pl.DataFrame, handle_frame: pl.DataFrame, *, single_process: bool | None = None
) -> pl.DataFrame:
    """Convenience: :func:`lock_failures` → :func:`blocking_handles` → :func:`conflicts`."""
    if single_process is None:
        single_process = events["pid"].n_unique() <= 1
    failures = lock_failures(events)
    return conflicts(
        failures, blocking_handles(failures, handle_frame), single_process=single_process
    )
