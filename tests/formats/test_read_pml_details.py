"""The PML reader on synthetic logs: every decoded column, 32- and 64-bit layouts.

The logs are written by ``test_read_pml_builder`` (independent of the reader's layout
tables); expected Detail strings follow Procmon's CSV export, as measured on the golden
pairs in the corpus.
"""

from __future__ import annotations

import gzip
from datetime import timedelta

import polars as pl
import pytest
from test_pml_kernels import both_paths  # noqa: F401  (every read: with and without kernels)
from test_read_pml_builder import (
    T0,
    Event,
    Process,
    close_event,
    create_event,
    disposition_event,
    pml_file,
    read_write_event,
    registry_open_event,
    rename_event,
    tcp_send_event,
    thread_create_event,
    write,
)

from traceaudit.formats.input import open_input
from traceaudit.formats.pml.reader import FORMAT_NAME, read, read_pml, read_pml_processes, sniff_pml
from traceaudit.schema import EVENT_SCHEMA

pytestmark = pytest.mark.usefixtures("both_paths")

POINTERS = pytest.mark.parametrize("pointer", [8, 4], ids=["64-bit", "32-bit"])

GENERIC_READ, SYNCHRONIZE, READ_ATTRIBUTES = 0x80000000, 0x00100000, 0x80
SYNCHRONOUS_NON_ALERT, NON_DIRECTORY, DIRECTORY, DELETE_ON_CLOSE = 0x20, 0x40, 0x1, 0x1000


def one(tmp_path, event: Event, pointer: int = 8, **kw) -> dict:
    """Read a log holding ``event`` and return its row."""
    trace = read_pml(write(tmp_path, "one.pml", pml_file([event], pointer=pointer, **kw)))
    assert trace.events.height == 1
    return trace.events.row(0, named=True)


def test_sniff_recognises_the_magic():
    assert sniff_pml(b"PML_\x09\x00\x00\x00")
    assert not sniff_pml(b'"Time of Day","Process Name"')


def test_the_frame_has_the_event_schema(tmp_path):
    trace = read_pml(write(tmp_path, "a.pml", pml_file([close_event(r"C:\a")])))
    assert trace.events.schema == pl.Schema(EVENT_SCHEMA)
    assert (trace.format, trace.clock, trace.source.name) == (FORMAT_NAME, "utc", "a.pml")


@POINTERS
def test_create_file_columns_and_detail(tmp_path, pointer):
    event = create_event(
        r"C:\data\report.docx",
        access=GENERIC_READ | SYNCHRONIZE | READ_ATTRIBUTES,
        share=0x1 | 0x4,
        options=SYNCHRONOUS_NON_ALERT | NON_DIRECTORY,
        disposition=1,
        open_result=1,
        pointer=pointer,
        tid=77,
        duration=1234,
    )
    row = one(tmp_path, event, pointer)
    assert row["operation"] == "CreateFile"
    assert row["event_class"] == "File System"
    assert (row["process"], row["pid"], row["tid"]) == ("writer.exe", 4242, 77)
    assert row["path"] == r"C:\data\report.docx"
    assert row["result"] == "SUCCESS"
    assert row["duration"] == timedelta(microseconds=123.4)
    assert row["access_mask"] == GENERIC_READ | SYNCHRONIZE | READ_ATTRIBUTES
    assert row["share_mode"] == 0x5
    assert row["disposition"] == "Open"
    assert row["create_options"] == SYNCHRONOUS_NON_ALERT | NON_DIRECTORY
    assert row["is_directory"] is False
    assert row["delete_on_close"] is False
    assert row["open_result"] == "Opened"
    assert row["detail"] == (
        "Desired Access: Generic Read, Disposition: Open, Options: Synchronous IO Non-Alert, "
        "Non-Directory File, Attributes: n/a, ShareMode: Read, Delete, AllocationSize: n/a, "
        "OpenResult: Opened"
    )


def test_create_file_that_failed_has_no_open_result(tmp_path):
    event = create_event(
        r"C:\locked.txt",
        access=0x40000000 | READ_ATTRIBUTES,
        share=0,
        options=DIRECTORY | DELETE_ON_CLOSE,
        disposition=3,
        attributes=0x80,
        allocation=4096,
        open_result=None,
        result=0xC0000043,
        sid=bytes.fromhex("010100000000000512000000"),  # S-1-5-18
    )
    row = one(tmp_path, event)
    assert row["result"] == "SHARING VIOLATION"
    assert (row["is_directory"], row["delete_on_close"], row["open_result"]) == (True, True, None)
    assert row["disposition"] == "OpenIf"
    assert row["detail"] == (
        "Desired Access: Generic Write, Read Attributes, Disposition: OpenIf, Options: "
        "Directory, Delete On Close, Attributes: N, ShareMode: None, AllocationSize: 4,096, "
        "Impersonating: NT AUTHORITY\\SYSTEM"
    )


