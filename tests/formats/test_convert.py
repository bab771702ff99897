"""``traceaudit convert`` and ``traceaudit formats``."""

from __future__ import annotations

import polars as pl
import pytest
from click.testing import CliRunner

from locations import SAMPLES
from traceaudit.cli import main
from traceaudit.errors import UsageError
from traceaudit.formats import load_trace
from traceaudit.formats.convert import convert, write_events

SAMPLES = SAMPLES
UV = SAMPLES / "uv-extract-rename.csv"


def test_parquet_round_trips_exactly(tmp_path):
    trace, written = convert(UV, tmp_path / "events.parquet")
    back = load_trace(written)
    assert back.format == "parquet (procmon-csv)" and back.clock == "local"
    assert back.events.equals(trace.events)
    assert back.events.schema == trace.events.schema


def test_converted_parquet_analyses_like_the_original(tmp_path):
    result = CliRunner().invoke(main, ["convert", str(UV), "-o", str(tmp_path / "e.parquet")])
    assert result.exit_code == 0 and "287 events from procmon-csv" in result.stderr
    text = CliRunner().invoke(main, ["analyze", str(tmp_path / "e.parquet")]).output
    assert "5 conflicts on 1 path: 5 blocked by another process." in text


def test_csv_output_has_one_column_per_field_and_iso_times(tmp_path):
    _, written = convert(UV, tmp_path / "events.csv")
    frame = pl.read_csv(written, infer_schema=False)
    assert frame.height == 287
    assert frame.columns[:3] == ["row", "time", "process"] and "duration_ms" in frame.columns
    assert frame["time"][0] == "2024-07-15T11:27:00.1159911"


def test_formats_lists_every_reader():
    output = CliRunner().invoke(main, ["formats"]).output
    names = [line.split()[0] for line in output.splitlines()]
    assert {"procmon-csv", "procmon-clipboard", "procmon-xml", "parquet"} <= set(names)


def test_error_convert_unknown_extension(tmp_path):
    result = CliRunner().invoke(main, ["convert", str(UV), "-o", str(tmp_path / "events.txt")])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: events.txt: cannot tell the output format from the extension; name it .parquet "
        "or .csv, or pass --to parquet|csv.\n"
    )


def test_error_convert_refuses_to_overwrite_its_input(tmp_path):
    copy = tmp_path / "trace.csv"
    copy.write_bytes(UV.read_bytes())
    trace = load_trace(copy)
    with pytest.raises(UsageError) as info:
        write_events(trace, copy, format="csv")
    assert str(info.value) == f"{copy}: this is the input trace; write the output to another file."
    assert copy.read_bytes() == UV.read_bytes()
