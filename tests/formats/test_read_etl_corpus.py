"""The ETL reader on real traces: the PerfView corpus traces against PerfView's own dump.

``etl/perfview-net452-x64.baseline.txt`` is what PerfView's TraceEvent printed for the
x64 trace: the first events of each type with every field (strings cut to 20 characters
plus ``...``), then a count per event type. Where that dump and this reader overlap
(Kernel-File Create, kernel Process and Thread events, the logfile header, the volume
mapping) they must agree field by field. Every other .etl of the corpus must be read, or
refused with the no-file-I/O message. Skipped when ``../shared/corpus`` is absent.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import polars as pl
import pytest

from traceaudit.errors import TraceFormatError
from traceaudit.formats import load_trace
from traceaudit.formats.etl.reader import (
    _decode,
    read_etl,
    read_etl_file_events,
    read_etl_header,
    read_etl_processes,
)
from traceaudit.formats.input import open_input

X64 = "etl/perfview-net452-x64.etl.zip"
X86 = "etl/perfview-net452-x86.etl.zip"
BASELINE = "etl/perfview-net452-x64.baseline.txt"
_EVENT = re.compile(r"^EVENT ([\d,]+\.\d+): (.+?) (PID=.*)$")

# Every FileIo / Kernel-File record of the two PerfView traces, by (source, kind):
# counted independently by dissect.etl on the x64 trace (FileRundown 3,054, FileCreate
# 16, FileDelete 14) and by PerfView (Kernel-File/Create 562 in its baseline; 968 in the
# x86 trace per the corpus README).
EXPECTED_KINDS = {
    X64: {
        ("FileIo", "rundown"): 3054,
        ("FileIo", "file_create"): 16,
        ("FileIo", "file_delete"): 14,
        ("Kernel-File", "create"): 562,
    },
    X86: {
        ("FileIo", "rundown"): 2917,
        ("FileIo", "file_create"): 86,
        ("FileIo", "file_delete"): 27,
        ("Kernel-File", "create"): 968,
    },
}

# .NET's rendering of the enums PerfView prints for FileIOCreateTraceData.
_FILE_ATTRIBUTES = (
    (0x1, "FILE_ATTRIBUTE_READONLY"),
    (0x2, "FILE_ATTRIBUTE_HIDDEN"),
    (0x4, "FILE_ATTRIBUTE_SYSTEM"),
    (0x10, "FILE_ATTRIBUTE_DIRECTORY"),
    (0x20, "FILE_ATTRIBUTE_ARCHIVE"),
    (0x40, "FILE_ATTRIBUTE_DEVICE"),
    (0x80, "FILE_ATTRIBUTE_NORMAL"),
    (0x100, "FILE_ATTRIBUTE_TEMPORARY"),
    (0x200, "FILE_ATTRIBUTE_SPARSE_FILE"),
    (0x400, "FILE_ATTRIBUTE_REPARSE_POINT"),
    (0x800, "FILE_ATTRIBUTE_COMPRESSED"),
    (0x1000, "FILE_ATTRIBUTE_OFFLINE"),
    (0x2000, "FILE_ATTRIBUTE_NOT_CONTENT_INDEXED"),
    (0x4000, "FILE_ATTRIBUTE_ENCRYPTED"),
)
_SHARE = ((0x1, "Read"), (0x2, "Write"), (0x3, "ReadWrite"), (0x4, "Delete"))
_DISPOSITION = {
    0: "SUPERSEDE",
    1: "OPEN_EXISTING",
    2: "CREATE_NEW",
    3: "OPEN_ALWAYS",
    4: "TRUNCATE_EXISTING",
    5: "CREATE_ALWAYS",
}
_PROCESS_KINDS = {
    "Process/DCStart": "dcstart",
    "Process/DCStop": "dcend",
    "Process/Start": "start",
    "Process/Stop": "end",
    "Process/Defunct": "defunct",
}


def dotnet_flags(value: int, table: tuple[tuple[int, str], ...]) -> str:
    """How .NET prints a [Flags] enum value: names (largest first taken, shown in
    ascending order), the number when some bit has no name, ``0`` for zero."""
    if value == 0:
        return "0"
    names, rest = [], value
    for bits, name in sorted(table, reverse=True):
        if bits and rest & bits == bits:
            names.append(name)
            rest &= ~bits
    return ", ".join(reversed(names)) if rest == 0 else str(value)


def shown(text: str) -> str:
    """A value as PerfView's dump shows it: cut to 20 characters and ``...``."""
    return text if len(text) <= 20 else text[:20] + "..."


def baseline_events(corpus) -> list[dict]:
    """The EVENT lines of the dump: ``ms``, ``name`` and the ``Key=value`` fields."""
    events = []
    for line in (corpus / BASELINE).read_text(encoding="utf-8").splitlines():
        match = _EVENT.match(line)
        if not match:
            continue
        fields = {}
        for part in match.group(3).split("; "):
            key, sep, value = part.partition("=")
            if sep:
                fields[key.strip()] = value.rstrip(";").strip()
        events.append(
            {"ms": float(match.group(1).replace(",", "")), "name": match.group(2), **fields}
        )
    return events


