"""CSV shapes beyond the corpus: wrappers, encodings, delimiters, quoting, column sets."""

from __future__ import annotations

import gzip
import zipfile
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from traceaudit.formats import detect, load_text, load_trace
from traceaudit.schema import EVENT_SCHEMA

HEADER = ["Time of Day", "Process Name", "PID", "Operation", "Path", "Result", "Detail"]
ROWS = [
    [
        "7:19:37.0147934 AM",
        "MsMpEng.exe",
        "1000",
        "CreateFile",
        "C:\\t\\a.dll",
        "SUCCESS",
        "Desired Access: Generic Read, Disposition: Open, Options: , Attributes: n/a, "
        "ShareMode: Read, Write, Delete, AllocationSize: n/a, OpenResult: Opened",
    ],
    [
        "7:19:37.0150000 AM",
        "uv.exe",
        "11604",
        "SetRenameInformationFile",
        "C:\\t",
        "ACCESS DENIED",
        "ReplaceIfExists: True, FileName: C:\\cache\\t",
    ],
    ["7:19:37.0160000 AM", "MsMpEng.exe", "1000", "CloseFile", "C:\\t\\a.dll", "SUCCESS", ""],
]


def procmon_csv(header: list[str] = HEADER, rows: list[list[str]] = ROWS, sep: str = ",") -> str:
    """Procmon's own style: every field quoted, quotes doubled, CRLF."""

    def line(fields: list[str]) -> str:
        return sep.join('"' + f.replace('"', '""') + '"' for f in fields)

    return "\r\n".join(line(r) for r in [header, *rows]) + "\r\n"


def excel_csv(header: list[str] = HEADER, rows: list[list[str]] = ROWS, sep: str = ",") -> str:
    """Excel style: quoted only where needed."""

    def field(f: str) -> str:
        return '"' + f.replace('"', '""') + '"' if any(c in f for c in f'{sep}"\r\n') else f

    return "\r\n".join(sep.join(field(f) for f in r) for r in [header, *rows]) + "\r\n"


