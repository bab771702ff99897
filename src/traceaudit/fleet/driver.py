"""The Dask driver: every trace under some paths, analysed on a cluster, into a dataset.

:func:`fleet` discovers the files (:mod:`.discovery`), skips those already in the dataset,
sends one task per file (:func:`~traceaudit.fleet.dataset.analyse_into`) to Dask
distributed, records each result as it arrives (the worker has committed the trace when it
sees the dataset; else :class:`~traceaudit.fleet.dataset.DatasetWriter` does), and returns
the pooled summary (:func:`~traceaudit.fleet.summary.summarize`).

The cluster is a :class:`distributed.LocalCluster` of ``workers`` processes with one thread
each (polars limited to one thread per worker, as Dask does for BLAS), or an existing
cluster reached by its scheduler address: the same code path, a :class:`distributed.Client`.
On a real cluster every worker must have traceaudit installed and see the trace files at
the paths the driver sees; the dataset is written where the driver sees it (by the workers
too, when they see it at the same path).

Dask is imported only when :func:`fleet` runs: ``import traceaudit`` never loads it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from typing import Any, TextIO

import polars as pl

from traceaudit.errors import TraceauditError, UsageError
from traceaudit.fleet.dataset import DatasetWriter, analyse_into, known_traces
from traceaudit.fleet.discovery import Candidate, discover
from traceaudit.fleet.summary import FleetRun, FleetSummary, summarize
from traceaudit.fleet.task import TraceResult, failed_result

__all__ = ["fleet", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'traceaudit[fleet]'"
_CONNECT_TIMEOUT_S = 20
_WORKER_WAIT_S = 60
_POLARS_THREADS = "POLARS_MAX_THREADS"


def _distributed() -> Any:
    """The ``distributed`` module, or a UsageError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise UsageError(
            f"traceaudit fleet runs on Dask, which is not installed: {INSTALL_HINT} "
            "(dask and distributed)."
        ) from None
    return distributed


def _default_workers() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def _worker_version() -> str:
    """Run on a worker: the traceaudit version it imports."""
    from traceaudit._version import __version__

    return __version__


@contextlib.contextmanager
def _one_polars_thread_per_worker() -> Iterator[None]:
    """Local workers start with ``POLARS_MAX_THREADS=1``: one task per core already keeps
    every core busy, and more polars threads would only fight over them.

    Dask's ``env=`` is applied inside the worker after it has imported the caller's main
    module; a script or notebook that imported polars at its top would then give every
    worker a pool of one thread per core. ``pre-spawn-environ`` is set before the process
    starts, through this process's environment, which is restored when the cluster is gone
    (polars here is loaded already, so its pool does not change).
    """
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    saved = os.environ.get(_POLARS_THREADS)
    try:
        with dask.config.set({key: {**dask.config.get(key, {}), _POLARS_THREADS: "1"}}):
            yield
    finally:
        if saved is None:
            os.environ.pop(_POLARS_THREADS, None)
        else:
            os.environ[_POLARS_THREADS] = saved


