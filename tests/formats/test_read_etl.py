"""The ETL reader on traces written by ``tests/etl_writer.py``: fields, linking, analysis.

The central check: a simulated scenario written as Kernel-File events and read back must
give the same conflicts, blockers and lock windows as the same scenario's CSV events.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

import traceaudit
from builders import Story
from etl_writer import write_etl
from traceaudit.formats import detect, load_trace
from traceaudit.formats.etl.reader import read_etl, read_etl_file_events, read_etl_header, sniff
from traceaudit.pipeline import analyze
from traceaudit.schema import EVENT_SCHEMA, Trace
from traceaudit.simulation.generate import simulate

# Families whose blockers do not depend on the desired access (which ETW does not record):
# namespace operations blocked by handles below or on the target, permission refusals,
# holders filtered out, and sharing violations whose holder stays open to the end.
FAMILIES = (
    "extract-rename",
    "replace-under-indexer",
    "censored",
    "permission-denied",
    "filtered-holder",
)


def conflict_summary(report) -> list[tuple]:
    """Conflicts in a form that does not depend on row numbers."""
    out = []
    for c in report.conflicts.iter_rows(named=True):
        blockers = sorted(
            (b["pid"], b["process"], b["path"], b["opened"], b["closed"], b["relation"], b["own"])
            for b in c["blockers"]
        )
        out.append(
            (
                c["time"],
                c["pid"],
                c["process"],
                c["operation"],
                c["path"],
                c["result"],
                c["verdict"],
            )
            + (c["remaining_ms"], c["censored"], tuple(blockers))
        )
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_etl_analysis_matches_csv_analysis(tmp_path, family, seed):
    sim = simulate(family, seed=seed)
    csv_path = sim.write_csv(tmp_path / "trace.csv")
    etl_path = write_etl(sim.to_frame(), tmp_path / "trace.etl")
    from_csv = traceaudit.analyze(csv_path, date=datetime(2024, 7, 15).date())
    from_etl = traceaudit.analyze(etl_path)
    assert conflict_summary(from_etl) == conflict_summary(from_csv)
    assert conflict_summary(from_etl), "the scenario has conflicts"
    assert from_etl.windows.equals(from_csv.windows)
    chains = ["pid", "operation", "path", "attempts", "failures", "succeeded", "total_ms"]
    assert from_etl.chains.select(chains).equals(from_csv.chains.select(chains))


@pytest.mark.parametrize("family", ["extract-rename", "replace-under-indexer", "censored"])
def test_kernel_logger_fileio_analysis_matches_csv(tmp_path, family):
    """The same scenario as NT Kernel Logger FileIo events (v3), whose headers say PID -1:
    processes come from the issuing threads."""
    sim = simulate(family, seed=3)
    trace = read_etl(write_etl(sim.to_frame(), tmp_path / "kernel.etl", mof=True))
    assert set(trace.events["pid"].unique()) <= set(sim.to_frame()["pid"].unique())
    assert trace.events["pid"].null_count() == 0
    raw = read_etl_file_events(tmp_path / "kernel.etl")
    assert set(raw["source"]) == {"FileIo"} and raw["pid"].null_count() == raw.height
    from_csv = analyze(Trace(events=sim.to_frame(), format="simulated"))
    assert conflict_summary(analyze(trace)) == conflict_summary(from_csv)


def test_both_sources_recorded_are_read_once(tmp_path):
    frame = basic_story().events()
    single = read_etl(write_etl(frame, tmp_path / "one.etl")).events
    trace = read_etl(write_etl(frame, tmp_path / "both.etl", mof="both"))
    assert trace.events.select("operation", "path", "result").equals(
        single.select("operation", "path", "result")
    )
    assert any("records file I/O twice" in w and "10 operations" in w for w in trace.warnings)


def test_etl_handles_pair_exactly_by_file_object(tmp_path):
    sim = simulate("replace-under-indexer", seed=2)
    trace = read_etl(write_etl(sim.to_frame(), tmp_path / "t.etl"))
    handles = traceaudit.handles(trace.events)
    assert handles["file_object"].null_count() == 0
    expected = traceaudit.handles(sim.to_frame())
    assert handles.height == expected.height
    assert handles["open_at_end"].sum() == expected["open_at_end"].sum()
    assert handles["open_before_capture"].sum() == expected["open_before_capture"].sum()


def story_trace(tmp_path, story: Story, **options) -> Trace:
    return read_etl(write_etl(story.events(), tmp_path / "story.etl", **options))


def basic_story() -> Story:
    story = Story()
    story.open_(ms=0, pid=7, process="MsMpEng.exe", path=r"C:\t\a.dll", access="r", share="rwd")
    story.open_(ms=1, pid=1, process="uv.exe", path=r"C:\t\b.txt", access="w", share="")
    story.close(ms=3, pid=1, process="uv.exe", path=r"C:\t\b.txt")
    story.rename(
        ms=5, pid=1, process="uv.exe", path=r"C:\t", target=r"C:\cache\t", result="ACCESS DENIED"
    )
    story.close(ms=40, pid=7, process="MsMpEng.exe", path=r"C:\t\a.dll")
    story.rename(
        ms=41, pid=1, process="uv.exe", path=r"C:\t", target=r"C:\cache\t", result="SUCCESS"
    )
    return story


@pytest.mark.parametrize("pointer", [8, 4])
def test_fields_round_trip(tmp_path, pointer):
    trace = story_trace(tmp_path, basic_story(), pointer=pointer)
    events = trace.events
    assert events.schema == EVENT_SCHEMA
    assert trace.format == "etw-etl" and trace.clock == "utc" and trace.warnings == ()
    assert events["operation"].to_list() == [
        "CreateFile",
        "CreateFile",
        "CloseFile",
        "IRP_MJ_CLOSE",
        "SetRenameInformationFile",
        "CloseFile",
        "IRP_MJ_CLOSE",
        "SetRenameInformationFile",
    ]
    first = events.row(0, named=True)
    assert first["process"] == "MsMpEng.exe" and first["pid"] == 7
    assert first["path"] == r"C:\t\a.dll"
    assert first["result"] == "SUCCESS"
    assert first["share_mode"] == 7
    assert first["access_mask"] is None  # ETW records no desired access
    assert first["disposition"] == "Open"
    assert first["open_result"] == "Opened"
    assert first["detail"].startswith("Disposition: Open, Options: ")
    assert first["time"] == datetime(2024, 7, 15, 11, 27, 0)
    renames = events.filter(pl.col("operation") == "SetRenameInformationFile")
    assert renames["result"].to_list() == ["ACCESS DENIED", "SUCCESS"]
    assert renames["rename_target"].to_list() == [r"C:\cache\t", r"C:\cache\t"]
    assert renames["detail"][0] == r"FileName: C:\cache\t"
    closes = events.filter(pl.col("operation") == "CloseFile")
    opens = events.filter(pl.col("operation") == "CreateFile")
    assert sorted(closes["file_object"].to_list()) == sorted(opens["file_object"].to_list())


def test_the_uv_case_from_etl(tmp_path):
    report = analyze(story_trace(tmp_path, basic_story()))
    conflict = report.conflicts.row(0, named=True)
    assert conflict["verdict"] == "blocked-by-other-process"
    assert [b["process"] for b in conflict["blockers"]] == ["MsMpEng.exe"]
    assert conflict["blockers"][0]["relation"] == "below"
    assert conflict["remaining_ms"] == pytest.approx(35.0)


def test_sharing_violation_with_unknown_access_names_the_holder(tmp_path):
    story = Story()
    story.open_(ms=0, pid=7, process="indexer.exe", path=r"C:\d\f.txt", access="r", share="r")
    story.fail_open(ms=10, pid=1, process="app.exe", path=r"C:\d\f.txt", access="w", share="rw")
    story.close(ms=25, pid=7, process="indexer.exe", path=r"C:\d\f.txt")
    report = analyze(story_trace(tmp_path, story))
    conflict = report.conflicts.row(0, named=True)
    assert conflict["result"] == "SHARING VIOLATION"
    assert [b["process"] for b in conflict["blockers"]] == ["indexer.exe"]
    assert conflict["blockers"][0]["access_mask"] is None
    assert conflict["remaining_ms"] == pytest.approx(15.0)


def test_without_op_end_opens_followed_by_io_count_as_opened(tmp_path):
    trace = story_trace(tmp_path, basic_story(), op_end=False)
    creates = trace.events.filter(pl.col("operation") == "CreateFile")
    assert creates["result"].to_list() == ["SUCCESS", "SUCCESS"]
    renames = trace.events.filter(pl.col("operation") == "SetRenameInformationFile")
    assert renames["result"].to_list() == ["", ""]
    assert renames["duration"].null_count() == 2
    assert any("no OperationEnd events" in w and "(2)" in w for w in trace.warnings)


def test_without_volume_mapping_paths_stay_device_paths(tmp_path):
    trace = story_trace(tmp_path, basic_story(), volumes=False)
    assert trace.events["path"][0] == "\\Device\\HarddiskVolume3\\t\\a.dll"
    assert any("no volume mapping" in w for w in trace.warnings)


def test_close_of_a_handle_opened_before_the_trace_is_named_by_its_file_key(tmp_path):
    story = basic_story()
    trace = story_trace(tmp_path, story, skip_rows=[1])  # the indexer's open is not in the trace
    closes = trace.events.filter(pl.col("pid") == 7)
    assert closes["operation"].to_list() == ["CloseFile", "IRP_MJ_CLOSE"]
    assert closes["path"].to_list() == [r"C:\t\a.dll", r"C:\t\a.dll"]
    handles = traceaudit.handles(trace.events)
    assert handles.filter(pl.col("pid") == 7)["open_before_capture"].to_list() == [True]


def test_file_objects_are_reused_and_still_paired(tmp_path):
    story = Story()
    for i in range(3):
        story.open_(ms=10 * i, pid=3, process="a.exe", path=rf"C:\x\{i}.txt", access="r", share="r")
        story.close(ms=10 * i + 5, pid=3, process="a.exe", path=rf"C:\x\{i}.txt")
    trace = story_trace(tmp_path, story)
    objects = trace.events.filter(pl.col("operation") == "CreateFile")["file_object"]
    assert objects.n_unique() == 1  # the writer reuses a freed FILE_OBJECT
    handles = traceaudit.handles(trace.events)
    assert handles["path"].to_list() == [r"C:\x\0.txt", r"C:\x\1.txt", r"C:\x\2.txt"]
    assert (handles["closed"] - handles["opened"]).to_list() == [timedelta(milliseconds=5)] * 3


def test_raw_file_events(tmp_path):
    path = write_etl(basic_story().events(), tmp_path / "raw.etl")
    raw = read_etl_file_events(path)
    kinds = raw.group_by("kind").len().sort("kind")
    assert dict(kinds.iter_rows()) == {
        "cleanup": 2,
        "close": 2,
        "create": 2,
        "name": 3,
        "opend": 6,
        "rename": 2,
        "rename_path": 2,
    }
    assert set(raw["source"]) == {"Kernel-File"}
    header = read_etl_header(path)
    assert (header.pointer, header.clock, header.frequency) == (8, 1, 10_000_000)
    assert header.logger_name == "traceaudit test"


def test_detected_by_content(tmp_path):
    path = write_etl(basic_story().events(), tmp_path / "trace.bin")
    assert detect(path) == "etw-etl"
    assert sniff(path.read_bytes()[:4096])
    assert not sniff(b"PML_" + bytes(200))
    assert load_trace(path).format == "etw-etl"


def test_written_file_is_valid_for_dissect_etl(tmp_path):
    """dissect.etl (test-only: AGPL) walks the written buffers and records, and decodes
    its kernel MOF events and logfile header to what was written."""
    pytest.importorskip("dissect.etl")
    from dissect.etl import ETL

    sim = simulate("censored", seed=0)
    path = write_etl(sim.to_frame(), tmp_path / "censored.etl")
    with path.open("rb") as handle:
        etl = ETL(handle)
        header = read_etl_header(path)
        assert etl.pointer_size == header.pointer == 8
        assert etl.logfile_header.header.StartTime == header.start_time
        assert etl.logfile_header.buffers_written == header.buffers_written
        records, threads = 0, set()
        for record in etl:
            records += 1
            event = record.event
            if event.symbol() == "Thread/DCStart":
                threads.add((event.ProcessId, event.TThreadId))
    expected = sim.to_frame().select("pid", "tid").unique().drop_nulls()
    assert threads == set(expected.iter_rows())
    raw = read_etl_file_events(path)
    processes = sim.to_frame()["pid"].n_unique()
    assert records == 1 + 1 + processes + len(threads) + raw.height


def test_compressed_buffers_read_like_plain_ones(tmp_path):
    frame = simulate("extract-rename", seed=1).to_frame()
    plain = read_etl(write_etl(frame, tmp_path / "plain.etl")).events
    packed_path = write_etl(frame, tmp_path / "packed.etl", compressed=True)
    assert packed_path.stat().st_size < (tmp_path / "plain.etl").stat().st_size
    assert read_etl(packed_path).events.equals(plain)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"x",
        b"abc" * 1000,
        bytes(70_000),
        bytes(300) + b"xyz" * 5 + bytes(20),
        bytes(range(256)) * 40,
    ],
)
def test_xpress_round_trip(data):
    from etl_writer import compress
    from traceaudit.formats.etl.xpress import decompress_python

    assert decompress_python(compress(data), len(data)) == data
