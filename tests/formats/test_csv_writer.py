"""Byte-level tests of the Procmon CSV and clipboard writer.

What Procmon writes is pinned here byte for byte: BOM, all fields quoted with doubled
quotes, CRLF, Procmon's time formats (12 AM / 12 PM, 100 ns fractions). The vectorised
(polars) formatting is checked against the scalar formatters with hypothesis.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from locations import ROOT
from traceaudit.errors import UsageError
from traceaudit.formats.procmon_text import csv_write as w
from traceaudit.formats.procmon_text.csv_write import (
    DEFAULT_COLUMNS,
    SIMULATION_COLUMNS,
    SUPPORTED_COLUMNS,
    ProcmonRow,
    format_clipboard_rows,
    format_date_time,
    format_detail_createfile,
    format_detail_disposition,
    format_detail_readwrite,
    format_detail_rename,
    format_duration,
    format_iso_time,
    format_relative_time,
    format_time_of_day,
    to_ns,
    write_clipboard_rows,
    write_procmon_csv,
)

ROOT = ROOT
ISSUE = ROOT.parent / "shared" / "context" / "uv-issue-1491.md"


def _text(path: Path) -> str:
    """A written CSV as text, CRLF kept (``read_text`` would translate line ends)."""
    return path.read_bytes().decode("utf-8-sig")


def ns(*args: int, frac100: int = 0) -> int:
    """Trace ns of a naive datetime plus a number of 100 ns ticks."""
    return to_ns(datetime(*args)) + frac100 * 100


ROWS = [
    ProcmonRow(
        ns(2024, 7, 15, 0, 5, 9, frac100=1),
        'a "quoted".exe',
        4,
        "CreateFile",
        "C:\\Users\\alice\\file, with comma.txt",
        "SHARING VIOLATION",
        "Desired Access: Generic Write, ShareMode: None",
        tid=1568,
        duration=11_200,
    ),
    ProcmonRow(ns(2024, 7, 15, 12, 0, 0, frac100=9_999_999), "uv.exe", 11604, "CloseFile", "C:\\x", "SUCCESS"),
    ProcmonRow(ns(2024, 12, 31, 23, 59, 59, frac100=1234567), "svchost.exe", 1204, "RegOpenKey", "HKLM", "ACCESS DENIED", "Desired Access: All Access", tid=7, duration=None),
]  # fmt: skip

EXPECTED = (
    b'\xef\xbb\xbf"Time of Day","Process Name","PID","Operation","Path","Result","Detail","TID","Date & Time","Duration"\r\n'
    b'"12:05:09.0000001 AM","a ""quoted"".exe","4","CreateFile","C:\\Users\\alice\\file, with comma.txt",'
    b'"SHARING VIOLATION","Desired Access: Generic Write, ShareMode: None","1568","7/15/2024 12:05:09 AM","0.0000112"\r\n'
    b'"12:00:00.9999999 PM","uv.exe","11604","CloseFile","C:\\x","SUCCESS","","","7/15/2024 12:00:00 PM",""\r\n'
    b'"11:59:59.1234567 PM","svchost.exe","1204","RegOpenKey","HKLM","ACCESS DENIED","Desired Access: All Access",'
    b'"7","12/31/2024 11:59:59 PM",""\r\n'
)


def test_exact_bytes_of_a_small_file(tmp_path: Path) -> None:
    out = write_procmon_csv(ROWS, tmp_path / "t.csv", columns=SIMULATION_COLUMNS)
    assert out.read_bytes() == EXPECTED


def test_default_columns_are_procmons_seven(tmp_path: Path) -> None:
    data = write_procmon_csv(ROWS[:1], tmp_path / "t.csv").read_bytes()
    assert data.startswith(
        b'\xef\xbb\xbf"Time of Day","Process Name","PID","Operation","Path","Result","Detail"\r\n'
    )
    assert data.count(b"\r\n") == 2 and b"\n" not in data.replace(b"\r\n", b"")


def test_24_hour_clock(tmp_path: Path) -> None:
    path = write_procmon_csv(
        ROWS, tmp_path / "t.csv", columns=("Time of Day", "Date & Time"), clock_12h=False
    )
    lines = _text(path).split("\r\n")
    assert lines[1:4] == [
        '"00:05:09.0000001","7/15/2024 00:05:09"',
        '"12:00:00.9999999","7/15/2024 12:00:00"',
        '"23:59:59.1234567","12/31/2024 23:59:59"',
    ]


def test_extra_columns(tmp_path: Path) -> None:
    columns = ("Relative Time", "Completion Time", "Event Class", "PID")
    text = _text(write_procmon_csv(ROWS, tmp_path / "t.csv", columns=columns))
    lines = text.split("\r\n")
    assert lines[0] == '"Relative Time","Completion Time","Event Class","PID"'
    assert lines[1] == '"00:00:00.0000000","12:05:09.0000113 AM","File System","4"'
    assert lines[2] == '"11:54:51.9999998","","File System","11604"'
    assert lines[3].startswith('"4079:54:50.1234566","","Registry"')


def test_embedded_newline_stays_inside_quotes(tmp_path: Path) -> None:
    row = ProcmonRow(
        ns(2024, 1, 1, 9, 0, 0),
        "x.exe",
        1,
        "Process Start",
        "",
        "SUCCESS",
        'Environment: ;\r;\tA=1;\r;\tB="2"',
    )
    data = write_procmon_csv([row], tmp_path / "t.csv").read_bytes()
    assert data.endswith(b'"Environment: ;\r;\tA=1;\r;\tB=""2"""\r\n')
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert parsed[1][6] == row.detail