def _refuse_in_worker_start() -> None:
    """A script without a ``__main__`` guard is imported again by each local worker process
    as it starts (Python's ``spawn``), and would start a cluster of its own there."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise UsageError(
            "traceaudit.fleet() was called while a Dask worker process was starting: in a "
            'script, call it under `if __name__ == "__main__":` (each local worker process '
            "imports the script again)."
        )


def _local_cluster(distributed: Any, workers: int) -> Any:
    """A :class:`distributed.LocalCluster` of ``workers`` single-threaded processes.

    One worker is started here, so that a worker that cannot start fails now with a clear
    message; the others start in the background while it already analyses traces (a
    worker process starts Python, Dask and polars: on the 2-core reference machine one was
    ready in 0.5 s, two started together in 1.3 s)."""
    try:
        cluster = distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            # any free port: the scheduler serves HTTP even with no dashboard, and 8787
            # may be another cluster's (distributed then warns, and picks another anyway)
            dashboard_address=":0",
            # a worker's own log lines (a heartbeat racing the shutdown) are noise
            # here: what goes wrong with a trace comes back with its result
            silence_logs=logging.CRITICAL,
            env={_POLARS_THREADS: "1"},
        )
    except Exception as exc:
        raise TraceauditError(
            f"the local Dask cluster could not start a worker ({type(exc).__name__}: {exc}). "
            'From a script, call traceaudit.fleet() under `if __name__ == "__main__":`, since '
            "every worker process imports the script again."
        ) from exc
    if workers > 1:
        cluster.scale(workers)
    return cluster


@contextlib.contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A connected :class:`distributed.Client`: to ``scheduler``, or to a new local cluster."""
    distributed = _distributed()
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            # for the cluster's whole life: workers started later, or restarted, too
            stack.enter_context(_one_polars_thread_per_worker())
            cluster = stack.enter_context(_local_cluster(distributed, workers))
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(
                    distributed.Client(scheduler, timeout=f"{_CONNECT_TIMEOUT_S}s")
                )
            except (OSError, TimeoutError, ValueError) as exc:
                raise TraceauditError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc}. Check the address "
                    "(tcp://host:8786) and that the scheduler is running."
                ) from None
            try:
                client.wait_for_workers(1, timeout=_WORKER_WAIT_S)
            except TimeoutError:
                raise TraceauditError(
                    f"the Dask scheduler at {scheduler} has no worker after {_WORKER_WAIT_S} s: "
                    "start some (dask worker ADDRESS --nthreads 1)."
                ) from None
            # (local workers run this very Python and traceaudit: nothing to check)
            _check_workers(client)
        yield client


def _check_workers(client: Any) -> None:
    """Fail early, with a clear message, when the workers cannot import traceaudit."""
    from traceaudit._version import __version__

    try:
        theirs = client.submit(_worker_version, pure=False).result(timeout=120)
    except (ImportError, AttributeError) as exc:
        raise TraceauditError(
            f"the Dask workers cannot run traceaudit ({exc}): install the same version "
            f"({__version__}) on every worker: {INSTALL_HINT}."
        ) from None
    if theirs != __version__:
        raise TraceauditError(
            f"the Dask workers run traceaudit {theirs}, this driver {__version__}: install "
            "the same version everywhere, or the dataset would mix two analyses."
        )


class _Progress:
    """One bar for the whole fleet on stderr when it is a terminal; else silence until
    the final one-line count."""

    def __init__(self, total: int, stream: TextIO | None, enabled: bool) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self.failed = 0
        self.start = time.monotonic()
        self._drawn = 0.0
        self._skipped = 0
        self._width = 0  # of the bar on screen, erased with spaces (no ANSI escape: the
        # Windows console of old shows those as text)

    def advance(self, n: int = 1, *, failed: bool = False, skipped: bool = False) -> None:
        """``n`` more files done; ``skipped`` ones (known before the run) took no time and
        stay out of the estimate of the time left."""
        self.done += n
        self.failed += int(failed)
        if skipped:
            self._skipped += n
        now = time.monotonic()
        if self.tty and (now - self._drawn > 0.1 or self.done == self.total):
            self._drawn = now
            width = 30
            filled = int(width * self.done / self.total) if self.total else width
            failed_text = f", {self.failed:,} failed" if self.failed else ""
            elapsed = now - self.start
            worked = self.done - self._skipped
            left = ""
            if worked > 0 and self.done < self.total:
                left = f", about {elapsed / worked * (self.total - self.done):,.0f} s left"
            line = (
                f"[{'#' * filled}{'.' * (width - filled)}] {self.done:,}/{self.total:,} "
                f"files{failed_text}, {elapsed:,.1f} s{left}"
            )
            self.stream.write("\r" + line.ljust(self._width))
            self.stream.flush()
            self._width = max(self._width, len(line))

    def finish(self, line: str) -> None:
        if not self.enabled:
            return
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
        self.stream.write(line + "\n")
        self.stream.flush()


