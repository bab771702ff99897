"""Counts over every event of a trace, batch by batch: what the summary and completeness need.

The analysis keeps only a small part of a big trace in memory (:mod:`.event_pass`). What
it must still know about all the rest is counted here as the batches go by: how many
events and when, which processes and threads, each process's CreateFile and CloseFile
events, the handles used for I/O that never open or close in the trace, and how many
handles were open before the capture started or still open when it ended.

Every count combines a batch's figures with the running ones, so the result does not
depend on where the trace was cut into batches: one batch of the whole trace gives what
a thousand batches give. Memory follows the number of processes, threads, distinct
(process, file) pairs and handles open at one time, never the number of events; sets of
(process, file) pairs are held as 64-bit hashes (a collision among a few million pairs has
a chance below one in a million, and would shift a count by one).

Batches must come in source order (each one's events after the previous one's), as every
reader yields them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from traceaudit.analysis.handles import CLOSE_OPERATION, OPEN_OPERATION
from traceaudit.analysis.rules import path_key
from traceaudit.analysis.spill import detach
from traceaudit.display import format_expr

__all__ = ["EventTally", "TALLY_COLUMNS", "handle_io", "with_path_key"]

TALLY_COLUMNS = (
    "row",
    "time",
    "process",
    "pid",
    "tid",
    "operation",
    "path",
    "result",
    "detail",
    "event_class",
    "file_object",
)
"""The event columns the tally reads."""

# Operations that carry no handle of the process, or whose Path is not the handle's.
_NOT_HANDLE_IO = (
    "CreateFile",
    "CloseFile",
    "IRP_MJ_CLOSE",
    "QueryOpen",  # a path-based fast-I/O query: no handle
    "QueryDirectory",  # Procmon shows the directory plus the search pattern as the path
    "CreateFileMapping",
)

_NO_HASHES = pl.Series("hash", [], dtype=pl.UInt64)


def with_path_key(batch: pl.DataFrame) -> pl.DataFrame:
    """``batch`` with its folded ``path_key`` (computed once, read by every counter)."""
    if "path_key" in batch.columns:
        return batch
    return batch.with_columns(path_key=path_key("path"))


def handle_io(events: pl.LazyFrame) -> pl.LazyFrame:
    """File-system events issued through a handle of the process, keyed (pid, path).

    Paging I/O, directory listings and NTFS metadata files are left out: they use no handle
    of the process, or show a path that is not the handle's.
    """
    detail = pl.col("detail").fill_null("")
    return events.filter(
        (pl.col("event_class") == "File System")
        & ~pl.col("operation").is_in(list(_NOT_HANDLE_IO))
        & ~detail.str.contains("Paging I/O", literal=True)
        & pl.col("path").is_not_null()
        & (pl.col("path") != "")
        # NTFS metadata ($Mft, $Extend\$UsnJrnl…) is opened by the file system itself, and
        # a bare volume (``C:``) is the file system's own device.
        & ~pl.col("path").str.contains(r"\$", literal=True)
        & (pl.col("path").str.len_chars() > 3)
    )


def _pair_hash() -> pl.Expr:
    """A hash of (pid, folded path): one process's handles on one file."""
    return format_expr("{}|{}", pl.col("pid"), pl.col("path_key")).hash(seed=0)


def _handle_pair_hash() -> pl.Expr:
    """A hash of the key handles are paired on (:mod:`.handles`): the FILE_OBJECT when the
    trace has it, else (pid, folded path)."""
    return pl.coalesce(
        format_expr("fo:{}", pl.col("file_object")),
        format_expr("{}|{}", pl.col("pid"), pl.col("path_key")),
    ).hash(seed=0)


_MERGE_AT_LEAST = 1 << 16
_PENDING_SCHEMA: dict[str, pl.DataType] = {
    "hash": pl.UInt64(),
    "operation": pl.String(),
    "path": pl.String(),
    "time": pl.Datetime("ns"),
    "row": pl.UInt32(),
}