def test_rows_as_mappings_with_datetimes(tmp_path: Path) -> None:
    rows = [
        {
            "time": datetime(2024, 7, 15, 13, 1, 2, 345678),
            "process": "p.exe",
            "pid": 8,
            "operation": "ReadFile",
            "path": "C:\\f",
            "result": "SUCCESS",
            "duration": timedelta(microseconds=3),
        }
    ]
    text = _text(write_procmon_csv(rows, tmp_path / "t.csv", columns=SIMULATION_COLUMNS))
    assert (
        text.split("\r\n")[1]
        == '"1:01:02.3456780 PM","p.exe","8","ReadFile","C:\\f","SUCCESS","","","7/15/2024 1:01:02 PM","0.0000030"'
    )


def test_polars_frame_input(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "time": [datetime(2024, 7, 15, 11, 27, 28)],
            "process": ["uv.exe"],
            "pid": [11604],
            "operation": ["SetRenameInformationFile"],
            "path": ["C:\\d"],
            "result": ["ACCESS DENIED"],
            "detail": [format_detail_rename("C:\\e", True)],
        }
    )
    text = _text(write_procmon_csv(frame, tmp_path / "t.csv"))
    assert text.split("\r\n")[1] == (
        '"11:27:28.0000000 AM","uv.exe","11604","SetRenameInformationFile","C:\\d","ACCESS DENIED",'
        '"ReplaceIfExists: True, FileName: C:\\e"'
    )


def test_header_only_for_no_rows(tmp_path: Path) -> None:
    assert (
        write_procmon_csv([], tmp_path / "t.csv", columns=("PID",)).read_bytes()
        == b'\xef\xbb\xbf"PID"\r\n'
    )


