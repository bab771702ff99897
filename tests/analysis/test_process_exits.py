"""Process exits from the capture's process table end mapped sections.

A capture filtered on a path (``capture-profile --procmon``) holds no ``Process Exit``
event: those have no path under the folder. Process Monitor still records every process's
start and exit in the log's process table, so the reader hands them on
(``Trace.process_exits``) and a process that mapped a file and then exited no longer holds
it: the capture shows the mapping, and the table shows that the process was gone.
"""

from __future__ import annotations

import gzip
from datetime import timedelta

import polars as pl
import pytest

import traceaudit
from builders import START, Story
from traceaudit.analysis.sections import sections
from traceaudit.formats.load import load_trace
from traceaudit.formats.pml import read_pml_processes
from traceaudit.formats.pml.exits import process_exits
from traceaudit.schema import PROCESS_EXIT_SCHEMA, Trace

DLL = r"C:\build\out\native.dll"


def at(ms: float):
    return START + timedelta(milliseconds=ms)


def iso(moment) -> str:
    """A time as the JSON report writes it: to 100 ns, Procmon's resolution."""
    return moment.isoformat(timespec="microseconds") + "0"


def exits(*rows: tuple[int, str, float | None, float]) -> pl.DataFrame:
    """A process table's exits: (pid, process, started ms or None, exited ms)."""
    return pl.DataFrame(
        [
            {"pid": pid, "process": name, "started": None if s is None else at(s), "exited": at(e)}
            for pid, name, s, e in rows
        ],
        schema=PROCESS_EXIT_SCHEMA,
    )


def mapped_then_truncated() -> Story:
    """dllhost.exe maps the DLL at 10 ms; the build truncates it at 50 ms and is refused."""
    return (
        Story()
        .elsewhere(0, 7, process="build.exe")
        .elsewhere(1, 40, process="dllhost.exe")
        .open_(10, 40, DLL, access="r", share="rwd")
        .op(11, 40, "CreateFileMapping", DLL)
        .close(12, 40, DLL)
        .open_(49, 7, DLL, access="w", share="rwd")
        .op(50, 7, "SetEndOfFileInformationFile", DLL, result="USER MAPPED FILE")
        .close(51, 7, DLL)
    )


def section_conflict(trace: Trace) -> dict:
    (conflict,) = traceaudit.analyze(trace).conflict_records()
    assert conflict["result"] == "USER MAPPED FILE"
    return conflict


def test_without_an_exit_the_mapping_process_still_holds_the_file():
    conflict = section_conflict(Trace(mapped_then_truncated().events(), format="story"))
    assert conflict["verdict"] == "mapped-by-other-process"
    (section,) = conflict["sections"]
    assert (section["process"], section["ended"]) == ("dllhost.exe", None)


def test_an_exit_in_the_process_table_ends_the_section_like_the_event_would():
    events = mapped_then_truncated().events()
    table = Trace(events, format="story", process_exits=exits((40, "dllhost.exe", 0.5, 30)))
    with_event = Trace(
        mapped_then_truncated().op(30, 40, "Process Exit", "", event_class="Process").events(),
        format="story",
    )
    from_table, from_event = section_conflict(table), section_conflict(with_event)
    assert from_table["sections"] == from_event["sections"] == []
    assert from_table["verdict"] == from_event["verdict"] != "mapped-by-other-process"


def test_an_exit_after_the_failure_bounds_the_section():
    trace = Trace(
        mapped_then_truncated().events(),
        format="story",
        process_exits=exits((40, "dllhost.exe", None, 80)),
    )
    (section,) = section_conflict(trace)["sections"]
    assert section["process"] == "dllhost.exe"
    assert section["ended"] == iso(at(80))


@pytest.mark.parametrize(
    ("started", "exited"),
    [
        (None, 5),  # an earlier process with this pid, gone before the mapping
        (0.5, 9),  # the same, started in the capture
        (20, 30),  # a later process Windows gave the pid to: it never mapped the file
    ],
)
def test_an_exit_of_another_process_with_the_same_pid_ends_nothing(started, exited):
    trace = Trace(
        mapped_then_truncated().events(),
        format="story",
        process_exits=exits((40, "dllhost.exe", started, exited)),
    )
    (section,) = section_conflict(trace)["sections"]
    assert section["ended"] is None


