"""``scan_trace``: a trace as a polars LazyFrame whose projections and filters reach the reader.

The rows of a scan are exactly the rows ``load_trace`` reads (in source order); a query's
columns and a filter on the cheap columns are handed to the reader, a ``head(n)`` stops the
reading early, and a file that is no trace fails when it is scanned, with the message
``load_trace`` gives.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import traceaudit
from locations import SAMPLES
from traceaudit.errors import UnknownFormatError
from traceaudit.formats import load_trace, registry, scan_trace
from traceaudit.schema import EVENT_SCHEMA

CORPUS_FILES = [
    "procmon-csv/monitorapis.csv",
    "procmon-pml/ron-crash-a.pml",
    "procmon-xml/defender-scan-russian.xml",
    "procmon-pairs/UTC32Filesystem.pml.gz",
    "etl/perfview-net452-x64.etl.zip",
]


def in_source_order(path: Path) -> pl.DataFrame:
    return load_trace(path).events.sort("row")


def test_a_scan_holds_what_load_trace_reads():
    path = SAMPLES / "uv-extract-rename.csv"
    scanned = scan_trace(path).collect()
    assert scanned.schema == pl.Schema(EVENT_SCHEMA)
    assert scanned.equals(in_source_order(path))


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_format_scans_to_what_it_reads(corpus, name):
    path = corpus / name
    assert scan_trace(path).collect().equals(in_source_order(path))


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_a_query_gets_its_columns_and_rows(corpus, name):
    path = corpus / name
    query = (
        scan_trace(path)
        .filter(pl.col("operation") == "CreateFile")
        .filter(pl.col("path").str.contains("(?i)windows"))
        .select("row", "path", "result")
    )
    want = (
        in_source_order(path)
        .filter(pl.col("operation") == "CreateFile")
        .filter(pl.col("path").str.contains("(?i)windows"))
        .select("row", "path", "result")
    )
    assert query.collect().equals(want)


def test_the_reader_is_told_the_columns_and_the_cheap_filter(monkeypatch, tmp_path):
    calls = []
    csv = registry.get_format("procmon-csv")
    real = csv.batch_reader()

    def spying(trace_input, **options):
        calls.append(options)
        return real(trace_input, **options)

    monkeypatch.setattr(type(csv), "batch_reader", lambda self: spying)
    lazy = scan_trace(SAMPLES / "uv-extract-rename.csv")
    failed = lazy.filter(pl.col("result") != "SUCCESS").select("time", "path").collect()
    assert failed.height > 0 and failed.columns == ["time", "path"]
    (options,) = calls
    assert set(options["columns"]) == {"time", "path", "result"}
    assert options["keep"] is not None and options["keep"].meta.root_names() == ["result"]

    # A filter on a decoded column (path) is not the reader's to apply: it is applied after.
    calls.clear()
    lazy.filter(pl.col("path").str.ends_with(".dll")).select("row").collect()
    assert calls[0]["keep"] is None and "path" in calls[0]["columns"]


def test_head_stops_reading(monkeypatch, tmp_path):
    path = tmp_path / "mix.csv"
    traceaudit.simulate_mix(5_000, seed=2).write_csv(path)
    assert (
        scan_trace(path, batch_rows=100).head(250).collect().equals(in_source_order(path).head(250))
    )
    # Once the rows are there, the reader's later batches are never made.
    made: list[int] = []
    csv = registry.get_format("procmon-csv")
    reader = csv.batch_reader()

    def counting(trace_input, **options):
        batches = reader(trace_input, **options)
        batches.frames = (made.append(f.height) or f for f in batches.frames)
        return batches

    monkeypatch.setattr(type(csv), "batch_reader", lambda self: counting)
    assert scan_trace(path, batch_rows=100).head(250).collect().height == 250
    assert 3 <= len(made) <= 4


def test_error_scanning_a_file_that_is_no_trace(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\neggs\nmilk\n", encoding="utf-8")
    with pytest.raises(UnknownFormatError) as caught:
        scan_trace(path)
    assert str(caught.value) == str(_load_error(path))


def _load_error(path: Path) -> Exception:
    try:
        load_trace(path)
    except UnknownFormatError as error:
        return error
    raise AssertionError("load_trace read it")


def test_error_scanning_a_missing_file(tmp_path):
    with pytest.raises(Exception) as caught:
        scan_trace(tmp_path / "gone.pml")
    with pytest.raises(Exception) as loaded:
        load_trace(tmp_path / "gone.pml")
    assert type(caught.value) is type(loaded.value)
    assert str(caught.value) == str(loaded.value)


def test_a_parquet_trace_scans_to_what_it_reads(tmp_path):
    from traceaudit.formats.parquet import write_parquet

    path = tmp_path / "trace.parquet"
    with path.open("wb") as handle:
        write_parquet(load_trace(SAMPLES / "mixed-small.csv"), handle)
    assert scan_trace(path).collect().equals(in_source_order(path))
