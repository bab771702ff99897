"""Refusals and damaged input: every message is asserted whole.

Fixtures are written to tmp_path and named after their defect. Messages start with the
file name, say what is wrong and what to do; none is a traceback.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pytest

from traceaudit.errors import (
    DamagedRowError,
    MissingColumnsError,
    TraceFormatError,
    UnknownFormatError,
    UsageError,
)
from traceaudit.formats import (
    FORMATS,
    detect,
    load_text,
    load_trace,
    supported_formats,
)

# "Procmon CSV export, Procmon rows pasted from the clipboard", plus any reader registered
# later (PML, XML…); the labels of the CSV family are pinned in test_supported_formats.
SUPPORTED = f"Supported: {supported_formats()}."
SAVE_CSV = "In Process Monitor, save the events with File > Save > CSV."
HEADER = '"Time of Day","Process Name","PID","Operation","Path","Result","Detail"'


def good_row(second: int) -> str:
    return f'"7:19:{second:02d}.0147934 AM","a.exe","12","CloseFile","C:\\x","SUCCESS",""'


def write(path: Path, text: str, encoding: str = "utf-8-sig") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def refuse(path: Path) -> str:
    """The message of the UnknownFormatError both detect() and load_trace() raise."""
    with pytest.raises(UnknownFormatError) as detected:
        detect(path)
    with pytest.raises(UnknownFormatError) as loaded:
        load_trace(path)
    assert str(detected.value) == str(loaded.value)
    return str(loaded.value)


def test_error_missing_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "missing-path-result.csv", '"Time of Day","PID"\r\n"7:19:37.0147934 AM","12"\r\n'
    )
    with pytest.raises(MissingColumnsError) as error:
        load_trace(path)
    assert str(error.value) == (
        "missing-path-result.csv: missing columns 'Process Name', 'Operation', 'Path', "
        "'Result' (found: 'Time of Day', 'PID'). Re-export from Process Monitor with these "
        "columns."
    )


def test_error_missing_time_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "no-time.csv",
        '"Process Name","PID","Operation","Path","Result"\r\n"a.exe","1","CloseFile","C:\\x","SUCCESS"\r\n',
    )
    with pytest.raises(MissingColumnsError) as error:
        load_trace(path)
    assert str(error.value) == (
        "no-time.csv: missing columns 'Time of Day' (found: 'Process Name', 'PID', "
        "'Operation', 'Path', 'Result'). Re-export from Process Monitor with these columns."
    )


def test_error_stack_export(tmp_path: Path) -> None:
    path = write(
        tmp_path / "stack-export.csv",
        '"Frame","Module","Location","Address","Path"\r\n'
        '"0","FLTMGR.SYS","FltDecodeParameters + 0x1cfd","0xfffff8072567fa8d",'
        '"C:\\Windows\\System32\\drivers\\FLTMGR.SYS"\r\n',
    )
    assert refuse(path) == (
        "stack-export.csv: not a trace traceaudit can read (looks like a Procmon stack export "
        "with columns Frame, Module, Location, Address, Path, not an event list). "
        f"{SUPPORTED} Export the event list instead: in Process Monitor, File > Save > CSV."
    )


def test_error_stack_export_from_the_corpus(corpus: Path) -> None:
    message = refuse(corpus / "other" / "procmon-stack-export-not-events.csv")
    assert message.startswith("procmon-stack-export-not-events.csv: not a trace")
    assert "Procmon stack export" in message and "File > Save > CSV" in message


def test_error_sysmon_dump(tmp_path: Path) -> None:
    path = write(
        tmp_path / "sysmon.log",
        "TimeCreated : 2026/4/22 上午 01:09:50\r\nId          : 5\r\n"
        "Message     : Process terminated:\r\n              ProcessGuid: {d8beb913}\r\n",
    )
    assert refuse(path) == (
        "sysmon.log: not a trace traceaudit can read (looks like Sysmon event output, which "
        f"traceaudit does not support). {SUPPORTED} Record the file activity with Process "
        "Monitor and save it with File > Save > CSV."
    )


def test_error_sysmon_dump_from_the_corpus(corpus: Path) -> None:
    message = refuse(corpus / "other" / "sysmon-format-list.txt")
    assert message.startswith(
        "sysmon-format-list.txt: not a trace traceaudit can read (looks like Sysmon"
    )


def test_error_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert refuse(path) == (
        f"empty.csv: not a trace traceaudit can read (looks like an empty file). {SUPPORTED} {SAVE_CSV}"
    )


def test_error_blank_lines_only(tmp_path: Path) -> None:
    path = write(tmp_path / "blank.csv", "\r\n  \r\n")
    assert refuse(path) == (
        f"blank.csv: not a trace traceaudit can read (looks like an empty file). {SUPPORTED} {SAVE_CSV}"
    )


def test_error_binary_junk(tmp_path: Path) -> None:
    path = tmp_path / "trace.bin"
    path.write_bytes(bytes(range(256)) * 8)
    assert refuse(path) == (
        f"trace.bin: not a trace traceaudit can read (looks like binary data). {SUPPORTED} {SAVE_CSV}"
    )


def test_error_binary_named_etl_without_an_etw_header(tmp_path: Path) -> None:
    path = tmp_path / "trace.etl"
    path.write_bytes(bytes(range(256)) * 8)
    assert refuse(path) == (
        "trace.etl: not a trace traceaudit can read (looks like binary data named .etl, but "
        f"without an ETW log header: a damaged or partial trace). {SUPPORTED} Stop the trace "
        "session cleanly (wpr -stop / xperf -d) and try the file it writes."
    )


def _format_names() -> list[str]:
    return [f.name for f in FORMATS]


def test_error_other_table(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "name,age\r\nAda,36\r\n")
    assert refuse(path) == (
        "people.csv: not a trace traceaudit can read (looks like a table with columns 'name', "
        f"'age', not Process Monitor's). {SUPPORTED} {SAVE_CSV}"
    )


def test_error_plain_text(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "Processes Created:\r\n==================\r\n")
    assert refuse(path) == (
        "notes.txt: not a trace traceaudit can read (looks like plain text with no header "
        f"traceaudit knows). {SUPPORTED} {SAVE_CSV}"
    )


def test_error_never_quotes_the_content_of_a_file_given_by_mistake(tmp_path: Path) -> None:
    shadow = write(tmp_path / "shadow", "root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")
    message = refuse(shadow)
    assert "hashhash" not in message and "root" not in message
    table = write(tmp_path / "t.csv", "alice,s3cr3t-P4ss,42\n")
    message = refuse(table)
    assert "s3cr3t" not in message and "a table of 3 columns" in message


def damaged_time_csv(tmp_path: Path) -> Path:
    """16 good rows, then line 17 with an impossible time."""
    lines = [HEADER] + [good_row(s) for s in range(15)]
    lines.append('"25:99:00","a.exe","12","CloseFile","C:\\x","SUCCESS",""')
    lines.append(good_row(40))
    return write(tmp_path / "bad-time-line-17.csv", "\r\n".join(lines) + "\r\n")


def test_error_damaged_time_in_strict_mode(tmp_path: Path) -> None:
    path = damaged_time_csv(tmp_path)
    with pytest.raises(DamagedRowError) as error:
        load_trace(path, strict=True)
    assert str(error.value) == (
        "bad-time-line-17.csv: line 17: cannot read time '25:99:00' (expected a Procmon time "
        "such as '7:19:37.0147934 AM' or '19:19:37,0147934'). Fix or delete the row, or read "
        "without strict mode to skip damaged rows."
    )


def test_damaged_time_is_skipped_and_counted(tmp_path: Path) -> None:
    trace = load_trace(damaged_time_csv(tmp_path))
    assert trace.events.height == 16
    assert trace.skipped == {"unreadable time": 1}
    assert trace.skipped_rows == ("line 17",)
    assert trace.warnings[0] == (
        "bad-time-line-17.csv: skipped 1 damaged row (1 unreadable time); first at line 17. "
        "Use strict mode to stop at the first one."
    )
    assert 16 not in trace.events["row"].to_list()


def test_error_damaged_pid_in_strict_mode(tmp_path: Path) -> None:
    text = "\r\n".join([HEADER, good_row(1), good_row(2).replace('"12"', '"twelve"')]) + "\r\n"
    path = write(tmp_path / "bad-pid.csv", text)
    with pytest.raises(DamagedRowError) as error:
        load_trace(path, strict=True)
    assert str(error.value) == (
        "bad-pid.csv: line 3: cannot read PID 'twelve' (expected a whole number). Fix or "
        "delete the row, or read without strict mode to skip damaged rows."
    )


def test_error_too_many_fields_in_strict_mode(tmp_path: Path) -> None:
    text = "\r\n".join([HEADER, good_row(1), good_row(2) + ',"extra"']) + "\r\n"
    path = write(tmp_path / "extra-field.csv", text)
    with pytest.raises(DamagedRowError) as error:
        load_trace(path, strict=True)
    assert str(error.value) == (
        "extra-field.csv: line 3: more fields than the header's 7 columns (a stray "
        "delimiter or quote, or a cut line?). Fix or delete the row, or read without strict "
        "mode to skip damaged rows."
    )


def test_damaged_rows_of_every_kind_are_counted_by_reason(tmp_path: Path) -> None:
    lines = [HEADER, good_row(1)]
    lines.append(good_row(2).rsplit(",", 1)[0])  # line 3: six fields
    lines.append(good_row(3) + ',"x"')  # line 4: eight fields
    lines.append(  # lines 5-7: an environment block with CR and CRLF inside quotes
        '"7:19:04.0000000 AM","a.exe","12","Process Start","","SUCCESS","Env: \r;\ta=1\r\n;\tb=2"'
    )
    lines.append(good_row(5).replace('"12"', '"x"'))  # line 8: bad PID
    lines.append(good_row(6).replace("7:19:06.0147934 AM", "soon"))  # line 9: bad time
    lines.append(good_row(7))
    trace = load_trace(write(tmp_path / "mixed-damage.csv", "\r\n".join(lines) + "\r\n"))
    assert trace.events.height == 3
    assert trace.skipped == {"wrong field count": 2, "unreadable PID": 1, "unreadable time": 1}
    assert trace.skipped_rows == ("line 3", "line 4", "line 8", "line 9")


def test_error_unknown_format_name(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", HEADER + "\r\n" + good_row(1) + "\r\n")
    with pytest.raises(UsageError) as error:
        load_trace(path, format="procmon-xlsx")
    assert str(error.value) == (
        "format 'procmon-xlsx': unknown format. Choose one of "
        + ", ".join(f"'{n}'" for n in _format_names())
        + "."
    )


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError) as error:
        load_trace(tmp_path / "nowhere.csv")
    assert (
        str(error.value)
        == f"nowhere.csv: no such file ({tmp_path / 'nowhere.csv'}). Check the path."
    )


def test_error_folder(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError) as error:
        load_trace(tmp_path)
    assert str(error.value) == f"{tmp_path.name}: is a folder, not a trace file. Give a file."


def test_error_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress((HEADER + "\r\n" + good_row(1) + "\r\n").encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError) as error:
        load_trace(path)
    message = str(error.value)
    assert message.startswith("cut.csv.gz: damaged gzip file (")
    assert message.endswith("). Compress the trace again or give the uncompressed file.")


def test_error_zip_without_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "nothing to see\r\n")
    assert refuse(path) == (
        "notes.zip/readme.txt: not a trace traceaudit can read (looks like plain text with no "
        f"header traceaudit knows). {SUPPORTED} {SAVE_CSV}"
    )


def test_error_pasted_text_that_is_not_rows() -> None:
    with pytest.raises(UnknownFormatError) as error:
        load_text("hello world")
    assert str(error.value) == (
        "<pasted>: not a trace traceaudit can read (looks like plain text with no header "
        f"traceaudit knows). {SUPPORTED} {SAVE_CSV}"
    )


def test_supported_formats() -> None:
    labels = supported_formats().split(", ")
    assert labels.index("Procmon CSV export") < labels.index(
        "Procmon rows pasted from the clipboard"
    )


def test_errors_are_value_errors() -> None:
    assert issubclass(UnknownFormatError, ValueError)
    assert issubclass(DamagedRowError, ValueError)
