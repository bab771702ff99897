"""Every Procmon CSV of the real corpus is read whole, and a few values are pinned.

The expected event count is computed independently with Python's csv module on the
decoded text (no polars, no traceaudit). First-row times were read off the files by eye
and are compared to the nanosecond.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from traceaudit.formats import FORMATS, detect, load_trace
from traceaudit.schema import EVENT_SCHEMA

# corpus file → Time of Day of its first data row as a full instant (7 fraction digits).
FIRST_ROW_TIME = {
    "procmon-csv/blerkk.csv": "2000-01-01 20:35:21.1680979",  # 8:35:21.1680979 PM
    "procmon-csv/createprocess-gcc-comma-decimal.csv": "2000-01-01 16:53:03.6001516",
    "procmon-csv/crysis-nanny-filtered.csv": "2000-01-01 18:11:37.4666062",
    "procmon-csv/excel-resaved.csv": "2000-01-01 00:47:57.9000000",  # 47:57.9, hour lost
    "procmon-csv/exe-to-pdf.csv": "2000-01-01 08:46:26.1826084",  # 8:46:26.1826084 AM
    "procmon-csv/lab-os4-russian.csv": "2000-01-01 14:54:10.5440845",
    "procmon-csv/lotl-detection-renames.csv": "2000-01-01 13:51:19.5685071",
    "procmon-csv/monitorapis.csv": "2000-01-01 15:58:46.6882889",  # 3:58:46.6882889 PM
    "procmon-csv/noriben-2013.csv": "2000-01-01 20:16:14.4778228",
    "procmon-csv/ohtorii-24h.csv": "2000-01-01 18:40:23.1038915",
    "procmon-csv/one-row.csv": "2000-01-01 23:21:25.2122397",
    "procmon-csv/phishing-tiny.csv": "2000-01-01 16:38:16.0891952",
    "procmon-csv/prsp0007-filtered.csv": "2000-01-01 15:42:22.8459553",
    "procmon-csv/roslyn-test-comma-decimal.csv": "2000-01-01 20:54:33.0613682",
    "procmon-csv/winxp-24h.csv": "2000-01-01 20:38:31.9788133",
    "procmon-csv/yara-with-tid.csv": "2000-01-01 18:49:41.5073054",  # 6:49:41.5073054 PM
    "procmon-csv/excel-japanese-tab-separated.zip": "2000-01-01 00:28:58.7000000",
    # The 27-column exports carry Date & Time, so these have the real day.
    "procmon-pairs/Tests32bit.csv.gz": "2020-07-11 16:33:14.3062614",
    "procmon-pairs/Tests64bit.csv.gz": "2020-07-12 01:18:10.7752429",
    "procmon-pairs/UTC32Filesystem.csv.gz": "2020-07-31 06:55:07.0236729",
    "procmon-pairs/UTC64Filesystem.csv.gz": "2020-07-31 07:19:37.0147934",
    "procmon-pairs/UTC64Process.csv.gz": "2020-07-31 07:37:18.2093997",
}
PAIRS = [name for name in FIRST_ROW_TIME if name.startswith("procmon-pairs/")]


def ns(text: str) -> int:
    """``YYYY-MM-DD HH:MM:SS.fffffff`` → nanoseconds since the epoch, exactly."""
    whole, fraction = text.split(".")
    seconds = datetime.fromisoformat(whole) - datetime(1970, 1, 1)
    return (seconds.days * 86_400 + seconds.seconds) * 1_000_000_000 + int(fraction) * 100


def raw_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and data rows via the csv module: the independent oracle."""
    if path.suffix == ".gz":
        data = gzip.decompress(path.read_bytes())
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            data = archive.read(archive.infolist()[0])
    else:
        data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp932", errors="replace")
    delimiter = "\t" if "\t" in text.split("\n", 1)[0] else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    return rows[0], [row for row in rows[1:] if row]


def first_time(events: pl.DataFrame) -> int:
    return events.filter(pl.col("row") == 1)["time"].cast(pl.Int64).item()


@pytest.mark.parametrize("name", list(FIRST_ROW_TIME))
def test_corpus_csv_is_read_whole(corpus: Path, name: str) -> None:
    path = corpus / name
    header, rows = raw_rows(path)
    trace = load_trace(path)
    events = trace.events
    assert trace.format == "procmon-csv"
    assert detect(path) == "procmon-csv"
    assert events.height == len(rows)
    assert trace.skipped == {}
    assert dict(events.schema) == EVENT_SCHEMA
    assert first_time(events) == ns(FIRST_ROW_TIME[name])
    assert sorted(events["row"].to_list()) == list(range(1, len(rows) + 1))
    assert events.select(pl.col("time").is_sorted()).item()
    # Raw strings survive verbatim (row order = source order).
    by_row = events.sort("row")
    column = {name: index for index, name in enumerate(header)}
    assert by_row["operation"].to_list() == [r[column["Operation"]] for r in rows]
    assert by_row["pid"].to_list() == [int(r[column["PID"]]) for r in rows]
    assert by_row["detail"].to_list() == [r[column["Detail"]] for r in rows]


