"""One pass over a trace, batch by batch: keep the events the analysis needs, count the rest.

A capture of a hundred million events holds a few thousand that decide the answer: the
failures, the retries behind them, and the opens, closes and mappings of the files that
failed. :class:`EventPass` reads the batches once and keeps exactly those, so memory follows
the number of failures and of handles on the failing files, not the size of the trace:

* **failures**: every event :func:`~traceaudit.analysis.conflicts.lock_failures` keeps;
* **retries**: every later file-system event of a (process, operation, file) that has
  failed, the attempts :func:`~traceaudit.analysis.retries.retry_chains` groups. Events
  of the batch before are checked too, so a retry whose row comes a little before its
  failure's (times of events from different processors interleave) is not lost;
* **handles and sections**: successful CreateFile, CloseFile, CreateFileMapping and image
  loads, set aside (:class:`~traceaudit.analysis.spill.FrameSpill`, on disk once large)
  until every failure is known; then only those on a failing file, below it, or on a rename
  target are kept. Every open and close of such a file is kept, so its handles pair exactly
  as they do in the whole trace;
* **process exits** (they end a process's sections).

Everything else is counted by :class:`~traceaudit.analysis.tally.EventTally` (events,
processes, threads, opens and closes per process, I/O without an open, handles open at the
edges), which is all the summary and :mod:`.completeness` need.

The kept events have :data:`KEPT_COLUMNS` and run through the same stages as a whole trace
would, with the same result: the handles are those on the failing files (numbered in the
same order as among all the trace's handles), and everything derived from them is equal.
"""

from __future__ import annotations

from types import TracebackType

import polars as pl

from traceaudit.analysis.conflicts import is_lock_failure
from traceaudit.analysis.handles import CLOSE_OPERATION, OPEN_OPERATION
from traceaudit.analysis.rules import SEP, path_key
from traceaudit.analysis.sections import is_mapping
from traceaudit.analysis.spill import MEMORY_LIMIT, FrameSpill, detach
from traceaudit.analysis.tally import TALLY_COLUMNS, EventTally, with_path_key
from traceaudit.display import format_expr
from traceaudit.schema import EVENT_SCHEMA

__all__ = ["EventPass", "KEPT_COLUMNS", "PASS_COLUMNS"]

KEPT_COLUMNS = (
    "row",
    "time",
    "process",
    "pid",
    "tid",
    "operation",
    "path",
    "result",
    "event_class",
    "access_mask",
    "share_mode",
    "create_options",
    "is_directory",
    "delete_on_close",
    "rename_target",
    "file_object",
)
"""The columns of the events the analysis keeps (no Detail: its parts are parsed)."""

PASS_COLUMNS = tuple(dict.fromkeys((*KEPT_COLUMNS, *TALLY_COLUMNS)))
"""The event columns a pass reads: what it keeps plus what the tally counts."""


def _attempt_hash() -> pl.Expr:
    """A hash of (pid, operation, folded path): what makes two events the same attempt."""
    return format_expr("{}|{}|{}", pl.col("pid"), pl.col("operation"), pl.col("path_key")).hash(
        seed=0
    )


def _on_failing_paths(frame: pl.DataFrame, same: pl.Series, roots: pl.Series) -> pl.DataFrame:
    """The rows of ``frame`` whose path is in ``same`` or strictly below one of ``roots``.

    The distinct folded paths, sorted, put every descendant of ``r`` in one run from
    ``r + "\\"`` up to ``r + "]"`` (the character after the backslash), so two binary
    searches per root find them.
    """
    keyed = frame.with_columns(path_key=path_key("path"))
    keys = keyed["path_key"].drop_nulls().unique().sort()
    wanted = same
    if len(roots) and len(keys):
        lo = keys.search_sorted(roots + SEP, side="left")
        hi = keys.search_sorted(roots + chr(ord(SEP) + 1), side="left")
        positions = (
            pl.DataFrame({"lo": lo, "hi": hi})
            .filter(pl.col("hi") > pl.col("lo"))
            .select(position=pl.int_ranges("lo", "hi"))
            .explode("position")["position"]
        )
        wanted = pl.concat([same, keys.gather(positions)])
    return keyed.filter(pl.col("path_key").is_in(wanted.implode())).drop("path_key")