def baseline_counts(corpus) -> dict[str, int]:
    counts = {}
    for line in (corpus / BASELINE).read_text(encoding="utf-8").splitlines():
        if line.startswith("COUNT "):
            name, _, count = line[6:].rpartition(":")
            counts[name] = int(count)
    return counts


def number(text: str) -> int:
    return int(text.replace(",", ""), 16 if text.startswith("0x") else 10)


@cache
def _file_events(path: Path) -> pl.DataFrame:
    return read_etl_file_events(path)


@pytest.fixture
def x64_events(corpus) -> pl.DataFrame:
    return _file_events(corpus / X64)


@pytest.fixture
def x64_start(corpus) -> int:
    return read_etl_header(corpus / X64).start_time


def relative_ms(times: pl.Expr, start_filetime: int) -> pl.Expr:
    """Milliseconds since the trace start, as PerfView's dump counts them."""
    start_ns = (start_filetime - 116_444_736_000_000_000) * 100
    return (times.cast(pl.Int64) - start_ns) / 1_000_000


@pytest.mark.parametrize("name", [X64, X86])
def test_every_file_event_is_decoded(corpus, name):
    events = read_etl_file_events(corpus / name)
    counts = {(s, k): n for s, k, n in events.group_by("source", "kind").len().iter_rows()}
    assert counts == EXPECTED_KINDS[name]
    names = events.filter(pl.col("kind") != "create")["name"]
    assert names.null_count() == 0
    assert (names.str.len_chars() > 0).all()
    assert names.str.starts_with("C:\\").sum() > 0.9 * len(names)  # device paths mapped


def test_kernel_file_creates_match_perfview_field_by_field(corpus, x64_events, x64_start):
    creates = x64_events.filter(pl.col("kind") == "create").with_columns(
        ms=relative_ms(pl.col("time"), x64_start)
    )
    wanted = [
        e for e in baseline_events(corpus) if e["name"] == "Microsoft-Windows-Kernel-File/Create"
    ]
    assert len(wanted) == 5
    for event in wanted:
        found = creates.filter(
            (pl.col("irp") == number(event["IrpPtr"]))
            & (pl.col("file_object") == number(event["FileObject"]))
            & ((pl.col("ms") - event["ms"]).abs() < 0.0006)
        )
        assert found.height == 1, event
        row = found.row(0, named=True)
        options = row["create_options"]
        assert row["pid"] == number(event["PID"])
        assert row["tid"] == number(event["TID"]) == row["ttid"]
        assert shown(dotnet_flags(options & 0xFFFFFF, _FILE_ATTRIBUTES)) == event["CreateOptions"]
        assert _DISPOSITION[options >> 24] == event["CreateDisposition"]
        assert dotnet_flags(row["attributes"], _FILE_ATTRIBUTES) == event["FileAttributes"]
        assert dotnet_flags(row["share"], _SHARE) == event["ShareAccess"]
        assert shown(row["name"]) == event["FileName"]


def test_create_count_matches_perfview(corpus, x64_events):
    counts = baseline_counts(corpus)
    assert (
        x64_events.filter(pl.col("kind") == "create").height
        == counts["Microsoft-Windows-Kernel-File/Create"]
    )


def test_process_events_match_perfview(corpus, x64_start):
    processes = read_etl_processes(corpus / X64)
    kernel = processes.with_columns(ms=relative_ms(pl.col("time"), x64_start))
    counts = baseline_counts(corpus)
    for name, kind in _PROCESS_KINDS.items():
        mine = kernel.filter(pl.col("kind") == kind).height
        expected = counts[f"Windows Kernel/{name}"]
        if kind == "start":  # plus the Microsoft-Windows-Kernel-Process ProcessStart
            expected += counts["Microsoft-Windows-Kernel-Process/ProcessStart/Start"]
        assert mine == expected, name
    wanted = [
        e
        for e in baseline_events(corpus)
        if e["name"].removeprefix("Windows Kernel/") in _PROCESS_KINDS
    ]
    assert len(wanted) >= 10
    for event in wanted:
        kind = _PROCESS_KINDS[event["name"].removeprefix("Windows Kernel/")]
        found = kernel.filter(
            (pl.col("kind") == kind)
            & (pl.col("pid") == number(event["ProcessID"]))
            & ((pl.col("ms") - event["ms"]).abs() < 0.0006)
        )
        assert found.height == 1, event
        row = found.row(0, named=True)
        assert row["parent_pid"] == number(event["ParentID"])
        assert shown(row["image"]) == event["ImageFileName"]


def test_thread_events_match_perfview(corpus, x64_start):
    read = _decode(open_input(corpus / X64), strict=False)
    threads = read.threads.with_columns(ms=(pl.col("raw_time") - read.header.header_time) / 10_000)
    counts = baseline_counts(corpus)
    assert threads.filter(pl.col("kind") == "start").height == counts["Windows Kernel/Thread/Start"]
    assert threads.filter(pl.col("kind") == "end").height == counts["Windows Kernel/Thread/Stop"]
    wanted = [
        e
        for e in baseline_events(corpus)
        if e["name"] in ("Windows Kernel/Thread/Start", "Windows Kernel/Thread/Stop")
    ]
    for event in wanted:
        kind = "start" if event["name"].endswith("Start") else "end"
        found = threads.filter(
            (pl.col("kind") == kind)
            & (pl.col("tid") == number(event["TID"]))
            & ((pl.col("ms") - event["ms"]).abs() < 0.0006)
        )
        assert found.height == 1, event
        assert found["pid"][0] == number(event["PID"])


