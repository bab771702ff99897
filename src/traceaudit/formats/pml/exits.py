"""Process exits from a PML's process table, for captures whose filter dropped the events.

Process Monitor keeps a table of every process it saw, with its start and exit times, and
writes it into the log whatever the filter kept. A capture filtered on a path (what
``traceaudit capture-profile --procmon`` writes) holds no ``Process Exit`` event, since
those have no path under the folder; the table still says when each process ended. On the
corpus captures that hold both, every exit in the table is at exactly the time of the
process's ``Process Exit`` event.

The analysis uses an exit as the latest moment a process's mapped sections can have lasted
(:mod:`traceaudit.analysis.sections`).
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from traceaudit.schema import PROCESS_EXIT_SCHEMA

__all__ = ["empty_exits", "joined_exits", "process_exits"]


def process_exits(processes: pl.DataFrame | None) -> pl.DataFrame:
    """The processes of a process table (:func:`~traceaudit.formats.pml.read_pml_processes`)
    that ended, in :data:`~traceaudit.schema.PROCESS_EXIT_SCHEMA` (times UTC, as the events').

    A row whose exit is before its start is left out: the table is then inconsistent (seen
    once in the corpus, a service's entry overwritten by a later start of its pid), and an
    exit that cannot be placed must not end anything.
    """
    if processes is None or processes.is_empty():
        return empty_exits()
    return (
        processes.lazy()
        .filter(
            pl.col("end_time").is_not_null()
            & (pl.col("start_time").is_null() | (pl.col("start_time") <= pl.col("end_time")))
        )
        .select(
            pl.col("pid").cast(pl.Int64),
            process=pl.col("name").cast(pl.String),
            started=pl.col("start_time").cast(pl.Datetime("ns")),
            exited=pl.col("end_time").cast(pl.Datetime("ns")),
        )
        .unique(maintain_order=True)
        .sort("exited", "pid")
        .collect()
    )


def joined_exits(parts: Iterable[pl.DataFrame | None]) -> pl.DataFrame | None:
    """The exits of the files of one rolled-over capture, each process once (every file
    repeats the table of the processes it saw); None when no part has a table."""
    frames = [part for part in parts if part is not None]
    if not frames:
        return None
    return pl.concat(frames).unique(maintain_order=True).sort("exited", "pid")


def empty_exits() -> pl.DataFrame:
    """No process exits, in the schema."""
    return pl.DataFrame(schema=PROCESS_EXIT_SCHEMA)
