"""Rows copied from Process Monitor with Ctrl+C and pasted into an issue (astral-sh/uv#1491)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from traceaudit.errors import DamagedRowError
from traceaudit.formats import detect, load_text, load_trace

TMP = r"C:\Users\username\AppData\Local\Temp\2\.tmpcUIakH\built-wheels-v3"
SRC = TMP + r"\.tmpQYLAdW\conan-2.5.0"
DST = TMP + r"\index\f85683082b98592e\conan\2.5.0\Ac6VfyuHm-z0Y9-KNpzw5"


def row(*fields: str) -> str:
    return "\t".join(fields)


# The tail of the thread's I/O from the issue, verbatim (CloseFile rows end in a tab).
UV_ROWS = [
    row(
        "11:27:28.2283100 AM",
        "uv.exe",
        "11604",
        "QueryAttributeTagFile",
        SRC,
        "SUCCESS",
        "Attributes: D, ReparseTag: 0x0",
    ),
    row(
        "11:27:28.2283283 AM",
        "uv.exe",
        "11604",
        "QueryBasicInformationFile",
        SRC,
        "SUCCESS",
        "CreationTime: 7/15/2024 11:27:27 AM, LastAccessTime: 7/15/2024 11:27:28 AM, "
        "LastWriteTime: 7/15/2024 11:27:28 AM, ChangeTime: 7/15/2024 11:27:28 AM, "
        "FileAttributes: D",
    ),
    row(
        "11:27:28.2284142 AM",
        "uv.exe",
        "11604",
        "CreateFile",
        DST,
        "SUCCESS",
        "Desired Access: Append Data/Add Subdirectory/Create Pipe Instance, Synchronize, "
        "Disposition: Open, Options: , Attributes: n/a, ShareMode: Read, Write, "
        "AllocationSize: n/a, OpenResult: Opened",
    ),
    row(
        "11:27:28.2285886 AM",
        "uv.exe",
        "11604",
        "SetRenameInformationFile",
        SRC,
        "ACCESS DENIED",
        f"ReplaceIfExists: True, FileName: {DST}\\conan-2.5.0.tar.gz",
    ),
    row("11:27:28.2288963 AM", "uv.exe", "11604", "CloseFile", DST, "SUCCESS", ""),
    row("11:27:28.2289789 AM", "uv.exe", "11604", "IRP_MJ_CLOSE", DST, "SUCCESS", ""),
    row("11:27:28.2290180 AM", "uv.exe", "11604", "CloseFile", SRC, "SUCCESS", ""),
    row("11:27:28.2290773 AM", "uv.exe", "11604", "IRP_MJ_CLOSE", SRC, "SUCCESS", ""),
    row(
        "11:27:29.1293378 AM",
        "uv.exe",
        "11604",
        "Thread Exit",
        "",
        "SUCCESS",
        "Thread ID: 10608, User Time: 0.0156250, Kernel Time: 0.0312500",
    ),
]
PASTED = "\n".join(UV_ROWS) + "\n"


def test_pasted_rows_are_read() -> None:
    trace = load_text(PASTED)
    events = trace.events
    assert trace.format == "procmon-clipboard"
    assert events.height == 9
    assert trace.skipped == {}
    assert events["process"].unique().to_list() == ["uv.exe"]
    assert events["pid"].unique().to_list() == [11604]
    assert events["time"][0] == datetime(2000, 1, 1, 11, 27, 28, 228310)
    assert events["time"].cast(pl.Int64)[0] % 1_000 == 0  # .2283100 exactly
    rename = events.filter(pl.col("operation") == "SetRenameInformationFile").row(0, named=True)
    assert rename["path"] == SRC
    assert rename["result"] == "ACCESS DENIED"
    assert rename["rename_target"] == DST + r"\conan-2.5.0.tar.gz"
    assert rename["replace_if_exists"] is True
    create = events.filter(pl.col("operation") == "CreateFile").row(0, named=True)
    assert create["access_mask"] == 0x0004 | 0x00100000
    assert create["share_mode"] == 0b011
    assert create["open_result"] == "Opened"
    closes = events.filter(pl.col("operation") == "CloseFile")
    assert closes["detail"].to_list() == ["", ""]
    exit_row = events.filter(pl.col("operation") == "Thread Exit").row(0, named=True)
    assert exit_row["path"] == ""
    assert exit_row["event_class"] == "Process"
    assert events["event_class"][0] == "File System"


def test_markdown_fences_blank_lines_and_trailing_spaces_are_ignored() -> None:
    text = "\n\n```\n" + "\n".join(line + "  " for line in UV_ROWS) + "\n```\n\n"
    trace = load_text(text, date=date(2024, 7, 15))
    assert trace.events.height == 9
    assert trace.skipped == {}
    assert trace.events["time"][0] == datetime(2024, 7, 15, 11, 27, 28, 228310)
    assert trace.events.filter(pl.col("operation") == "CloseFile")["detail"].to_list() == ["", ""]


def test_a_missing_trailing_tab_is_an_empty_detail() -> None:
    trace = load_text("\n".join(line.rstrip("\t") for line in UV_ROWS))
    assert trace.events.height == 9
    assert trace.skipped == {}


def test_crlf_and_a_single_row() -> None:
    trace = load_text(UV_ROWS[3] + "\r\n")
    assert trace.events.height == 1
    assert trace.events["rename_target"][0].endswith("conan-2.5.0.tar.gz")


def test_environment_block_continues_the_row() -> None:
    start = row(
        "9:00:00.0000000 AM",
        "a.exe",
        "7",
        "Process Start",
        "",
        "SUCCESS",
        "Parent PID: 1, Environment: ",
    )
    text = start + "\r;\tA=1\r;\tB=2\n" + UV_ROWS[4] + "\n"
    trace = load_text(text)
    assert trace.events.height == 2
    assert trace.events["detail"][0] == "Parent PID: 1, Environment: \r;\tA=1\r;\tB=2"


def test_damaged_pasted_row_is_skipped_with_its_line() -> None:
    text = "```\n" + UV_ROWS[0] + "\n" + "11:27:28 AM\tuv.exe\n" + UV_ROWS[1] + "\n```\n"
    trace = load_text(text)
    assert trace.events.height == 2
    assert trace.skipped == {"wrong field count": 1}
    assert trace.skipped_rows == ("line 3",)
    with pytest.raises(DamagedRowError) as error:
        load_text(text, strict=True)
    assert str(error.value) == (
        "<pasted>: line 3: fewer fields than the 7 tab-separated fields of a copied Procmon "
        "row (a stray delimiter or quote, or a cut line?). Fix or delete the row, or read "
        "without strict mode to skip damaged rows."
    )


def test_clipboard_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "pasted.txt"
    path.write_text("```\n" + PASTED + "```\n", encoding="utf-8")
    assert detect(path) == "procmon-clipboard"
    trace = load_trace(path)
    assert trace.format == "procmon-clipboard"
    assert trace.events.height == 9
    assert trace.source == path
