"""The fleet dataset on disk: one Parquet file per table and trace, Hive-partitioned.

::

    DATASET/
      traces/trace_id=<sha256>/part.parquet      one row: path, status, error, counts…
      conflicts/trace_id=<sha256>/part.parquet   one row per failed operation
      blockers/trace_id=<sha256>/part.parquet    one row per (conflict, blocking handle)
      episodes/trace_id=<sha256>/part.parquet    one row per lock episode, its blocked intervals
      retries/trace_id=<sha256>/part.parquet     one row per retry chain, with its assessment
      .tmp/                                      files being written (never inside a table)

``trace_id`` is the sha256 of the trace file's bytes; it is not stored in the files, the
partition folders carry it (``pl.scan_parquet(DATASET / "conflicts", hive_partitioning=True)``,
DuckDB's ``read_parquet('DATASET/conflicts/*/*.parquet', hive_partitioning = true)``,
Spark's ``spark.read.parquet("DATASET/conflicts")``).

Writes are atomic per partition: a file is written under ``.tmp/`` and renamed into its
partition folder, so a reader, or a run that was killed, never leaves half a file. A
trace's tables are written first and its ``traces`` row last: a trace is in the dataset
(and skipped by the next run) only once all its tables are. :func:`read_table` reads only
the tables of such complete, successfully analysed traces. The workers commit a trace
themselves when they see the dataset (the same machine, or a shared file system), which
leaves the driver nothing to write per trace; otherwise the tables travel back and the
driver commits them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Collection
from datetime import date as Date
from pathlib import Path

import polars as pl

from traceaudit.fleet.task import TABLES, TRACE_SCHEMA, TraceResult, analyse_file

__all__ = [
    "ALL_TABLES",
    "DatasetWriter",
    "analyse_into",
    "commit",
    "put_partition",
    "known_traces",
    "read_table",
    "scan_table",
    "table_files",
]

ALL_TABLES = ("traces", *TABLES)
PART = "part.parquet"
TMP = ".tmp"
_STALE_S = 3600.0
_REPLACE_RETRIES = (0.01, 0.05, 0.1, 0.25, 0.5)


def _partition(root: Path, table: str, trace_id: str) -> Path:
    return root / table / f"trace_id={trace_id}"


def table_files(dataset: str | os.PathLike[str], table: str) -> list[Path]:
    """The Parquet files of ``table`` (one per trace), in no particular order."""
    folder = Path(dataset) / table
    if not folder.is_dir():
        return []
    return [
        entry / PART
        for entry in folder.iterdir()
        if entry.name.startswith("trace_id=") and (entry / PART).is_file()
    ]


def scan_table(dataset: str | os.PathLike[str], table: str) -> pl.LazyFrame:
    """Every partition of ``table`` as one lazy frame, with ``trace_id`` from the folders.

    Includes the partitions of traces whose run was interrupted before their ``traces``
    row was written; :func:`read_table` leaves those out.
    """
    if table not in ALL_TABLES:
        from traceaudit.errors import UsageError

        raise UsageError(f"unknown fleet table {table!r}; choose one of: {', '.join(ALL_TABLES)}")
    files = table_files(dataset, table)
    if not files:
        schema = {"trace_id": pl.String(), **TRACE_SCHEMA} if table == "traces" else {}
        return pl.LazyFrame(schema=schema or {"trace_id": pl.String()})
    return pl.scan_parquet(
        sorted(files),
        hive_partitioning=True,
        hive_schema={"trace_id": pl.String},
        missing_columns="insert",
        extra_columns="ignore",
    )


def known_traces(dataset: str | os.PathLike[str]) -> pl.DataFrame:
    """The ``traces`` table: one row per trace in the dataset, analysed or failed."""
    return scan_table(dataset, "traces").collect()


def read_table(
    dataset: str | os.PathLike[str],
    table: str,
    columns: list[str] | None = None,
    *,
    known: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """``table`` with ``trace_id``, in path order: for ``traces``, every trace (failed ones
    too); for the others, the rows of the traces analysed successfully. ``known``: the
    ``traces`` table when the caller has read it already (:func:`known_traces`)."""
    every = known_traces(dataset) if known is None else known
    if table == "traces":
        frame = every.sort("path", maintain_order=True)
        return frame if columns is None else frame.select("trace_id", *columns)
    traces = every.filter(pl.col("status") == "ok").select("trace_id", _trace_path=pl.col("path"))
    lazy = scan_table(dataset, table)
    if columns is not None:
        lazy = lazy.select("trace_id", *columns)
    frame = lazy.collect()
    if "trace_id" not in frame.columns:  # no partition at all
        return frame
    return (
        frame.join(traces, on="trace_id", how="inner", maintain_order="left")
        .sort("_trace_path", maintain_order=True)
        .drop("_trace_path")
    )


def put_partition(root: Path, tmp: Path, table: str, trace_id: str, frame: pl.DataFrame) -> None:
    """Write one partition atomically: to a temporary file under ``tmp`` (same volume),
    then renamed over ``root/table/trace_id=<id>/part.parquet``."""
    folder = _partition(root, table, trace_id)
    folder.mkdir(exist_ok=True)
    temporary = tmp / f"{table}-{trace_id}-{secrets.token_hex(4)}.parquet"
    try:
        frame.write_parquet(temporary, compression="zstd")
        _replace(temporary, folder / PART)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _replace(source: Path, target: Path) -> None:
    """``os.replace``, retried a few times on Windows, where a file another process has open
    (a reader of the dataset, or a second worker committing the same content) cannot be
    replaced for a moment: the sharing violation this project is about."""
    for delay in _REPLACE_RETRIES:
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if os.name != "nt":
                raise
            time.sleep(delay)
    os.replace(source, target)


def commit(root: Path, tmp: Path, result: TraceResult) -> None:
    """Put one trace in the dataset: its tables first (for a failed trace, what an earlier
    attempt left is removed instead), its ``traces`` row last."""
    assert result.trace_id is not None and result.trace is not None
    for table in TABLES:
        frame = result.tables.get(table)
        if frame is not None:
            put_partition(root, tmp, table, result.trace_id, frame)
        else:
            shutil.rmtree(_partition(root, table, result.trace_id), ignore_errors=True)
    put_partition(root, tmp, "traces", result.trace_id, result.trace)


def analyse_into(
    path: str,
    dataset: str,
    tmp: str,
    sniff: bool = False,
    parts: Collection[str] = (),
    *,
    known: Collection[str] = frozenset(),
    date: Date | None = None,
    strict: bool = False,
) -> TraceResult:
    """Run on a worker: :func:`~traceaudit.fleet.task.analyse_file`, then :func:`commit`
    the trace straight into the dataset when this worker sees the run's temporary folder
    ``tmp`` (a shared file system, or the same machine). Otherwise the tables travel back
    to the driver, which commits them. The ``traces`` row always travels back too (a
    single row): the driver needs it when two files of a run hold the same bytes."""
    result = analyse_file(path, parts=parts, sniff=sniff, known=known, date=date, strict=strict)
    if result.trace is not None and result.trace_id is not None and os.path.isdir(tmp):
        commit(Path(dataset), Path(tmp), result)
        result.tables = {}
        result.written = True
    return result


class DatasetWriter:
    """Creates the dataset's folders and commits :class:`~traceaudit.fleet.task.TraceResult`
    partitions atomically; ``tmp`` is this run's folder for files being written."""

    def __init__(self, dataset: str | os.PathLike[str]) -> None:
        self.root = Path(dataset).absolute()
        if self.root.exists() and not self.root.is_dir():
            from traceaudit.errors import UsageError

            raise UsageError(f"{self.root}: the output must be a folder (the dataset), not a file.")
        for table in ALL_TABLES:
            (self.root / table).mkdir(parents=True, exist_ok=True)
        tmp = self.root / TMP
        tmp.mkdir(exist_ok=True)
        self._clean_stale(tmp)
        self.tmp = tmp / f"run-{os.getpid()}-{secrets.token_hex(8)}"
        self.tmp.mkdir()

    @staticmethod
    def _clean_stale(tmp: Path) -> None:
        """Remove what runs killed long ago left under ``.tmp`` (never in a table)."""
        now = time.time()
        for entry in tmp.iterdir():
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > _STALE_S:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def _put(self, table: str, trace_id: str, frame: pl.DataFrame) -> None:
        put_partition(self.root, self.tmp, table, trace_id, frame)

    def write(self, result: TraceResult) -> None:
        """Commit one trace, unless its worker did (:func:`commit`)."""
        if not result.written:
            commit(self.root, self.tmp, result)

    def put_row(self, trace_id: str, row: pl.DataFrame) -> None:
        """Replace a committed trace's ``traces`` row (which of two identical files it
        names)."""
        self._put("traces", trace_id, row)

    def remove(self, trace_id: str) -> None:
        """Take a trace out of the dataset: its ``traces`` row first, then its tables."""
        for table in ALL_TABLES:
            shutil.rmtree(_partition(self.root, table, trace_id), ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
