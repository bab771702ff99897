"""Procmon XML exports: the real localized export in the corpus, and simulated traces
written as XML, which must analyse exactly like the same trace as CSV."""

from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import escape

import polars as pl
import pytest

from traceaudit import analyze
from traceaudit.errors import MissingColumnsError, TraceFormatError
from traceaudit.formats import detect, load_trace
from traceaudit.simulation.generate import simulate


def write_procmon_xml(csv_path: Path, xml_path: Path) -> None:
    """Procmon's XML layout for the rows of a Procmon CSV (test helper)."""
    import csv

    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    parts = [
        '\ufeff<?xml version="1.0" encoding="UTF-8"?>\n<procmon><processlist></processlist>\n<eventlist>\n'
    ]
    for row in rows:
        parts.append("<event>\n")
        for column, value in row.items():
            # "&" cannot stand in an element name; the Date & Time column is written as
            # Date_Time here (the reader folds any run of non-alphanumerics to "_").
            tag = column.replace(" & ", "_").replace(" ", "_")
            parts.append(f"<{tag}>{escape(value)}</{tag}>\n")
        parts.append("</event>\n")
    parts.append("</eventlist>\n</procmon>\n")
    xml_path.write_text("".join(parts), encoding="utf-8")


def test_localized_export_reads_every_event(corpus):
    path = corpus / "procmon-xml" / "defender-scan-russian.xml"
    expected = len(re.findall(rb"<event>", path.read_bytes()))
    trace = load_trace(path)
    assert trace.format == "procmon-xml" == detect(path)
    assert trace.events.height == expected == 543
    assert not trace.skipped
    first = trace.events.row(0, named=True)
    assert (first["process"], first["operation"], first["pid"]) == (
        "MpCmdRun.exe",
        "Process Start",
        6824,
    )
    # comma decimal, 100 ns kept
    assert trace.events.select(pl.col("time").dt.strftime("%Y-%m-%d %H:%M:%S%.9f")).item(0, 0) == (
        "2000-01-01 19:04:47.395537800"
    )
    assert set(trace.events["process"]) == {"MpCmdRun.exe", "MsMpEng.exe"}


@pytest.mark.parametrize("family", ["extract-rename", "replace-under-indexer", "censored"])
def test_xml_of_a_simulated_trace_analyses_like_its_csv(tmp_path, family):
    csv_path, xml_path = tmp_path / "t.csv", tmp_path / "t.xml"
    simulate(family, seed=3).write_csv(csv_path)
    write_procmon_xml(csv_path, xml_path)
    from_csv, from_xml = analyze(csv_path), analyze(xml_path)
    assert from_xml.traces[0].format == "procmon-xml"
    key = ["row", "time", "verdict", "n_blockers", "remaining_ms"]
    assert from_xml.conflicts.select(key).equals(from_csv.conflicts.select(key))
    assert from_xml.events.drop("trace").equals(from_csv.events.drop("trace"))


def test_truncated_xml_keeps_the_events_before_the_cut(tmp_path):
    csv_path, xml_path = tmp_path / "t.csv", tmp_path / "t.xml"
    simulate("extract-rename", seed=1).write_csv(csv_path)
    write_procmon_xml(csv_path, xml_path)
    data = xml_path.read_bytes()
    cut = data[: data.index(b"<event>", len(data) // 2) + 20]
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(cut)
    trace = load_trace(truncated)
    assert 0 < trace.events.height < load_trace(xml_path).events.height
    assert any("ends abruptly" in w for w in trace.warnings)


def test_error_not_well_formed_xml(tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<procmon><eventlist><event><PID>1</event></procmon>", encoding="utf-8")
    with pytest.raises(TraceFormatError) as info:
        load_trace(bad)
    assert str(info.value) == (
        "broken.xml: line 1, column 35: not well-formed XML (mismatched tag: line 1, column 35). "
        "Save the log from Process Monitor again (File > Save > XML)."
    )


def test_error_xml_without_events(tmp_path):
    empty = tmp_path / "no-events.xml"
    empty.write_text(
        "<procmon><processlist></processlist><eventlist></eventlist></procmon>", encoding="utf-8"
    )
    with pytest.raises(TraceFormatError) as info:
        load_trace(empty)
    assert str(info.value) == (
        "no-events.xml: a Procmon XML document with no <event> elements. Save the log again "
        "with File > Save > XML and 'All events'."
    )


def test_error_xml_missing_columns(tmp_path):
    thin = tmp_path / "no-result.xml"
    thin.write_text(
        "<procmon><eventlist><event><Time_of_Day>1:00:00.0000000 PM</Time_of_Day><Process_Name>a.exe</Process_Name>"
        "<PID>1</PID><Operation>CreateFile</Operation><Path>C:\\a</Path></event></eventlist></procmon>",
        encoding="utf-8",
    )
    with pytest.raises(MissingColumnsError) as info:
        load_trace(thin)
    assert str(info.value) == (
        "no-result.xml: the events lack 'Result' (found: operation, path, pid, process, tod). "
        "Export again from Process Monitor with these columns shown."
    )
