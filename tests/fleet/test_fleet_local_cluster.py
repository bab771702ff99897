"""``traceaudit.fleet`` on a real Dask LocalCluster (2 worker processes): the dataset's
tables, the failure row, skipping on a second run, and pooled equality with ``analyze``."""

from __future__ import annotations

import io
import multiprocessing
import shutil
from pathlib import Path

import polars as pl
import pytest
from test_fleet_units import assert_pooled_equal, good_paths, make_fleet

import traceaudit
from traceaudit.fleet.task import TABLES, content_id

pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory: pytest.TempPathFactory):
    traces = make_fleet(tmp_path_factory.mktemp("fleet") / "traces")
    # the same bytes twice in one run: one trace, whose row names the first path in order
    shutil.copyfile(traces / "machine-0" / "extract-rename.csv", traces / "machine-1" / "zz.copy")
    dataset = traces / "dataset"  # inside the input folder: never read as input
    stream = io.StringIO()
    summary = traceaudit.fleet([traces], dataset, workers=2, stream=stream)
    # the cluster stops while the summary is pooled, and is gone when fleet() returns
    assert multiprocessing.active_children() == []
    return traces, dataset, summary, stream.getvalue()


def test_the_run_counts_every_file(fleet_run):
    _, _, summary, stderr = fleet_run
    run = summary.run
    counts = (run.found, run.analysed, run.failed, run.ignored, run.skipped, run.duplicates)
    assert counts == (9, 6, 1, 1, 0, 1)
    assert run.workers == 2
    # not a terminal: no bar, one final line
    assert stderr == run.line() + "\n"
    assert stderr.startswith("fleet: 9 files: 6 analysed, 1 failed, 1 duplicate, 1 not traces")


def test_every_table_is_partitioned_by_the_traces_sha256(fleet_run):
    traces, dataset, _, _ = fleet_run
    ids = {content_id(p) for p in good_paths(traces)}
    damaged = content_id(traces / "machine-0" / "damaged.csv")
    assert {p.name for p in (dataset / "traces").iterdir()} == {
        f"trace_id={i}" for i in ids | {damaged}
    }
    for table in TABLES:
        assert {p.name for p in (dataset / table).iterdir()} == {f"trace_id={i}" for i in ids}
        files = list((dataset / table).glob("*/*"))
        assert all(f.name == "part.parquet" for f in files) and len(files) == len(ids)
    assert not any((dataset / ".tmp").iterdir())
    first = str((traces / "machine-0" / "extract-rename.csv").resolve())
    rows = pl.scan_parquet(dataset / "traces", hive_partitioning=True).collect()
    assert rows.filter(pl.col("trace_id") == content_id(first))["path"].to_list() == [first]
    episodes = pl.scan_parquet(dataset / "episodes", hive_partitioning=True).collect()
    assert {"trace_id", "episode", "horizon_ms", "blocked", "blocked_ms"} <= set(episodes.columns)
    assert episodes.height == sum(
        t.height for t in [traceaudit.analyze(p).episodes for p in good_paths(traces)]
    )


def test_the_unreadable_trace_is_recorded_with_its_error(fleet_run):
    traces, dataset, summary, _ = fleet_run
    frame = pl.scan_parquet(dataset / "traces", hive_partitioning=True).collect()
    failed = frame.filter(pl.col("status") == "error").row(0, named=True)
    assert failed["path"] == str((traces / "machine-0" / "damaged.csv").resolve())
    assert "damaged.csv: not one event could be read" in failed["error"]
    assert summary.failures["path"].to_list() == [failed["path"]]
    assert "Unread" in summary.to_text()


def test_the_pooled_results_equal_analyze_of_the_same_traces(fleet_run):
    traces, _, summary, _ = fleet_run
    assert_pooled_equal(summary, traceaudit.analyze(good_paths(traces)))
    scanner = summary.holders.filter(pl.col("holder") == "MsMpEng.exe").row(0, named=True)
    assert scanner["machines"] == 2 and scanner["failing"] == ["uv.exe"]
    text = summary.to_text()
    assert text.splitlines()[2] == "Answer:" and "across the fleet" in text


def test_a_second_run_skips_what_is_already_in_the_dataset(fleet_run, tmp_path: Path):
    traces, dataset, first, _ = fleet_run
    before = {p: p.stat().st_mtime_ns for p in dataset.glob("*/*/part.parquet")}
    copy = tmp_path / "same-bytes-new-name.csv"
    shutil.copyfile(good_paths(traces)[0], copy)  # known by content, not by path
    again = traceaudit.fleet([traces, copy], dataset, workers=1, progress=False)
    run = again.run
    assert (run.analysed, run.failed, run.skipped, run.ignored) == (0, 0, 9, 1)
    assert {p: p.stat().st_mtime_ns for p in dataset.glob("*/*/part.parquet")} == before
    assert again.policy == first.policy


def test_local_workers_run_polars_on_one_thread_even_when_the_caller_imported_it():
    """One single-threaded task per core keeps every core busy: more polars threads would
    only fight over them. polars is loaded in this process already (as in a notebook)."""
    import os

    from traceaudit.fleet.driver import _client

    before = os.environ.get("POLARS_MAX_THREADS")
    with _client(2, None) as client:  # the second worker starts in the background
        client.wait_for_workers(2, timeout=60)
        threads = client.run(pl.thread_pool_size)
    assert list(threads.values()) == [1, 1]
    assert os.environ.get("POLARS_MAX_THREADS") == before  # this process's left as it was
