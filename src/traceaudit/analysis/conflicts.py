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
                modes exclude each other in either direction (:mod:`traceaudit.analysis.rules`);
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

Blockers and candidates
-----------------------
A handle counts as a **blocker** only where the capture could have shown its edges (see
:mod:`traceaudit.analysis.completeness`): a handle with no CloseFile in a paste, in a one-thread
capture, or of a process whose CloseFiles the capture lacks, may only *look* open. Such
handles are **candidates** (``candidate`` true in :func:`blocking_handles`, the
``candidates`` list of a conflict): shown, but never a verdict's evidence, never timed,
never fed to the retry advice. A missing CloseFile alone never makes a process its own
blocker. In a complete capture every handle is a blocker, exactly as before.

Classes of failure (``kind``)
-----------------------------
``lock``     share modes, byte ranges, a rename below an open handle: the rules above;
``oplock``   an **oplock probe**: an open with ``Open Requiring Oplock`` (scanners and
             indexers use it) refused with OPLOCK NOT GRANTED or CANNOT BREAK OPLOCK (or
             answered OPLOCK BREAK IN PROGRESS), or an FSCTL_REQUEST_OPLOCK refused. The
             caller asked for an oplock that other handles on the file made impossible and
             opens again without it: a probe declined by design, not a failure anyone
             suffers. Its blockers are the handles with data access that prevented the
             oplock; an attribute-only probe never conflicts on share modes;
``section``  USER MAPPED FILE, or CANNOT DELETE on a file the trace shows mapped: a mapped
             section (:mod:`traceaudit.analysis.sections`), not a handle, is in the way. Its holders
             are the sections alive on the file (``sections``); a section outlives its
             handle and nothing shows it end, so it has no hold time.

Verdicts
--------
``blocked-by-other-process``  at least one blocker belongs to another process;
``blocked-by-own-handle``     every blocker is the failing process's own;
``incomplete-capture``        no blocker, but candidates: the capture cannot show the holder;
``oplock-probe``              an oplock probe (above), whoever prevented the oplock;
``mapped-by-other-process``   a section of another process is on the file;
``mapped-by-own-process``     only the failing process's own section is;
``no-holder-permission``      ACCESS DENIED and nothing in the trace holds the file: most
                              likely a plain permission (ACL / read-only) refusal;
``no-holder-filtered``        a lock-type failure with no holder in the trace: the holder was
                              most likely filtered out of the capture (or opened it before
                              the capture with a name the trace never shows).
An ACCESS DENIED on a rename/delete in a capture that holds a single process is judged
``no-holder-filtered``: the usual cause, an antivirus handle below the directory, cannot be
seen in such a capture.