def test_error_unknown_column(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        write_procmon_csv(ROWS, tmp_path / "t.csv", columns=("PID", "Handle"))
    assert (
        str(info.value)
        == f"cannot write column 'Handle'; supported: {', '.join(SUPPORTED_COLUMNS)}"
    )
    assert not list(tmp_path.iterdir())


def test_error_aware_datetime_and_negative_time(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has a time zone"):
        to_ns(datetime(2024, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(UsageError, match="before 1970"):
        write_procmon_csv([ProcmonRow(-100, "p", 1, "o", "", "SUCCESS")], tmp_path / "t.csv")


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_bytes(b"old")
    write_procmon_csv(ROWS, target, columns=SIMULATION_COLUMNS)
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
    assert target.read_bytes() == EXPECTED


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "t.csv"
    target.write_bytes(b"old")

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(w.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_procmon_csv(ROWS, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_written_file_gets_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        target = write_procmon_csv(ROWS, tmp_path / "t.csv")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- time formats


@pytest.mark.parametrize(
    ("when", "twelve", "twenty_four"),
    [
        ((2024, 7, 15, 0, 0, 0), "12:00:00.0000000 AM", "00:00:00.0000000"),
        ((2024, 7, 15, 0, 59, 59), "12:59:59.0000000 AM", "00:59:59.0000000"),
        ((2024, 7, 15, 1, 0, 0), "1:00:00.0000000 AM", "01:00:00.0000000"),
        ((2024, 7, 15, 11, 59, 59), "11:59:59.0000000 AM", "11:59:59.0000000"),
        ((2024, 7, 15, 12, 0, 0), "12:00:00.0000000 PM", "12:00:00.0000000"),
        ((2024, 7, 15, 12, 30, 0), "12:30:00.0000000 PM", "12:30:00.0000000"),
        ((2024, 7, 15, 13, 0, 0), "1:00:00.0000000 PM", "13:00:00.0000000"),
        ((2024, 7, 15, 23, 59, 59), "11:59:59.0000000 PM", "23:59:59.0000000"),
    ],
)
def test_time_of_day_around_noon_and_midnight(
    when: tuple[int, ...], twelve: str, twenty_four: str
) -> None:
    assert format_time_of_day(ns(*when)) == twelve
    assert format_time_of_day(ns(*when), clock_12h=False) == twenty_four


def test_scalar_formats() -> None:
    t = ns(2020, 7, 31, 7, 19, 37, frac100=147934)
    assert format_time_of_day(t) == "7:19:37.0147934 AM"
    assert format_date_time(t) == "7/31/2020 7:19:37 AM"
    assert format_iso_time(t) == "2020-07-31T07:19:37.0147934"
    assert format_duration(11_200) == "0.0000112"
    assert format_duration(12_345_678_900) == "12.3456789"
    assert format_duration(None) == ""
    assert format_relative_time(12_556_167_000) == "00:00:12.5561670"
    assert format_time_of_day(t + 99) == "7:19:37.0147934 AM"  # sub-tick ns are cut, not rounded


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(
        st.integers(min_value=0, max_value=4_102_444_800 * 10**9), min_size=1, max_size=20
    ),
    twelve=st.booleans(),
)
def test_vectorised_formats_match_scalar_ones(times: list[int], twelve: bool) -> None:
    rows = [ProcmonRow(t, "p", 1, "op", "", "SUCCESS", duration=t % 10**9) for t in times]
    buffer = io.StringIO(w._rows_frame(rows).select(
        [w._column_expr(c, twelve) for c in ("Time of Day", "Date & Time", "Duration", "Relative Time")]
    ).write_csv())  # fmt: skip
    parsed = list(csv.reader(buffer))[1:]
    start = min(times)
    for t, (tod, date_time, duration, relative) in zip(times, parsed, strict=True):
        assert tod == format_time_of_day(t, twelve)
        assert date_time == format_date_time(t, twelve)
        assert duration == format_duration(t % 10**9)
        assert relative == format_relative_time(t - start)


# --------------------------------------------------------------------------- Detail helpers


def test_detail_createfile_success_and_failure() -> None:
    assert format_detail_createfile(
        ["Generic Read", "Read Attributes"],
        "Open",
        ["Synchronous IO Non-Alert", "Non-Directory File"],
        ["Read", "Write"],
        "Opened",
    ) == (
        "Desired Access: Generic Read, Read Attributes, Disposition: Open, Options: Synchronous IO Non-Alert, "
        "Non-Directory File, Attributes: n/a, ShareMode: Read, Write, AllocationSize: n/a, OpenResult: Opened"
    )
    assert format_detail_createfile(
        ["Generic Write"], "OverwriteIf", [], [], None, allocation_size=0
    ) == (
        "Desired Access: Generic Write, Disposition: OverwriteIf, Options: , Attributes: n/a, ShareMode: None, "
        "AllocationSize: 0"
    )
    assert format_detail_createfile(
        ["Generic Write", "Read Attributes"], "OpenIf", ["Disallow Exclusive"], ["Read", "Write"], "Superseded",
        attributes="N", allocation_size=0, impersonating="HOST\\user",
    ).endswith("ShareMode: Read, Write, AllocationSize: 0, Impersonating: HOST\\user, OpenResult: Superseded")  # fmt: skip


def test_detail_other_operations() -> None:
    assert (
        format_detail_rename("C:\\a\\b.txt", True)
        == "ReplaceIfExists: True, FileName: C:\\a\\b.txt"
    )
    assert (
        format_detail_rename("C:\\a\\b.txt", False)
        == "ReplaceIfExists: False, FileName: C:\\a\\b.txt"
    )
    assert format_detail_disposition() == "Delete: True"
    assert format_detail_readwrite(0, 4096) == "Offset: 0, Length: 4,096, Priority: Normal"
    assert format_detail_readwrite(8192, 8047, priority=None) == "Offset: 8,192, Length: 8,047"
    assert format_detail_readwrite(
        41971712, 88, io_flags=["Non-cached", "Paging I/O", "Synchronous Paging I/O"]
    ) == (
        "Offset: 41,971,712, Length: 88, I/O Flags: Non-cached, Paging I/O, Synchronous Paging I/O, Priority: Normal"
    )


# --------------------------------------------------------------------------- clipboard text


def test_clipboard_rows() -> None:
    text = format_clipboard_rows(ROWS[:2])
    assert text == (
        '12:05:09.0000001 AM\ta "quoted".exe\t4\tCreateFile\tC:\\Users\\alice\\file, with comma.txt\t'
        "SHARING VIOLATION\tDesired Access: Generic Write, ShareMode: None\r\n"
        "12:00:00.9999999 PM\tuv.exe\t11604\tCloseFile\tC:\\x\tSUCCESS\t\r\n"
    )


def test_write_clipboard_rows_no_bom_lf(tmp_path: Path) -> None:
    data = write_clipboard_rows(ROWS[1:2], tmp_path / "c.tsv", newline="\n").read_bytes()
    assert data == b"12:00:00.9999999 PM\tuv.exe\t11604\tCloseFile\tC:\\x\tSUCCESS\t\n"


def _make_samples():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "make_samples", ROOT / "samples" / "make_samples.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_uv_issue_sample_is_reproduced_byte_for_byte() -> None:
    module = _make_samples()
    text = format_clipboard_rows(module.uv_issue_rows(), newline="\n")
    assert text.encode("utf-8") == (ROOT / "samples" / "uv-issue-pasted.tsv").read_bytes()


@pytest.mark.skipif(not ISSUE.exists(), reason="shared context folder absent")
def test_uv_issue_sample_equals_the_pasted_text() -> None:
    lines = ISSUE.read_text(encoding="utf-8").split("\n")
    start = next(
        i for i, line in enumerate(lines) if line.startswith("11:27:27.3794232 AM\tuv.exe")
    )
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    pasted = "\n".join(lines[start:end]).rstrip("\n") + "\n"
    assert (ROOT / "samples" / "uv-issue-pasted.tsv").read_text(encoding="utf-8") == pasted


def test_default_columns_constant() -> None:
    assert DEFAULT_COLUMNS == (
        "Time of Day",
        "Process Name",
        "PID",
        "Operation",
        "Path",
        "Result",
        "Detail",
    )
    assert (*DEFAULT_COLUMNS, "TID", "Date & Time", "Duration") == SIMULATION_COLUMNS