def test_create_without_a_directory_option_leaves_is_directory_unknown(tmp_path):
    row = one(tmp_path, create_event(r"C:\x", access=READ_ATTRIBUTES, share=7, options=0))
    assert row["is_directory"] is None


@POINTERS
def test_rename_target_is_procmons_dos_path(tmp_path, pointer):
    event = rename_event(
        r"C:\work\a.tmp",
        r"\??\C:\work\a.txt",
        replace=True,
        dos_target=r"C:\work\a.txt",
        pointer=pointer,
    )
    row = one(tmp_path, event, pointer)
    assert row["operation"] == "SetRenameInformationFile"
    assert (row["rename_target"], row["replace_if_exists"]) == (r"C:\work\a.txt", True)
    assert row["detail"] == r"ReplaceIfExists: True, FileName: C:\work\a.txt"


def test_rename_without_dos_path_uses_the_raw_name(tmp_path):
    row = one(tmp_path, rename_event(r"C:\w\a.tmp", r"\??\C:\w\b.txt", replace=False))
    assert (row["rename_target"], row["replace_if_exists"]) == (r"C:\w\b.txt", False)


def test_rename_to_a_bare_name_is_joined_to_the_source_directory(tmp_path):
    row = one(tmp_path, rename_event(r"C:\w\sub\a.tmp", "a.txt", replace=False))
    assert row["rename_target"] == r"C:\w\sub\a.txt"


def test_rename_ex_takes_replace_from_its_flags(tmp_path):
    event = rename_event(
        r"C:\w\a", r"C:\w\b", replace=False, flags=0x3, sub_operation=0x41, dos_target=r"C:\w\b"
    )
    row = one(tmp_path, event)
    assert row["operation"] == "SetRenameInformationEx"
    assert row["replace_if_exists"] is True
    assert row["detail"] == (
        "Flags: FILE_RENAME_REPLACE_IF_EXISTS, FILE_RENAME_POSIX_SEMANTICS, FileName: C:\\w\\b"
    )


@pytest.mark.parametrize("delete", [True, False])
def test_disposition_delete_flag(tmp_path, delete):
    row = one(tmp_path, disposition_event(r"C:\w\old.log", delete=delete))
    assert row["operation"] == "SetDispositionInformationFile"
    assert row["delete_flag"] is delete
    assert row["detail"] == f"Delete: {delete}"


@POINTERS
def test_read_and_write_offsets(tmp_path, pointer):
    events = [
        read_write_event(r"C:\f", write=True, offset=5_242_880, length=4096, pointer=pointer),
        read_write_event(
            r"C:\f", write=False, offset=0, length=16022, flags=3 << 17, pointer=pointer, ticks=1
        ),
    ]
    trace = read_pml(write(tmp_path, "rw.pml", pml_file(events, pointer=pointer)))
    rows = trace.events.to_dicts()
    assert [r["operation"] for r in rows] == ["WriteFile", "ReadFile"]
    assert [(r["offset"], r["length"]) for r in rows] == [(5_242_880, 4096), (0, 16022)]
    assert [r["detail"] for r in rows] == [
        "Offset: 5,242,880, Length: 4,096",
        "Offset: 0, Length: 16,022, Priority: Normal",
    ]


def test_completed_read_reports_the_transferred_length(tmp_path):
    event = read_write_event(r"C:\f", write=False, offset=0, length=4096)
    event.extra = (100).to_bytes(4, "little")
    assert one(tmp_path, event)["length"] == 100


def test_results_by_name_and_unknown_codes_in_hex(tmp_path):
    events = [
        close_event(r"C:\a", result=0xC0000034),
        close_event(r"C:\a", result=0xC000046F, ticks=1),
        close_event(r"C:\a", result=0x103, ticks=2),
    ]
    rows = read_pml(write(tmp_path, "r.pml", pml_file(events))).events.to_dicts()
    assert [r["result"] for r in rows] == ["NAME NOT FOUND", "0xC000046F", ""]
    assert rows[2]["duration"] is None  # still pending: Procmon shows no duration
    assert [r["detail"] for r in rows] == ["", "", ""]  # CloseFile has an empty Detail