def test_logfile_header_matches_perfview(corpus):
    header = read_etl_header(corpus / X64)
    event = next(e for e in baseline_events(corpus) if e["name"] == "Windows Kernel/EventTrace")
    assert header.buffer_size == number(event["BufferSize"])
    assert header.version == number(event["Version"])
    assert header.provider_version == number(event["ProviderVersion"])
    assert header.processors == number(event["NumberOfProcessors"])
    assert header.pointer == number(event["PointerSize"])
    assert header.events_lost == number(event["EventsLost"])
    assert header.buffers_written == number(event["BuffersWritten"])
    assert header.buffers_lost == number(event["BuffersLost"])
    assert header.frequency == number(event["PerfFreq"])
    assert header.clock == number(event["ReservedFlags"])
    assert header.logger_name == event["SessionName"]
    assert header.log_file_name == event["LogFileName"]
    assert shown(_filetime_text(header.start_time)) == event["StartTime"]
    assert shown(_filetime_text(header.end_time)) == event["EndTime"]


def _filetime_text(filetime: int) -> str:
    """PerfView's yy/MM/dd HH:mm:ss.fff… rendering of a FILETIME (UTC)."""
    moment = datetime(1601, 1, 1) + timedelta(microseconds=filetime // 10)
    return moment.strftime("%y/%m/%d %H:%M:%S.%f")


def test_volume_mapping_matches_perfview(corpus, x64_events):
    read = _decode(open_input(corpus / X64), strict=False)
    wanted = [
        (e["NtPath"], e["DosPath"])
        for e in baseline_events(corpus)
        if e["name"] == "Windows Kernel/SysConfig/VolumeMapping"
    ]
    mine = [(shown(nt), shown(dos)) for nt, dos in read.decoded.volumes]
    assert mine[: len(wanted)] == wanted
    assert (
        len(read.decoded.volumes)
        == baseline_counts(corpus)["Windows Kernel/SysConfig/VolumeMapping"]
    )


@pytest.mark.parametrize("name", [X64, X86])
def test_perfview_traces_read_into_the_schema(corpus, name):
    trace = load_trace(corpus / name)
    assert trace.format == "etw-etl"
    assert trace.clock == "utc"
    events = trace.events
    assert events.height == EXPECTED_KINDS[name][("Kernel-File", "create")]
    assert set(events["operation"].unique()) == {"CreateFile"}
    assert events["file_object"].null_count() == 0
    assert events["process"].null_count() == 0
    assert events["path"].str.starts_with("\\Device\\").sum() == 0  # all mapped
    assert any("no OperationEnd" in w for w in trace.warnings)


OTHER_ETL = [
    "etl/amsi-tracelogging.etl",
    "etl/empty.etl",
    "etl/lxcore-kernel.etl",
    "etl/netsh-capture.etl",
    "etl/powershell.etl",
    "etl/shutdown-perfdiag.etl",
    "etl/perfview-msbuild-usermode.etl.zip",
]


@pytest.mark.parametrize("name", OTHER_ETL)
def test_other_corpus_traces_are_refused_clearly(corpus, name):
    with pytest.raises(TraceFormatError) as caught:
        read_etl(corpus / name)
    message = str(caught.value)
    assert "an ETW trace without file I/O" in message
    assert "xperf -on PROC_THREAD+LOADER+FILE_IO+FILE_IO_INIT" in message
    assert "Traceback" not in message


def test_every_corpus_etl_is_detected(corpus):
    from traceaudit.formats import detect

    for path in sorted((corpus / "etl").glob("*.etl*")):
        assert detect(path) == "etw-etl", path.name


def test_dissect_etl_decodes_the_same_rundown_names(corpus, x64_events):
    """dissect.etl (AGPL, test-only oracle) decodes kernel FileIo MOF events correctly;
    its FileRundown keys and names must be ours."""
    pytest.importorskip("dissect.etl")
    import io
    import zipfile

    from dissect.etl import ETL

    with zipfile.ZipFile(corpus / X64) as archive:
        data = archive.read(archive.namelist()[0])
    theirs = []
    for record in ETL(io.BytesIO(data)):
        try:
            event = record.event
        except Exception:  # dissect fails on some records of this trace  # noqa: BLE001
            continue
        if event.symbol() == "FileIo/FileRundown":
            theirs.append((event.FileObject, event.FileName))
    ours = x64_events.filter(pl.col("kind") == "rundown")
    device = _decode(open_input(corpus / X64), strict=False).files.filter(
        pl.col("kind") == "rundown"
    )
    assert len(theirs) == ours.height
    assert sorted(theirs) == sorted(
        zip(device["file_key"].to_list(), device["name"].to_list(), strict=True)
    )