class Hashes:
    """A growing set of 64-bit hashes, fed a batch at a time.

    Merging every batch into the whole set would cost the size of the set per batch, which
    turns a hundred-million-event trace quadratic. New hashes wait in a list and are merged
    once they outnumber the merged set (or 65,536): each hash is merged O(log n) times.
    """

    def __init__(self) -> None:
        self._merged = _NO_HASHES
        self._fresh: list[pl.Series] = []
        self._waiting = 0

    def add(self, new: pl.Series) -> None:
        if not len(new):
            return
        new = new.alias("hash").unique()
        self._fresh.append(new)
        self._waiting += len(new)
        if self._waiting > max(len(self._merged), _MERGE_AT_LEAST):
            self.merged()

    def merged(self) -> pl.Series:
        """Every hash added, once each."""
        if self._fresh:
            self._merged = pl.concat([self._merged, *self._fresh]).unique()
            self._fresh, self._waiting = [], 0
        return self._merged

    def __len__(self) -> int:
        return len(self.merged())


@dataclass
class EventTally:
    """Running counts over the events of one trace; feed it batches with :meth:`add`.

    ``per_process`` holds, per pid with file-system events, the process name of its first
    one and its ``creates`` (CreateFile events), ``opens`` (successful ones) and
    ``closes`` (CloseFile events). ``io_keys`` / ``edge_keys`` are the (pid, file) hashes
    used for handle I/O / opened or closed; ``pending_io`` the first use of each I/O pair
    with no open or close so far. ``open_now`` holds, per handle key with handles open,
    how many are; ``orphan_closes`` counts closes of handles opened before the capture.
    """

    events: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    pids: set[int | None] = field(default_factory=set)
    processes: set[str] = field(default_factory=set)
    file_system_events: int = 0
    fs_tids: set[int] = field(default_factory=set)
    per_process: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(
            schema={
                "pid": pl.Int64,
                "process": pl.String,
                "time": pl.Datetime("ns"),
                "row": pl.UInt32,
                "creates": pl.Int64,
                "opens": pl.Int64,
                "closes": pl.Int64,
            }
        )
    )
    io_keys: Hashes = field(default_factory=Hashes)
    edge_keys: Hashes = field(default_factory=Hashes)
    _pending: list[pl.DataFrame] = field(default_factory=list)
    _pending_rows: int = 0
    _pending_floor: int = 0
    open_now: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={"hash": pl.UInt64, "open": pl.Int64})
    )
    orphan_closes: int = 0

    @classmethod
    def of(cls, events: pl.DataFrame) -> EventTally:
        """The tally of a whole event frame."""
        tally = cls()
        tally.add(events)
        return tally

    # ------------------------------------------------------------------ feeding
    def add(self, batch: pl.DataFrame) -> None:
        """Count one batch (the next events of the trace, in source order)."""
        if batch.is_empty():
            return
        batch = with_path_key(batch)
        self._add_totals(batch)
        fs = batch.filter(pl.col("event_class") == "File System")
        if fs.height:
            self.file_system_events += fs.height
            self.fs_tids.update(t for t in fs["tid"].unique().to_list() if t is not None)
            self._add_per_process(fs)
            self._add_io(fs)
        self._add_brackets(batch)

    def _add_totals(self, batch: pl.DataFrame) -> None:
        self.events += batch.height
        first, last = batch.select(
            first=pl.col("time").dt.epoch("ns").min(), last=pl.col("time").dt.epoch("ns").max()
        ).row(0)
        if first is not None:
            self.first_ns = first if self.first_ns is None else min(self.first_ns, first)
            self.last_ns = last if self.last_ns is None else max(self.last_ns, last)
        self.pids.update(batch["pid"].unique().to_list())
        self.processes.update(p for p in batch["process"].unique().to_list() if p is not None)

    def _add_per_process(self, fs: pl.DataFrame) -> None:
        """Per pid: its first event's process name, CreateFile, successes, CloseFile."""
        is_create = pl.col("operation") == OPEN_OPERATION
        counts = (
            fs.sort("time", "row")
            .group_by("pid", maintain_order=True)
            .agg(
                process=pl.col("process").first(),
                time=pl.col("time").first(),
                row=pl.col("row").first(),
                creates=is_create.sum().cast(pl.Int64),
                opens=(is_create & (pl.col("result") == "SUCCESS")).sum().cast(pl.Int64),
                closes=(pl.col("operation") == CLOSE_OPERATION).sum().cast(pl.Int64),
            )
        )
        self.per_process = detach(
            pl.concat([self.per_process, counts.select(self.per_process.columns)])
            .sort("time", "row")
            .group_by("pid", maintain_order=True)
            .agg(
                pl.col("process", "time", "row").first(),
                pl.col("creates", "opens", "closes").sum(),
            )
        )

    def _add_io(self, fs: pl.DataFrame) -> None:
        """Pairs used for I/O, pairs opened or closed, and I/O pairs with neither so far."""
        edges = fs.filter(pl.col("operation").is_in([OPEN_OPERATION, CLOSE_OPERATION])).select(
            hash=_pair_hash()
        )
        self.edge_keys.add(edges["hash"])
        io = (
            handle_io(fs.lazy())
            .with_columns(hash=_pair_hash())
            .sort("time", "row")
            .group_by("hash", maintain_order=True)
            .agg(pl.col("operation", "path", "time", "row").first())
            .collect()
        )
        self.io_keys.add(io["hash"])
        # First uses wait, and are checked against every pair opened or closed so far once
        # they outnumber what remained after the last check (see Hashes for why).
        self._pending.append(detach(io.select(list(_PENDING_SCHEMA))))
        self._pending_rows += io.height
        if self._pending_rows > max(2 * self._pending_floor, _MERGE_AT_LEAST):
            self._compact_pending()

    def _add_brackets(self, batch: pl.DataFrame) -> None:
        """Handles opened before the capture (closes with no open) and open right now.

        Per handle key, this batch's opens (+1) and closes (-1) in order: its net change and
        the lowest its running count falls. Starting from the handles already open, every
        step below zero is the close of a handle opened before the capture (and lifts the
        count back to zero, as :func:`~traceaudit.analysis.handles.handles` pairs them).
        """
        steps = batch.filter(
            ((pl.col("operation") == OPEN_OPERATION) & (pl.col("result") == "SUCCESS"))
            | (pl.col("operation") == CLOSE_OPERATION)
        )
        if steps.is_empty():
            return
        per_key = (
            steps.select(
                "time",
                "row",
                hash=_handle_pair_hash(),
                delta=pl.when(pl.col("operation") == OPEN_OPERATION).then(1).otherwise(-1),
            )
            .sort("hash", "time", "row")
            .with_columns(depth=pl.col("delta").cum_sum().over("hash"))
            .group_by("hash")
            .agg(net=pl.col("delta").sum(), low=pl.min_horizontal(pl.col("depth").min(), 0))
            .join(self.open_now, on="hash", how="left")
            .with_columns(carry=pl.col("open").fill_null(0))
            .with_columns(orphans=pl.max_horizontal(-(pl.col("carry") + pl.col("low")), 0))
            .with_columns(open=pl.col("carry") + pl.col("net") + pl.col("orphans"))
        )
        self.orphan_closes += int(per_key["orphans"].sum())
        touched = per_key.select("hash", "open")
        self.open_now = pl.concat(
            [self.open_now.join(touched, on="hash", how="anti"), touched.filter(pl.col("open") > 0)]
        )

    # ------------------------------------------------------------------ results
    @property
    def io_handles(self) -> int:
        """How many (process, file) pairs were used for I/O through a handle."""
        return len(self.io_keys)

    @property
    def pending_io(self) -> pl.DataFrame:
        """The first use of each I/O pair with no open or close so far."""
        return self._compact_pending()

    def _compact_pending(self) -> pl.DataFrame:
        pending = pl.concat([pl.DataFrame(schema=_PENDING_SCHEMA), *self._pending])
        pending = (
            pending.sort("time", "row")
            .unique("hash", keep="first", maintain_order=True)
            .join(self.edge_keys.merged().to_frame(), on="hash", how="anti")
        )
        self._pending, self._pending_rows = [pending], pending.height
        self._pending_floor = pending.height
        return pending

    @property
    def io_without_open(self) -> pl.DataFrame:
        """One row (``operation``, ``path`` of its first use) per I/O pair never opened or
        closed in the trace, sorted by path."""
        return self.pending_io.select("operation", "path").sort("path")

    @property
    def handles_open_at_end(self) -> int:
        return int(self.open_now["open"].sum()) if self.open_now.height else 0

    @property
    def single_thread(self) -> int | None:
        """The one thread of every file-system event, when there are several events."""
        if len(self.fs_tids) == 1 and self.file_system_events > 1:
            return next(iter(self.fs_tids))
        return None

    def span(self) -> tuple[datetime | None, datetime | None, int | None, int | None]:
        """First and last event time, and the sub-second nanoseconds of each."""
        if self.first_ns is None or self.last_ns is None:
            return None, None, None, None
        times = pl.Series([self.first_ns, self.last_ns], dtype=pl.Int64).cast(pl.Datetime("ns"))
        first, last = times.to_list()
        nanos = times.dt.nanosecond().to_list()
        return first, last, nanos[0], nanos[1]