def _check_options(
    workers: int | None, scheduler: str | None, target: float, max_wait_ms: float | None
) -> None:
    if workers is not None and scheduler is not None:
        raise UsageError(
            "--workers and --scheduler exclude each other: --workers starts a local cluster, "
            "--scheduler uses an existing one."
        )
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be at least 1, got {workers!r}")
    if not 0 < target <= 1:
        raise UsageError(f"target must be in (0, 1], got {target!r}")
    if max_wait_ms is not None and not max_wait_ms >= 0:
        raise UsageError(f"max_wait_ms must be ≥ 0, got {max_wait_ms!r}")


def fleet(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    target: float = 0.99,
    max_wait_ms: float | None = None,
    date: Date | None = None,
    strict: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
) -> FleetSummary:
    """Analyse every trace under ``paths`` on Dask into the Parquet dataset ``output``.

    ``paths``: trace files, folders (walked recursively; files no reader recognises are
    ignored) and glob patterns. ``workers``: size of the local cluster (default: one
    process per core); ``scheduler``: the address of an existing cluster instead
    (``tcp://host:8786``). Traces already in ``output`` (same sha256 of their bytes) are
    skipped; a trace that cannot be read is recorded with its error and never stops the
    run. ``target``, ``max_wait_ms``, ``date`` and ``strict`` mean what they mean for
    :func:`traceaudit.analyze`. ``progress``: a bar on ``stream`` (stderr) when it is a
    terminal, and a final one-line count.

    Returns the pooled :class:`~traceaudit.fleet.summary.FleetSummary` of the whole dataset.
    """
    _check_options(workers, scheduler, target, max_wait_ms)
    _refuse_in_worker_start()
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise UsageError("give at least one trace file, folder or glob pattern.")
    dataset = Path(output)
    if dataset.exists() and not dataset.is_dir():
        raise UsageError(f"{dataset}: the output must be a folder (the dataset), not a file.")
    if dataset.is_dir() and not (dataset / "traces").is_dir() and any(dataset.iterdir()):
        # e.g. `-o captures` for the traces' own folder: never write tables among them
        raise UsageError(
            f"{dataset}: this folder holds other files and is not a fleet dataset; give a new "
            "or empty folder, or the dataset of an earlier run, as the output."
        )
    candidates = discover(items, exclude=dataset)
    _distributed()  # fail on a missing Dask before anything is written
    n_workers = workers if workers is not None else _default_workers()
    start = time.perf_counter()
    bar = _Progress(len(candidates), stream, progress)
    plan = _Plan.make(known_traces(dataset), candidates)
    bar.advance(plan.counts["skipped"], skipped=True)
    cluster = contextlib.ExitStack()
    try:
        # the cluster first: an address that does not answer leaves no dataset behind
        client = cluster.enter_context(_client(n_workers, scheduler)) if plan.todo else None
        with DatasetWriter(dataset) as writer:
            if client is not None:
                _run(client, writer, plan, date, strict, bar)
        rolled = [c for c in candidates if c.parts]
        run = FleetRun(
            found=len(candidates) + sum(len(c.parts) - 1 for c in rolled),
            rolled_over=sum(len(c.parts) for c in rolled),
            captures=len(rolled),
            seconds=time.perf_counter() - start,
            workers=None if scheduler else n_workers,
            scheduler=scheduler,
            **plan.counts,
        )
        bar.finish(run.line())
        # Worker processes take a second or two to exit: the summary is pooled meanwhile.
        closing = threading.Thread(
            target=_close_quietly, args=(cluster,), name="traceaudit-fleet-close"
        )
        closing.start()
        try:
            return summarize(dataset, target=target, max_wait_ms=max_wait_ms, run=run)
        finally:
            closing.join()
    finally:
        cluster.close()  # when anything failed before the thread took it (else a no-op)


def _close_quietly(cluster: contextlib.ExitStack) -> None:
    """Stop the client and the local cluster; every result is written by then, so a
    hiccup of Dask's shutdown is no concern of the user's."""
    with contextlib.suppress(Exception):
        cluster.close()