Hold time
---------
``remaining_ms``, the **hold time** of a failure: from the failure until the last blocker
present at that instant closed; null (and ``censored`` true) when one of them was still
open when the trace ended. It is not how long the operation stayed blocked: other handles
may open after the failure and block a retry too (that is an episode's *blocked time*,
:mod:`traceaudit.analysis.episodes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from traceaudit.analysis import rules as _sharing
from traceaudit.analysis.rules import (
    _BREAK_IN_PROGRESS,
    _REQUIRES_OPLOCK,
    INFORMATIONAL_RESULTS,
    LOCK_RESULTS,
    NAMESPACE_OPERATIONS,
    OPLOCK_RESULTS,
    SEP,
    WIN32_ERROR,
    path_key,
)
from traceaudit.analysis.sections import SECTION_FIELDS, SECTION_RESULTS
from traceaudit.display import clock_expr, format_expr

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

__all__ = [
    "LOCK_RESULTS",
    "INFORMATIONAL_RESULTS",
    "NAMESPACE_OPERATIONS",
    "WIN32_ERROR",
    "VERDICTS",
    "BLOCKED_VERDICTS",
    "CHECK_VERDICTS",
    "OPLOCK_RESULTS",
    "is_lock_failure",
    "lock_failures",
    "blocking_handles",
    "conflicts",
    "find_conflicts",
]

VERDICTS = (
    "blocked-by-other-process",
    "blocked-by-own-handle",
    "mapped-by-other-process",
    "mapped-by-own-process",
    "incomplete-capture",
    "oplock-probe",
    "no-holder-permission",
    "no-holder-filtered",
)

BLOCKED_VERDICTS = ("blocked-by-other-process", "blocked-by-own-handle")
"""Verdicts whose blockers the capture shows open and closing: the failures a hold time,
a lock episode and the retry advice are made of."""

CHECK_VERDICTS = ("blocked-by-other-process", "mapped-by-other-process")
"""Verdicts ``--check`` fails on: another process's handle or section was in the way."""

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


def _break_answer() -> pl.Expr:
    """An oplock probe answered OPLOCK BREAK IN PROGRESS (not a failure of a plain open)."""
    requires_oplock = (
        pl.col("create_options").fill_null(0) & pl.lit(_REQUIRES_OPLOCK, dtype=pl.UInt32)
    ) != 0
    return (
        (pl.col("result") == _BREAK_IN_PROGRESS)
        & (pl.col("operation") == "CreateFile")
        & requires_oplock
    )


def is_lock_failure() -> pl.Expr:
    """Whether an event is one :func:`lock_failures` keeps (a file-system event on a path
    whose result can mean a lock)."""
    return (
        (pl.col("event_class") == "File System")
        & (pl.col("result").is_in(list(LOCK_RESULTS)) | _break_answer())
        & pl.col("path").is_not_null()
        & (pl.col("path") != "")
    )


def lock_failures(events: pl.DataFrame) -> pl.DataFrame:
    """The file-system events whose result can mean a lock, numbered as ``conflict``.

    Each has a ``kind``: ``lock``, ``oplock`` (a probe) or ``section`` (see the module
    docstring); a ``CANNOT DELETE`` becomes ``section`` in :func:`conflicts` when a section
    of the file is alive at that instant.
    """
    break_answer = _break_answer()
    return (
        events.lazy()
        .filter(is_lock_failure())
        .sort("time", "row")
        .with_row_index("conflict", offset=1)
        .with_columns(
            path_key=path_key("path"),
            target_key=path_key("rename_target"),
            namespace_op=pl.col("operation").is_in(list(NAMESPACE_OPERATIONS)),
            error_code=pl.col("result").replace_strict(
                WIN32_ERROR, default=None, return_dtype=pl.Int64
            ),
            kind=pl.when(pl.col("result").is_in(list(OPLOCK_RESULTS)) | break_answer)
            .then(pl.lit("oplock"))
            .when(pl.col("result").is_in(list(SECTION_RESULTS)))
            .then(pl.lit("section"))
            .otherwise(pl.lit("lock")),
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
            "kind",
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
        # A mapped section, not a handle, is what USER MAPPED FILE is about.
        .when(result.is_in(list(SECTION_RESULTS)))
        .then(pl.lit(False))
        .when(result.is_in(["DELETE PENDING", "CANNOT DELETE"]))
        .then(pl.lit(True))
        # Byte-range and oplock refusals: any handle that reads, writes or deletes.
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


def blocking_handles(
    failures: pl.DataFrame, handles: pl.DataFrame, visibility: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Every handle that blocks each failure at, or at any time after, its instant.

    One row per (conflict, handle) with the handle's columns, ``relation``, ``own``,
    ``at_failure`` (open at the failure instant), ``candidate`` (the capture cannot show the
    edge that would make it a blocker, see the module docstring), and the interval during
    which it blocks, relative to the failure: ``start_ms`` (≥ 0) and ``end_ms`` (null when
    it was still open at the end of the trace).

    ``visibility`` (``pid``, ``closes_visible``, ``opens_visible``, from
    :meth:`traceaudit.analysis.completeness.Completeness.visibility`) says which processes' closes
    and opens the capture shows; without it every handle is taken at its word.
    """
    pairs = _related_pairs(failures, handles)
    pairs = _open_at_or_after(pairs)
    pairs = _without_issuing_handle(pairs)
    pairs = _mark_candidates(pairs, visibility)
    narrow = _blocking_interval(pairs).collect()
    # The pairs are made and filtered on the handles' narrow columns (a failure on a busy
    # file meets every handle ever opened on it); names and rows join the survivors only.
    wide = handles.select("handle", *(c for c in HANDLE_COLUMNS if c not in _PAIRING_COLUMNS))
    out = narrow.join(wide, on="handle", how="left", maintain_order="left")
    order = ["conflict", *HANDLE_COLUMNS]
    return out.select(*order, *(c for c in narrow.columns if c not in order))


def _related_pairs(failures: pl.DataFrame, handles: pl.DataFrame) -> pl.LazyFrame:
    """(failure, handle) pairs by ``relation``, each failure's columns suffixed ``_f``.

    ``same-path``: handles on the failed path that :func:`_same_path_rule` says block;
    ``below``: any handle under a renamed/deleted directory (Windows refuses to rename or
    delete a directory while anything below it is open, whatever the share mode);
    ``target``: any handle on the target of a rename or link.
    """
    side = _failure_side(failures)
    lazy_handles = handles.lazy().select("path_key", *_PAIRING_COLUMNS)

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
        .with_columns(relation=pl.lit("below"))
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
        *_PAIRING_COLUMNS,
        "relation",
    ]
    return pl.concat(
        [frame.select(columns) for frame in (same, below, target)], how="vertical_relaxed"
    )


def _open_at_or_after(pairs: pl.LazyFrame) -> pl.LazyFrame:
    """Keep the handles not yet closed at the failure; mark ``own`` and ``at_failure``.

    A handle with no open in the trace (opened before the capture) was open at the failure;
    one opened later blocks only the retries (``at_failure`` false).
    """
    opened_before = pl.col("opened").is_null() | (pl.col("opened") < pl.col("time_f"))
    still_open = pl.col("closed").is_null() | (pl.col("closed") > pl.col("time_f"))
    return pairs.filter(still_open).with_columns(
        own=pl.col("pid") == pl.col("pid_f"), at_failure=opened_before
    )


def _without_issuing_handle(pairs: pl.LazyFrame) -> pl.LazyFrame:
    """Drop the handle each operation was issued through, and duplicate pairs.

    Everything but CreateFile (SetRenameInformationFile, ReadFile, LockFile…) goes through
    a handle the process already holds on the path: the latest one of its own open at the
    failure. That handle is the caller's, not a blocker.
    """
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
    return (
        pairs.join(issuing, on="conflict", how="left")
        .filter(pl.col("issuing").is_null() | (pl.col("handle") != pl.col("issuing")))
        .unique(subset=["conflict", "handle"], keep="first", maintain_order=True)
    )


def _blocking_interval(pairs: pl.LazyFrame) -> pl.LazyFrame:
    """``start_ms`` / ``end_ms``: when each handle blocks, in ms after its failure; sorted."""
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
    )


def _mark_candidates(pairs: pl.LazyFrame, visibility: pl.DataFrame | None) -> pl.LazyFrame:
    """``candidate``: a handle that looks open only because the capture cannot show its
    close (no CloseFile where the capture could not have shown one) or, for a handle seen
    only closing, its open."""
    if visibility is None:
        return pairs.with_columns(candidate=pl.lit(False))
    seen = visibility.lazy().select(pl.col("pid").cast(pl.Int64), "closes_visible", "opens_visible")
    return (
        pairs.join(seen, on="pid", how="left")
        .with_columns(
            candidate=(pl.col("closed").is_null() & ~pl.col("closes_visible").fill_null(True))
            | (pl.col("opened").is_null() & ~pl.col("opens_visible").fill_null(True))
        )
        .drop("closes_visible", "opens_visible")
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

_PAIRING_COLUMNS = ("handle", "pid", "opened", "closed", "access_mask", "share_mode")
"""The handle columns that decide whether a handle blocks a failure."""


def _holder_lists(at_failure: pl.DataFrame, name: str, count: str) -> pl.DataFrame:
    return at_failure.group_by("conflict").agg(
        pl.struct(*_BLOCKER_FIELDS).alias(name), pl.len().cast(pl.UInt32).alias(count)
    )


def conflicts(
    failures: pl.DataFrame,
    blocking: pl.DataFrame,
    *,
    single_process: bool = False,
    sections: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Join failures with their blockers, candidates and sections; decide the verdict and
    the hold time (see the module docstring).

    ``single_process`` says the capture holds one process only (a filtered capture), which
    changes how an unexplained ACCESS DENIED on a rename/delete is judged. ``sections`` is
    :func:`traceaudit.analysis.sections.section_holders` of these failures (none when omitted).
    """
    if "kind" not in failures.columns:
        failures = failures.with_columns(kind=pl.lit("lock"))
    if "candidate" not in blocking.columns:
        blocking = blocking.with_columns(candidate=pl.lit(False))
    at_failure = blocking.filter(pl.col("at_failure"))
    per_conflict = _blocker_lists(at_failure.filter(~pl.col("candidate")))
    candidates = _holder_lists(at_failure.filter(pl.col("candidate")), "candidates", "n_candidates")
    section_lists = _section_lists(sections)
    out = _with_holders(failures, per_conflict, candidates, section_lists)
    out = _decide(out, single_process=single_process).with_columns(verdict_reason=_reason())
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
        "kind",
        "verdict",
        "verdict_reason",
        "n_blockers",
        pl.col("blockers").fill_null(pl.lit([], dtype=per_conflict.schema["blockers"])),
        "n_candidates",
        pl.col("candidates").fill_null(pl.lit([], dtype=candidates.schema["candidates"])),
        "n_sections",
        pl.col("sections").fill_null(pl.lit([], dtype=section_lists.schema["sections"])),
        "remaining_ms",
        "censored",
        "decisive_process",
        "access_mask",
        "share_mode",
        "namespace_op",
    ).sort("conflict")


def _blocker_lists(confirmed: pl.DataFrame) -> pl.DataFrame:
    """Per conflict: its blockers, whether one is another process's, and when they let go.

    ``decisive_process`` is the blocker that closed last; ``open_at_end_process`` the first
    one never closed (it decides instead when there is one: the hold time is censored).
    """
    return confirmed.group_by("conflict").agg(
        blockers=pl.struct(*_BLOCKER_FIELDS),
        n_blockers=pl.len().cast(pl.UInt32),
        any_other=(~pl.col("own")).any(),
        censored=pl.col("closed").is_null().any(),
        last_close=pl.col("closed").max(),
        decisive_process=pl.col("process").sort_by(pl.col("closed"), nulls_last=True).last(),
        # A handle still open when the trace ended decides; else the one that closed last.
        open_at_end_process=pl.col("process").filter(pl.col("closed").is_null()).first(),
    )


def _with_holders(
    failures: pl.DataFrame,
    per_conflict: pl.DataFrame,
    candidates: pl.DataFrame,
    section_lists: pl.DataFrame,
) -> pl.DataFrame:
    """Each failure with its blockers, candidates and sections (counts 0 when none).

    A CANNOT DELETE while a section of the file is alive becomes ``kind`` ``section``:
    Windows refuses to delete a file mapped into memory (STATUS_CANNOT_DELETE) even once
    every handle is closed.
    """
    return (
        failures.join(per_conflict, on="conflict", how="left")
        .join(candidates, on="conflict", how="left")
        .join(section_lists, on="conflict", how="left")
        .with_columns(
            n_blockers=pl.col("n_blockers").fill_null(0),
            n_candidates=pl.col("n_candidates").fill_null(0),
            n_sections=pl.col("n_sections").fill_null(0),
            censored=pl.col("censored").fill_null(False),
        )
        .with_columns(
            kind=pl.when(
                (pl.col("kind") == "lock")
                & (pl.col("result") == "CANNOT DELETE")
                & (pl.col("n_sections") > 0)
            )
            .then(pl.lit("section"))
            .otherwise(pl.col("kind"))
        )
    )


def _decide(out: pl.DataFrame, *, single_process: bool) -> pl.DataFrame:
    """``verdict``, ``remaining_ms`` (the hold time), ``censored`` and ``decisive_process``.

    A section has no hold time: nothing in the trace shows it go away.
    """
    ms = 1_000_000.0
    section = pl.col("kind") == "section"
    return out.with_columns(
        verdict=_verdict(section, single_process=single_process),
        remaining_ms=pl.when((pl.col("n_blockers") > 0) & ~pl.col("censored") & ~section).then(
            (pl.col("last_close") - pl.col("time")).dt.total_nanoseconds() / ms
        ),
        censored=pl.col("censored") & ~section,
        decisive_process=pl.when(section)
        .then(pl.col("section_process"))
        .when(pl.col("n_blockers") > 0)
        .then(
            pl.when(pl.col("censored"))
            .then(pl.col("open_at_end_process"))
            .otherwise(pl.col("decisive_process"))
        ),
    )


def _verdict(section: pl.Expr, *, single_process: bool) -> pl.Expr:
    """The verdict of each failure, in the order of the module docstring's rules.

    With no holder at all, an ACCESS DENIED is a permission refusal, except on a
    rename/delete in a one-process capture, where the usual cause (an antivirus handle
    below a directory) was filtered out of sight.
    """
    no_holder_verdict = (
        pl.when(
            (pl.col("result") == "ACCESS DENIED")
            & ~(pl.col("namespace_op") & pl.lit(single_process))
        )
        .then(pl.lit("no-holder-permission"))
        .otherwise(pl.lit("no-holder-filtered"))
    )
    return (
        pl.when(pl.col("kind") == "oplock")
        .then(pl.lit("oplock-probe"))
        .when(section & pl.col("section_other"))
        .then(pl.lit("mapped-by-other-process"))
        .when(section & (pl.col("n_sections") > 0))
        .then(pl.lit("mapped-by-own-process"))
        .when(section)
        .then(pl.lit("no-holder-filtered"))
        .when(pl.col("n_blockers") > 0)
        .then(
            pl.when(pl.col("any_other"))
            .then(pl.lit("blocked-by-other-process"))
            .otherwise(pl.lit("blocked-by-own-handle"))
        )
        .when(pl.col("n_candidates") > 0)
        .then(pl.lit("incomplete-capture"))
        .otherwise(no_holder_verdict)
    )


def _section_lists(sections: pl.DataFrame | None) -> pl.DataFrame:
    """Per conflict: its sections, how many, whether one is another process's, and the
    process that decides the verdict (another process's first, else the own one)."""
    from traceaudit.analysis.sections import section_holders

    if sections is None:
        sections = section_holders(pl.DataFrame(), pl.DataFrame())
    return sections.group_by("conflict").agg(
        sections=pl.struct(*SECTION_FIELDS),
        n_sections=pl.len().cast(pl.UInt32),
        section_other=(~pl.col("own")).any(),
        section_process=pl.col("process").sort_by(pl.col("own")).first(),
        section_time=clock_expr(pl.col("mapped").sort_by(pl.col("own")).first()),
        section_source=pl.col("source").sort_by(pl.col("own")).first(),
    )


def _reason() -> pl.Expr:
    """One sentence per conflict saying why the verdict was given."""
    verdict = pl.col("verdict")
    cases = [
        *_holder_reasons(verdict),
        *_oplock_reasons(verdict),
        *_section_reasons(verdict),
        (
            verdict == "no-holder-permission",
            pl.lit(
                "ACCESS DENIED and no handle in the trace explains it: most likely a "
                "permission (ACL or read-only) refusal"
            ),
        ),
    ]
    return _first_match(
        cases,
        otherwise=pl.lit(
            "no handle in the trace explains it: the holder was most likely filtered "
            "out of the capture"
        ),
    )


def _first_match(cases: list[tuple[pl.Expr, pl.Expr]], *, otherwise: pl.Expr) -> pl.Expr:
    """``pl.when(c1).then(v1).when(c2).then(v2)….otherwise(otherwise)`` over ``cases``."""
    (condition, value), *rest = cases
    chain: Then | ChainedThen = pl.when(condition).then(value)
    for condition, value in rest:
        chain = chain.when(condition).then(value)
    return chain.otherwise(otherwise)


def _holder_reasons(verdict: pl.Expr) -> list[tuple[pl.Expr, pl.Expr]]:
    """Reasons for a failure explained by handles: blocked by another's, by its own, or
    only by candidates the capture cannot confirm."""
    what = (
        pl.when(pl.col("namespace_op"))
        .then(pl.lit("a handle open on a file or folder below it"))
        .otherwise(pl.lit("a handle whose access and share mode exclude this open"))
    )
    return [
        (
            verdict == "blocked-by-other-process",
            format_expr("{} held {} at the failure", pl.col("decisive_process"), what),
        ),
        (
            (verdict == "blocked-by-own-handle") & pl.col("censored"),
            format_expr(
                "the process's own handle: {}, never closed in this trace although the "
                "capture shows this process's other closes",
                what,
            ),
        ),
        (
            verdict == "blocked-by-own-handle",
            format_expr("the process's own earlier handle: {}", what),
        ),
        (
            verdict == "incomplete-capture",
            format_expr(
                "the capture cannot show the holder: no handle whose open and close it shows "
                "explains the failure; the handles that look open only because the capture "
                "cannot show them close are listed as candidates ({} in all)",
                pl.col("n_candidates"),
            ),
        ),
    ]


def _oplock_reasons(verdict: pl.Expr) -> list[tuple[pl.Expr, pl.Expr]]:
    """Reasons for an oplock probe: an open with FILE_OPEN_REQUIRING_OPLOCK that Windows
    refuses while other handles have the file open; the caller retries without it."""
    return [
        (
            (verdict == "oplock-probe") & (pl.col("n_blockers") > 0),
            format_expr(
                "an oplock probe: the open asked for an oplock (Open Requiring Oplock), which "
                "could not be granted while {} had the file open; declined by design, not a "
                "failure anyone suffers: the caller opens again without the oplock",
                pl.col("decisive_process"),
            ),
        ),
        (
            verdict == "oplock-probe",
            pl.lit(
                "an oplock probe: the open asked for an oplock (Open Requiring Oplock), which "
                "could not be granted; declined by design, not a failure anyone suffers. No "
                "handle in the trace shows who else had the file open"
            ),
        ),
    ]


def _section_reasons(verdict: pl.Expr) -> list[tuple[pl.Expr, pl.Expr]]:
    """Reasons for a failure caused by a mapped section (USER MAPPED FILE, CANNOT DELETE).

    A section keeps the file mapped after its handle closes, and no event marks its end.
    """
    section_end = (
        "a section outlives its handle and no event marks when it goes away, so the capture "
        "cannot show how long it lasted"
    )
    return [
        (
            verdict == "mapped-by-other-process",
            format_expr(
                "a mapped section of the file is in the way: {} mapped it ({} at {}); "
                + section_end,
                pl.col("decisive_process"),
                pl.col("section_source"),
                pl.col("section_time"),
            ),
        ),
        (
            verdict == "mapped-by-own-process",
            format_expr(
                "the process's own mapped section of the file is in the way ({} at {}); "
                + section_end,
                pl.col("section_source"),
                pl.col("section_time"),
            ),
        ),
        (
            (pl.col("kind") == "section") & (verdict == "no-holder-filtered"),
            pl.lit(
                "a mapped section of the file is in the way, and no mapping of it "
                "(CreateFileMapping, Load Image) is in the capture: it was mapped before the "
                "capture started, or by a process the capture left out"
            ),
        ),
    ]


def find_conflicts(
    events: pl.DataFrame, handle_frame: pl.DataFrame, *, single_process: bool | None = None
) -> pl.DataFrame:
    """Convenience: :func:`lock_failures` → :func:`blocking_handles` → :func:`conflicts`.

    Takes the capture as complete (every handle at its word) and ignores sections; use
    :func:`traceaudit.analyze` for the whole analysis.
    """
    if single_process is None:
        single_process = events["pid"].n_unique() <= 1
    failures = lock_failures(events)
    return conflicts(
        failures, blocking_handles(failures, handle_frame), single_process=single_process
    )