def test_renames_carry_their_target(corpus: Path) -> None:
    path = corpus / "procmon-csv" / "lotl-detection-renames.csv"
    _, rows = raw_rows(path)
    renames = [r for r in rows if r[3] == "SetRenameInformationFile"]
    events = load_trace(path).events.filter(pl.col("operation") == "SetRenameInformationFile")
    assert events.height == len(renames) == 20
    first = events.sort("row").row(0, named=True)
    assert first["path"] == r"C:\ransomware_test\doc1.txt"
    assert first["rename_target"] == r"C:\ransomware_test\doc1.txt.encrypted"
    assert first["replace_if_exists"] is True
    expected = [r[6].split("FileName: ", 1)[1] for r in renames]
    assert events.sort("row")["rename_target"].to_list() == expected


def test_tid_column_is_read(corpus: Path) -> None:
    path = corpus / "procmon-csv" / "yara-with-tid.csv"
    header, rows = raw_rows(path)
    assert header[-1] == "TID"
    events = load_trace(path).events.sort("row")
    assert events["tid"].head(3).to_list() == [4372, 4372, 4972]
    assert events["tid"].to_list() == [int(r[7]) for r in rows]
    assert events["event_class"][0] == "Process"  # Process Start, derived from the name


@pytest.mark.parametrize("name", PAIRS)
def test_pairs_take_the_day_from_date_and_time(corpus: Path, name: str) -> None:
    """Every event's instant, cut to the second, is its own Date & Time value."""
    path = corpus / name
    header, rows = raw_rows(path)
    column = {n: i for i, n in enumerate(header)}
    trace = load_trace(path)
    assert not any("placeholder" in w for w in trace.warnings)
    events = trace.events.sort("row")
    seconds = events["time"].dt.truncate("1s").to_list()
    for row, second in list(zip(rows, seconds, strict=True))[::7]:
        assert second == datetime.strptime(row[column["Date & Time"]], "%m/%d/%Y %I:%M:%S %p")
    durations = events["duration"].to_list()
    for row, duration in list(zip(rows, durations, strict=True))[::7]:
        text = row[column["Duration"]]
        if text:
            whole, fraction = text.split(".")
            assert duration.total_seconds() * 1e9 == pytest.approx(
                int(whole) * 1e9 + int(fraction.ljust(9, "0")), abs=1000
            )
    assert events["event_class"].to_list() == [r[column["Event Class"]] for r in rows]
    assert events["tid"].to_list() == [int(r[column["TID"]]) for r in rows]


def test_pairs_columns_are_found_in_either_order(corpus: Path) -> None:
    a = load_trace(corpus / "procmon-pairs" / "Tests32bit.csv.gz")
    b = load_trace(corpus / "procmon-pairs" / "Tests64bit.csv.gz")
    assert a.events["time"].dt.date().min() == date(2020, 7, 11)
    assert b.events["time"].dt.date().min() == date(2020, 7, 12)
    assert a.events["tid"].null_count() == b.events["tid"].null_count() == 0


def test_excel_japanese_zip(corpus: Path) -> None:
    trace = load_trace(corpus / "procmon-csv" / "excel-japanese-tab-separated.zip")
    events = trace.events
    assert events.height == 178_537
    assert trace.time_precision_lost
    assert any("not UTF-8; read as cp932" in w for w in trace.warnings)
    assert any("mm:ss.f" in w for w in trace.warnings)
    renames = events.filter(pl.col("rename_target").is_not_null())
    assert renames.height == 32
    ex = renames.filter(pl.col("operation") == "SetRenameInformationEx")
    assert ex.height == 4 and ex["replace_if_exists"].all()
    start = events.filter(pl.col("operation") == "Process Start")["detail"][0]
    assert "\r;\tALLUSERSPROFILE=C:\\ProgramData\r;\t" in start  # CR-only breaks kept
    assert events["process"].str.contains("[\u3040-\u30ff\u4e00-\u9fff]").sum() == 0
    assert events["path"].str.contains("[\u3040-\u30ff\u4e00-\u9fff]").any()


def test_excel_resave_warns_that_the_hour_is_lost(corpus: Path) -> None:
    trace = load_trace(corpus / "procmon-csv" / "excel-resaved.csv")
    assert trace.time_precision_lost
    assert any("ordering" in w or "order" in w for w in trace.warnings)


def test_createfile_details_in_a_real_export(corpus: Path) -> None:
    events = load_trace(corpus / "procmon-pairs" / "Tests64bit.csv.gz").events
    creates = events.filter(pl.col("operation") == "CreateFile")
    assert creates["access_mask"].null_count() == 0
    assert creates["share_mode"].null_count() == 0
    assert creates["disposition"].null_count() == 0
    opened = creates.filter(pl.col("result") == "SUCCESS")
    assert set(opened["open_result"].unique()) <= {"Opened", "Created", "Overwritten", "Superseded"}
    io_rows = events.filter(pl.col("operation").is_in(["ReadFile", "WriteFile"]))
    assert io_rows["offset"].null_count() == 0 and io_rows["length"].null_count() == 0


def test_formats_table_lists_the_csv_family() -> None:
    names = [f.name for f in FORMATS]
    assert {"procmon-csv", "procmon-clipboard"} <= set(names)
    assert all(f.description for f in FORMATS)
