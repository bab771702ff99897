"""Mapped sections: what keeps a file in use after every handle to it is closed.

A process that maps a file (``CreateFileMapping``, which Procmon shows when a section is
created for a file, or ``Load Image`` for an executable or DLL) holds a *section* on it.
The section outlives the handle it was made from: the file stays in use until the last
view is unmapped, which no Procmon event shows. Operations the memory manager refuses
because of it fail with ``USER MAPPED FILE`` (truncating, paging writes to a mapped file)
or ``CANNOT DELETE`` (deleting a mapped image); no handle explains them, a section does.

The capture can show when a section began (the mapping event), and an upper bound on when
it ended: the mapping process's ``Process Exit``, or where a filter dropped that event (a
capture filtered on a path), the exit the capture's process table records
(:attr:`~traceaudit.schema.Trace.process_exits`). It cannot show an unmap. So a conflict
caused by a section gets a holder but no hold time.

Sections columns
----------------
``pid``, ``process``, ``path``, ``path_key``, ``mapped`` (Datetime: the mapping event),
``row`` (its source row), ``source`` (``CreateFileMapping`` or ``Load Image``), ``ended``
(Datetime, nullable: the process's exit, when the trace holds it as an event or in its
process table).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from traceaudit.analysis.rules import path_key

__all__ = ["SECTION_RESULTS", "SECTION_FIELDS", "is_mapping", "sections", "section_holders"]

# Statuses of a CreateFileMapping that created (or found) the section: the two FILE LOCKED
# ones are success codes telling the caller who else has the file open.
_MAPPED_RESULTS = ("SUCCESS", "FILE LOCKED WITH ONLY READERS", "FILE LOCKED WITH WRITERS")

SECTION_RESULTS = frozenset({"USER MAPPED FILE"})
"""Failures that only a mapped section explains (``CANNOT DELETE`` does when one exists)."""

SECTION_FIELDS = ("pid", "process", "path", "mapped", "row", "source", "own", "ended")
"""The fields of each entry of a conflict's ``sections`` list."""

_SCHEMA: dict[str, Any] = {
    "pid": pl.Int64,
    "process": pl.String,
    "path": pl.String,
    "path_key": pl.String,
    "mapped": pl.Datetime("ns"),
    "row": pl.UInt32,
    "source": pl.String,
    "ended": pl.Datetime("ns"),
}


def is_mapping() -> pl.Expr:
    """Whether an event creates a section of its file: a CreateFileMapping that succeeded
    (or answered FILE LOCKED WITH …, which still maps it), or an image load."""
    return (
        (pl.col("operation") == "CreateFileMapping") & pl.col("result").is_in(list(_MAPPED_RESULTS))
    ) | ((pl.col("operation") == "Load Image") & (pl.col("result") == "SUCCESS"))


def sections(events: pl.DataFrame, process_exits: pl.DataFrame | None = None) -> pl.DataFrame:
    """Every section the trace shows being created, with its process's exit if seen.

    The exit is the process's first ``Process Exit`` event, or else the one in
    ``process_exits`` (:data:`~traceaudit.schema.PROCESS_EXIT_SCHEMA`, the capture's
    process table) of the process that had that pid when it mapped the file: started
    before the mapping (or before the capture) and exited after it. A pid Windows gave to
    a new process after the first exited is not ended by the first one's exit.
    """
    mapped = (
        events.lazy()
        .filter(is_mapping())
        .filter(pl.col("path").is_not_null() & (pl.col("path") != ""))
        .select(
            "pid",
            "process",
            "path",
            path_key=path_key("path"),
            mapped=pl.col("time"),
            row=pl.col("row"),
            source=pl.col("operation"),
        )
    )
    exit_events = (
        events.lazy()
        .filter(pl.col("operation") == "Process Exit")
        .group_by("pid")
        .agg(ended=pl.col("time").min())
    )
    out = mapped.join(exit_events, on="pid", how="left")
    if process_exits is not None and not process_exits.is_empty():
        out = _with_table_exits(out, process_exits.lazy())
    return (
        out.sort("mapped", "row")
        .select([pl.col(name).cast(dtype) for name, dtype in _SCHEMA.items()])
        .collect()
    )


def _with_table_exits(sections_: pl.LazyFrame, process_exits: pl.LazyFrame) -> pl.LazyFrame:
    """``sections_`` with ``ended`` taken from the process table where no event gave it."""
    table = (
        sections_.select("row", "pid", "mapped")
        .join(process_exits.select("pid", "started", "exited"), on="pid", how="inner")
        .filter(
            (pl.col("started").is_null() | (pl.col("started") <= pl.col("mapped")))
            & (pl.col("exited") >= pl.col("mapped"))
        )
        .group_by("row")
        .agg(table_ended=pl.col("exited").min())
    )
    return (
        sections_.join(table, on="row", how="left")
        .with_columns(ended=pl.coalesce("ended", "table_ended"))
        .drop("table_ended")
    )


def section_holders(failures: pl.DataFrame, section_frame: pl.DataFrame) -> pl.DataFrame:
    """(conflict, section) for each failure and the sections on its path alive at that instant.

    Alive: mapped strictly before the failure by a process that had not exited by then. One
    entry per process: its earliest live mapping (a process often maps the same file
    several times; one of them is enough to hold it).
    """
    if failures.is_empty() or section_frame.is_empty():
        return pl.DataFrame(
            schema={"conflict": pl.UInt32, **{f: _field_type(f) for f in SECTION_FIELDS}}
        )
    return (
        failures.lazy()
        .select("conflict", "path_key", time_f=pl.col("time"), pid_f=pl.col("pid"))
        .join(section_frame.lazy(), on="path_key", how="inner")
        .filter(
            (pl.col("mapped") < pl.col("time_f"))
            & (pl.col("ended").is_null() | (pl.col("ended") > pl.col("time_f")))
        )
        .sort("conflict", "mapped", "row")
        .unique(subset=["conflict", "pid"], keep="first", maintain_order=True)
        .with_columns(own=pl.col("pid") == pl.col("pid_f"))
        .select("conflict", *SECTION_FIELDS)
        .collect()
    )


def _field_type(name: str) -> Any:
    return pl.Boolean() if name == "own" else _SCHEMA[name]