def test_the_first_exit_wins_when_the_event_and_the_table_disagree():
    events = mapped_then_truncated().op(30, 40, "Process Exit", "", event_class="Process").events()
    got = sections(events, exits((40, "dllhost.exe", 0.5, 90)))
    assert got["ended"].to_list() == [at(30)]


def test_a_table_entry_that_exits_before_it_starts_is_left_out():
    table = pl.DataFrame(
        {
            "pid": [2432, 3224],
            "name": ["OSPPSVC.EXE", "DllHost.exe"],
            "start_time": [at(900), at(10)],
            "end_time": [at(100), at(20)],
        }
    )
    assert process_exits(table).rows() == [(3224, "DllHost.exe", at(10), at(20))]


def test_exits_follow_the_trace_onto_the_wall_clock():
    trace = Trace(
        mapped_then_truncated().events(),
        format="story",
        clock="utc",
        process_exits=exits((40, "dllhost.exe", None, 80)),
    )
    (conflict,) = traceaudit.analyze(trace, tz="Asia/Kolkata").conflict_records()
    (section,) = conflict["sections"]
    assert section["ended"] == iso(at(80) + timedelta(hours=5, minutes=30))


# ---------------------------------------------------------------------------- real captures


@pytest.mark.parametrize(
    "name",
    [
        "procmon-pairs/Tests32bit.pml.gz",
        "procmon-pairs/Tests64bit.pml.gz",
        "procmon-pml/noriben-2013-v7.pml",
        "procmon-pml/crysis-nanny.pml",
        "procmon-pml/prsp0007.pml",
    ],
)
def test_every_process_exit_event_is_in_the_table_at_the_same_instant(corpus, name):
    trace = traceaudit.formats.pml.read_pml(corpus / name)
    assert trace.process_exits is not None
    events = (
        trace.events.filter(pl.col("operation") == "Process Exit")
        .group_by("pid")
        .agg(exited=pl.col("time").min())
    )
    assert events.height >= 2
    joined = events.join(trace.process_exits, on="pid", how="left", suffix="_table")
    assert joined["exited"].to_list() == joined["exited_table"].to_list()


@pytest.mark.parametrize(
    "name",
    ["procmon-pairs/Tests32bit.pml.gz", "procmon-pairs/Tests64bit.pml.gz"],
)
def test_a_capture_without_its_exit_events_maps_sections_as_the_whole_one(corpus, name):
    """What a path-filtered capture of the same machine gives: no Process Exit events."""
    trace = traceaudit.formats.pml.read_pml(corpus / name)
    whole = sections(trace.events, trace.process_exits)
    assert whole["ended"].is_not_null().any()  # some mapping processes exit in the capture
    filtered = trace.events.filter(pl.col("operation") != "Process Exit")
    assert sections(filtered).filter(pl.col("ended").is_not_null()).is_empty()
    assert sections(filtered, trace.process_exits).equals(whole)


def test_a_file_system_only_capture_still_knows_which_processes_ended(corpus):
    path = corpus / "procmon-pairs" / "UTC32Filesystem.pml.gz"
    trace = traceaudit.formats.pml.read_pml(path)
    assert trace.events.filter(pl.col("operation") == "Process Exit").is_empty()
    table = read_pml_processes(path)
    assert trace.process_exits is not None
    assert trace.process_exits.height == table["end_time"].is_not_null().sum() == 17


def test_a_rolled_over_capture_joins_the_tables_of_its_files(corpus, tmp_path):
    from pml_parts import write_parts

    source = corpus / "procmon-pairs" / "Tests32bit.pml.gz"
    whole = traceaudit.formats.pml.read_pml(source)
    parts = write_parts(gzip.decompress(source.read_bytes()), [10_000, 20_000], tmp_path)
    joined = traceaudit.formats.pml.read_pml(parts)
    assert joined.process_exits is not None and whole.process_exits is not None
    assert joined.process_exits.equals(whole.process_exits)


def test_formats_without_a_process_table_have_none(corpus):
    csv = load_trace(corpus / "procmon-pairs" / "Tests32bit.csv.gz")
    assert csv.process_exits is None