def check(trace, n: int = 3) -> None:  # type: ignore[no-untyped-def]
    events = trace.events
    assert dict(events.schema) == EVENT_SCHEMA
    assert events.height == n
    assert trace.skipped == {}
    if n == 3:
        assert events["operation"].to_list() == [
            "CreateFile",
            "SetRenameInformationFile",
            "CloseFile",
        ]
        assert events["rename_target"][1] == "C:\\cache\\t"
        assert events["share_mode"][0] == 7
        assert events["detail"][2] == ""


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "utf-16", "utf-16-le", "cp1252"])
def test_encodings(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / f"trace-{encoding}.csv"
    path.write_bytes(procmon_csv().encode(encoding))
    check(load_trace(path))


def test_utf16_tab_separated_excel_unicode_text(tmp_path: Path) -> None:
    path = tmp_path / "unicode-text.txt"
    path.write_bytes(excel_csv(sep="\t").encode("utf-16"))
    trace = load_trace(path)
    check(trace)
    assert any("UTF-16" in w for w in trace.warnings)


def test_cp1252_accents_survive(tmp_path: Path) -> None:
    rows = [r[:] for r in ROWS]
    rows[0][4] = "C:\\Users\\José\\Désktop\\a.dll"
    path = tmp_path / "western.csv"
    path.write_bytes(procmon_csv(rows=rows).encode("cp1252"))
    trace = load_trace(path)
    assert trace.events["path"][0] == "C:\\Users\\José\\Désktop\\a.dll"
    assert any("cp1252" in w for w in trace.warnings)


def test_cp1251_russian(tmp_path: Path) -> None:
    rows = [r[:] for r in ROWS]
    rows[0][4] = "C:\\Пользователи\\Документы\\отчёт.txt"
    path = tmp_path / "russian.csv"
    path.write_bytes(procmon_csv(rows=rows).encode("cp1251"))
    trace = load_trace(path)
    assert trace.events["path"][0] == "C:\\Пользователи\\Документы\\отчёт.txt"


def test_cp932_japanese(tmp_path: Path) -> None:
    rows = [r[:] for r in ROWS]
    rows[0][4] = "C:\\ユーザー\\ドキュメント\\報告書.xlsx"
    path = tmp_path / "japanese.csv"
    path.write_bytes(excel_csv(rows=rows, sep="\t").encode("cp932"))
    trace = load_trace(path)
    assert trace.events["path"][0] == "C:\\ユーザー\\ドキュメント\\報告書.xlsx"


def test_invalid_utf8_past_the_sniffed_head_falls_back(tmp_path: Path) -> None:
    rows = [ROWS[2][:] for _ in range(3000)]
    rows[-1][4] = "C:\\caf\xe9"  # cp1252 byte, 200 KB into the file
    text = procmon_csv(rows=rows)
    path = tmp_path / "late-cp1252.csv"
    path.write_bytes(text.encode("cp1252"))
    trace = load_trace(path)
    assert trace.events.height == 3000
    assert trace.events.sort("row")["path"][-1] == "C:\\café"


@pytest.mark.parametrize("sep", [",", "\t", ";"])
def test_delimiters_quoted_and_unquoted(tmp_path: Path, sep: str) -> None:
    for style, text in (("quoted", procmon_csv(sep=sep)), ("excel", excel_csv(sep=sep))):
        path = tmp_path / f"{style}-{ord(sep)}.csv"
        path.write_text(text, encoding="utf-8", newline="")
        check(load_trace(path))


def test_columns_in_any_order_and_subset(tmp_path: Path) -> None:
    order = [6, 5, 4, 3, 2, 1, 0]
    header = [HEADER[i] for i in order] + ["Event Class", "TID"]
    rows = [[r[i] for i in order] + ["File System", "77"] for r in ROWS]
    path = tmp_path / "reordered.csv"
    path.write_text(procmon_csv(header, rows), encoding="utf-8-sig", newline="")
    trace = load_trace(path)
    check(trace)
    assert trace.events["tid"].to_list() == [77, 77, 77]
    no_detail = tmp_path / "no-detail.csv"
    no_detail.write_text(
        procmon_csv(HEADER[:6], [r[:6] for r in ROWS]), encoding="utf-8", newline=""
    )
    events = load_trace(no_detail).events
    assert events.height == 3
    assert events["detail"].null_count() == 3 and events["access_mask"].null_count() == 3


def test_event_class_column_wins_over_derivation(tmp_path: Path) -> None:
    header = HEADER + ["Event Class"]
    rows = [r + [c] for r, c in zip(ROWS, ["File System", "", "Profiling"], strict=True)]
    path = tmp_path / "classes.csv"
    path.write_text(procmon_csv(header, rows), encoding="utf-8", newline="")
    assert load_trace(path).events["event_class"].to_list() == [
        "File System",
        "File System",
        "Profiling",
    ]


def test_derived_event_classes() -> None:
    ops = [
        "RegOpenKey",
        "Process Start",
        "Thread Exit",
        "Load Image",
        "Process Profiling",
        "TCP Send",
        "UDP Receive",
        "CreateFile",
        "IRP_MJ_CLOSE",
    ]
    text = "".join(
        f"7:00:0{i}.0000000 AM\tx.exe\t1\t{op}\tp\tSUCCESS\t\n" for i, op in enumerate(ops)
    )
    assert load_text(text).events["event_class"].to_list() == [
        "Registry",
        "Process",
        "Process",
        "Process",
        "Profiling",
        "Network",
        "Network",
        "File System",
        "File System",
    ]


def test_gzip_and_zip_are_read_transparently(tmp_path: Path) -> None:
    data = procmon_csv().encode("utf-8-sig")
    gz = tmp_path / "trace.csv.gz"
    gz.write_bytes(gzip.compress(data))
    check(load_trace(gz))
    disguised = tmp_path / "trace.csv"  # gzip content behind a .csv name
    disguised.write_bytes(gzip.compress(data))
    assert detect(disguised) == "procmon-csv"
    archive = tmp_path / "logs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "capture of the failing build\r\n")
        z.writestr("Logfile.CSV", data)
    trace = load_trace(archive)
    check(trace)
    assert trace.source == archive


def test_zip_with_two_traces_reads_the_first_and_says_so(tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.csv", procmon_csv())
        z.writestr("b.csv", procmon_csv())
    trace = load_trace(archive)
    check(trace)
    assert trace.warnings[0] == (
        "two.zip: holds 2 traces; read a.csv only (not b.csv). Extract the others to read them."
    )


def test_header_only_gives_no_events(tmp_path: Path) -> None:
    path = tmp_path / "header-only.csv"
    path.write_text(procmon_csv(rows=[]), encoding="utf-8-sig", newline="")
    trace = load_trace(path)
    assert trace.events.height == 0
    assert dict(trace.events.schema) == EVENT_SCHEMA
    assert trace.warnings == ("header-only.csv: the export has a header but no events.",)


def test_blank_lines_between_rows_are_not_rows(tmp_path: Path) -> None:
    text = procmon_csv().replace("\r\n", "\r\n\r\n", 2)
    path = tmp_path / "gappy.csv"
    path.write_text(text, encoding="utf-8", newline="")
    check(load_trace(path))


def test_embedded_quotes_and_newlines(tmp_path: Path) -> None:
    rows = [r[:] for r in ROWS]
    rows[0][6] = 'Parent PID: 1, Command line: "C:\\x.exe" -a, Environment: \r;\tA=1\r;\tB="2"'
    rows[0][3] = "Process Start"
    path = tmp_path / "quotes.csv"
    path.write_text(procmon_csv(rows=rows), encoding="utf-8-sig", newline="")
    events = load_trace(path).events
    assert events["detail"][0] == rows[0][6]


def test_load_text_reads_a_whole_csv() -> None:
    trace = load_text(procmon_csv(), name="clip.csv")
    check(trace)
    assert trace.format == "procmon-csv"
    assert trace.source is None


def test_ties_keep_source_order() -> None:
    rows = [ROWS[2][:] for _ in range(4)]
    for i, r in enumerate(rows):
        r[1] = f"p{i}.exe"
    rows[0][0] = "7:19:38.0000000 AM"
    events = load_text(procmon_csv(rows=rows)).events
    assert events["row"].to_list() == [2, 3, 4, 1]
    assert events["time"][0] == datetime(2000, 1, 1, 7, 19, 37, 16000)


def test_string_paths_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "as-str.csv"
    path.write_text(procmon_csv(), encoding="utf-8", newline="")
    check(load_trace(str(path)))
    assert load_trace(str(path)).events.filter(pl.col("pid") == 11604).height == 1


def test_gbk_chinese(tmp_path: Path) -> None:
    rows = [r[:] for r in ROWS]
    rows[0][4] = "C:\\用户\\文档\\报告.docx"
    path = tmp_path / "chinese.csv"
    path.write_bytes(procmon_csv(rows=rows).encode("gbk"))
    trace = load_trace(path)
    assert trace.events["path"][0] == "C:\\用户\\文档\\报告.docx"
    assert any("GBK" in w for w in trace.warnings)