class EventPass:
    """Feed a trace's batches to :meth:`add` in source order, then take :meth:`kept`.

    Use it as a context manager: events set aside on disk are removed on leaving it.
    """

    def __init__(self, memory_limit: int | None = None) -> None:
        """``memory_limit``: bytes of handle events held in memory before they go to disk
        (default :data:`~traceaudit.analysis.spill.MEMORY_LIMIT`)."""
        self.tally = EventTally()
        self._failures: list[pl.DataFrame] = []
        self._retries: list[pl.DataFrame] = []
        self._exits: list[pl.DataFrame] = []
        self._aside = FrameSpill(MEMORY_LIMIT if memory_limit is None else memory_limit)
        self._failing = pl.Series("hash", [], dtype=pl.UInt64)
        self._previous: pl.DataFrame | None = None

    def add(self, batch: pl.DataFrame) -> None:
        """Count one batch and keep what the analysis needs of it."""
        if batch.is_empty():
            return
        batch = with_path_key(batch)
        self.tally.add(batch)
        opened_or_closed = (
            (pl.col("operation") == OPEN_OPERATION) & (pl.col("result") == "SUCCESS")
        ) | (pl.col("operation") == CLOSE_OPERATION)
        marked = batch.select(
            *KEPT_COLUMNS,
            "path_key",
            failure=is_lock_failure().fill_null(False),
            aside=(opened_or_closed | is_mapping()).fill_null(False),
            exit=(pl.col("operation") == "Process Exit").fill_null(False),
            file_system=(pl.col("event_class") == "File System").fill_null(False),
        )
        failures = marked.filter(pl.col("failure"))
        # detach(): the few rows kept must not hold on to the whole batch's strings
        self._failures.append(detach(failures.select(KEPT_COLUMNS)))
        rest = marked.filter(~pl.col("failure"))
        self._aside.add(rest.filter(pl.col("aside")).select(KEPT_COLUMNS))
        self._exits.append(
            detach(rest.filter(~pl.col("aside") & pl.col("exit")).select(KEPT_COLUMNS))
        )
        self._keep_retries(
            failures,
            rest.filter(~pl.col("aside") & ~pl.col("exit") & pl.col("file_system")),
        )

    def _keep_retries(self, failures: pl.DataFrame, others: pl.DataFrame) -> None:
        """Keep the events of attempts that have failed, in this batch and the one before."""
        if failures.height:
            new = failures.select(hash=_attempt_hash())["hash"]
            self._failing = pl.concat([self._failing, new]).unique()
        others = others.select(*KEPT_COLUMNS, hash=_attempt_hash())
        candidates = others if self._previous is None else pl.concat([self._previous, others])
        failing = pl.col("hash").is_in(self._failing.implode())
        self._retries.append(detach(candidates.filter(failing).select(KEPT_COLUMNS)))
        self._previous = others.filter(~failing)

    def kept(self) -> pl.DataFrame:
        """The events kept, sorted by (time, row), with :data:`KEPT_COLUMNS`; once: the
        pass hands them over and forgets them."""
        failures = _concat(self._failures)
        same = (
            pl.concat(
                [
                    failures.select(key=path_key("path"))["key"],
                    failures.select(key=path_key("rename_target"))["key"],
                ]
            )
            .drop_nulls()
            .unique()
        )
        roots = failures.select(key=path_key("path"))["key"].drop_nulls().unique().sort()
        on_paths = self._aside.select(lambda frame: _on_failing_paths(frame, same, roots))
        retries, exits = self._retries, self._exits
        # Taken, not copied: the pieces would otherwise stay alive beside the result.
        self._failures, self._retries, self._exits, self._previous = [], [], [], None
        self._aside.close()
        events = _concat([failures, *retries, *on_paths, *exits])
        del failures, retries, on_paths, exits
        return events.sort("time", "row")

    def close(self) -> None:
        self._aside.close()

    def __enter__(self) -> EventPass:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema={c: EVENT_SCHEMA[c] for c in KEPT_COLUMNS})
    return pl.concat(frames, how="vertical_relaxed")