@dataclass
class _Plan:
    """What a run has to do, from the ``traces`` table already in the dataset."""

    todo: list[Candidate]
    ids: frozenset[str]
    """content ids already in the dataset: a file found with one is skipped"""
    path_ids: dict[str, str]
    """path -> id of the files recorded as unreadable by path (tried again)"""
    counts: dict[str, int]

    @classmethod
    def make(cls, known: pl.DataFrame, candidates: list[Candidate]) -> _Plan:
        """A file whose path, size and modification time match a trace analysed before is
        skipped without reading it; any other is hashed on a worker and skipped there when
        its content is known."""
        content = known.filter(pl.col("id_from") == "content")
        by_stat = {
            (r["path"], r["size_bytes"], r["mtime_ns"])
            for r in content.select("path", "size_bytes", "mtime_ns").iter_rows(named=True)
        }
        path_ids = {
            r["path"]: r["trace_id"]
            for r in known.filter(pl.col("id_from") == "path")
            .select("path", "trace_id")
            .iter_rows(named=True)
        }
        todo = [c for c in candidates if (c.path, c.size, c.mtime_ns) not in by_stat]
        counts = {"analysed": 0, "failed": 0, "skipped": 0, "ignored": 0, "duplicates": 0}
        counts["skipped"] = len(candidates) - len(todo)
        return cls(todo, frozenset(content["trace_id"].to_list()), path_ids, counts)


def _run(
    client: Any,
    writer: DatasetWriter,
    plan: _Plan,
    date: Date | None,
    strict: bool,
    bar: _Progress,
) -> None:
    """Send one task per file of ``plan.todo`` and commit each result as it arrives."""
    distributed = _distributed()
    counts, ids, todo = plan.counts, plan.ids, plan.todo
    written: dict[str, tuple[str, pl.DataFrame]] = {}  # id -> the path its row names, the row

    def record(candidate: Candidate, result: TraceResult) -> None:
        failed = result.status == "error"
        if result.status == "not-a-trace":
            counts["ignored"] += 1
        elif result.status == "skipped" or result.trace_id in ids:
            counts["skipped"] += 1
        elif result.trace_id in written:
            # The same bytes under two paths: one trace, its row naming the first path in
            # order, whichever worker finished last (both may have committed it).
            counts["duplicates"] += 1
            failed = False
            assert result.trace is not None
            first = min(written[result.trace_id], (result.path, result.trace), key=lambda w: w[0])
            written[result.trace_id] = first
            writer.put_row(result.trace_id, first[1])
        else:
            assert result.trace_id is not None and result.trace is not None
            writer.write(result)
            written[result.trace_id] = (result.path, result.trace)
            counts["failed" if failed else "analysed"] += 1
            stale = plan.path_ids.get(candidate.path)
            if stale is not None and stale != result.trace_id:
                writer.remove(stale)  # it failed to open before; now it has a content id
        bar.advance(failed=failed)

    [known_ids] = client.scatter([ids], broadcast=True)
    token = secrets.token_hex(4)
    n = len(todo)
    futures = client.map(
        analyse_into,
        [c.path for c in todo],
        [str(writer.root)] * n,
        [str(writer.tmp)] * n,
        [c.sniff for c in todo],
        [list(c.parts) for c in todo],
        known=known_ids,
        date=date,
        strict=strict,
        key=[f"traceaudit-fleet-{token}-{k}" for k in range(n)],
        pure=False,
    )
    pending = {f.key: (f, c) for f, c in zip(futures, todo, strict=True)}
    finished = distributed.as_completed(
        [f for f, _ in pending.values()], with_results=True, raise_errors=False
    )
    for future, outcome in finished:
        _, candidate = pending.pop(future.key)
        future.release()
        if isinstance(outcome, TraceResult):
            result = outcome
        else:  # the worker died, or the task could not run there
            result = failed_result(
                candidate.path,
                f"the task failed on the cluster ({type(outcome).__name__}: {outcome})",
                date=date,
                strict=strict,
            )
        record(candidate, result)