def test_registry_path_and_class(tmp_path):
    row = one(tmp_path, registry_open_event(r"HKLM\Software\Vendor"))
    assert (row["operation"], row["event_class"]) == ("RegOpenKey", "Registry")
    assert row["path"] == r"HKLM\Software\Vendor"
    assert row["access_mask"] is None


def test_one_byte_paths(tmp_path):
    from test_read_pml_builder import fs_details

    event = Event(3, 38, fs_details(0, r"P:\Backup\winfsp", 8, one_byte=True))
    assert one(tmp_path, event)["path"] == r"P:\Backup\winfsp"


def test_non_ascii_paths(tmp_path):
    events = [close_event("C:\\Users\\t\\יוניקוד.txt"), close_event(r"C:\plain", ticks=1)]
    rows = read_pml(write(tmp_path, "u.pml", pml_file(events))).events["path"].to_list()
    assert rows == ["C:\\Users\\t\\יוניקוד.txt", r"C:\plain"]


def test_thread_and_network_events(tmp_path):
    events = [thread_create_event(7764), tcp_send_event(429, ticks=1)]
    rows = read_pml(write(tmp_path, "n.pml", pml_file(events))).events.to_dicts()
    assert [(r["operation"], r["event_class"], r["detail"]) for r in rows] == [
        ("Thread Create", "Process", "Thread ID: 7764"),
        ("TCP Send", "Network", "Length: 429, seqnum: 0, connid: 0"),
    ]
    assert rows[1]["path"] == "10.0.0.1:50000 -> 93.184.216.34:443"


def test_events_of_unknown_processes_have_null_names(tmp_path):
    row = one(tmp_path, close_event(r"C:\a", process_index=9))
    assert (row["process"], row["pid"]) == (None, None)


def test_version_7_logs_read_like_version_9(tmp_path):
    row = one(tmp_path, disposition_event(r"C:\x", delete=True), version=7)
    assert (row["operation"], row["delete_flag"]) == ("SetDispositionInformationFile", True)


def test_process_table(tmp_path):
    processes = [
        Process(0, 4242, "writer.exe", image_path=r"C:\w.exe", command_line="w.exe /x"),
        Process(3, 88, "MsMpEng.exe", user=r"NT AUTHORITY\SYSTEM"),
    ]
    path = write(tmp_path, "p.pml", pml_file([close_event("C:\\a", process_index=3)], processes))
    table = read_pml_processes(path)
    assert table["process_index"].to_list() == [0, 3]
    assert table["pid"].to_list() == [4242, 88]
    assert table.row(0, named=True)["command_line"] == "w.exe /x"
    assert table.row(1, named=True)["user"] == r"NT AUTHORITY\SYSTEM"
    assert table["start_time"][0] == T0.replace(tzinfo=None)
    assert table["end_time"][0] is None
    assert read_pml(path).events["process"].to_list() == ["MsMpEng.exe"]


def test_multi_file_capture_is_one_trace_numbered_on(tmp_path):
    first = write(
        tmp_path, "Log-1.PML", pml_file([close_event("C:\\a"), close_event("C:\\b", ticks=5)])
    )
    second = write(tmp_path, "Log-2.PML", pml_file([close_event("C:\\c", ticks=9)]))
    trace = read_pml([first, second])
    assert trace.events["row"].to_list() == [1, 2, 3]
    assert trace.events["path"].to_list() == ["C:\\a", "C:\\b", "C:\\c"]
    assert trace.source.name == "Log-1.PML"


def test_events_are_sorted_by_time_then_row(tmp_path):
    events = [close_event("C:\\late", ticks=50), close_event("C:\\early", ticks=10)]
    trace = read_pml(write(tmp_path, "s.pml", pml_file(events)))
    assert trace.events["row"].to_list() == [2, 1]


def test_gzip_wrapped_logs_and_the_format_table_reader(tmp_path):
    content = pml_file([close_event("C:\\a")])
    path = tmp_path / "log.pml.gz"
    path.write_bytes(gzip.compress(content))
    assert read_pml(path).events["path"].to_list() == ["C:\\a"]
    trace = read(open_input(path, sniff=sniff_pml))
    assert (trace.format, trace.events.height) == (FORMAT_NAME, 1)
