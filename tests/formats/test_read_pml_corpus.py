"""The PML reader against Procmon itself: the corpus's golden pairs and every real log.

``shared/corpus/procmon-pairs`` holds captures saved by Procmon both as PML and as its own
27-column CSV (times in UTC). Each pair must agree event by event, in order. The CSV is
parsed here with the csv module, independently of traceaudit's CSV reader. Other corpus
logs are checked against procmon-parser (a test-only dependency). Skipped when the corpus
is absent.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from locations import CORPUS
from traceaudit.formats.pml.reader import read_pml, read_pml_processes

CORPUS = CORPUS
PAIRS = ("Tests64bit", "Tests32bit", "UTC64Filesystem", "UTC32Filesystem", "UTC64Process")
AGREEMENT = 0.999

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


def csv_rows(path: Path) -> list[dict[str, str]]:
    """Procmon's CSV export (UTF-8 with BOM, possibly gzip-compressed) as dicts."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def csv_time_ns(date: str, time_of_day: str) -> int:
    """``7/12/2020`` + ``1:18:10.7752429 AM`` → nanoseconds since 1970 (100 ns kept)."""
    clock, meridiem = time_of_day.split(" ")
    hms, fraction = clock.split(".")
    hour, minute, second = (int(x) for x in hms.split(":"))
    hour = hour % 12 + (12 if meridiem == "PM" else 0)
    month, day, year = (int(x) for x in date.split(" ")[0].split("/"))
    seconds = datetime(year, month, day, hour, minute, second) - datetime(1970, 1, 1)
    return int(seconds.total_seconds()) * 10**9 + int(fraction) * 100


def duration_text(nanoseconds: int | None) -> str:
    """Procmon's Duration column: seconds with 7 decimals, empty when pending."""
    if nanoseconds is None:
        return ""
    ticks = nanoseconds // 100
    return f"{ticks // 10**7}.{ticks % 10**7:07d}"


def share(matches: list[bool]) -> float:
    return sum(matches) / len(matches)


@pytest.fixture(scope="module", params=PAIRS)
def pair(request) -> tuple[str, list[dict], list[dict[str, str]]]:
    name = request.param
    trace = read_pml(CORPUS / "procmon-pairs" / f"{name}.pml.gz")
    assert trace.warnings == ()
    frame = trace.events.sort("row")
    events = frame.with_columns(
        time_ns=pl.col("time").cast(pl.Int64), duration_ns=pl.col("duration").cast(pl.Int64)
    ).to_dicts()
    return name, events, csv_rows(CORPUS / "procmon-pairs" / f"{name}.csv.gz")


def test_pairs_have_the_same_events_in_the_same_order(pair):
    name, events, rows = pair
    assert len(events) == len(rows), name
    assert [e["row"] for e in events] == list(range(1, len(rows) + 1))
    keys = [
        (str(e["pid"]), e["operation"], e["path"], e["result"])
        == (r["PID"], r["Operation"], r["Path"], r["Result"])
        for e, r in zip(events, rows, strict=True)
    ]
    assert share(keys) >= AGREEMENT, name


def test_pairs_agree_on_time_thread_duration_class_and_process(pair):
    name, events, rows = pair
    for column, field, text in [
        ("TID", "tid", str),
        ("Event Class", "event_class", str),
        ("Process Name", "process", str),
        ("Duration", "duration_ns", duration_text),
    ]:
        same = [text(e[field]) == r[column] for e, r in zip(events, rows, strict=True)]
        assert share(same) >= AGREEMENT, (name, column)
    times = [
        e["time_ns"] == csv_time_ns(r["Date & Time"], r["Time of Day"])
        for e, r in zip(events, rows, strict=True)
    ]
    assert share(times) >= AGREEMENT, name


RENDERED = {
    "CreateFile",
    "ReadFile",
    "WriteFile",
    "SetDispositionInformationFile",
    "LockFile",
    "UnlockFileSingle",
    "SetEndOfFileInformationFile",
    "SetAllocationInformationFile",
    "CloseFile",
    "Load Image",
    "Thread Create",
    "Thread Exit",
    "Process Exit",
    "Process Create",
    "Process Start",
    "TCP Send",
    "TCP Receive",
    "UDP Send",
    "UDP Receive",
}


def test_pairs_agree_on_the_detail_text(pair):
    """Detail as Procmon renders it; the only difference allowed is the account name
    of a non-well-known impersonation SID, which the log does not hold."""
    name, events, rows = pair
    checked = [(e, r) for e, r in zip(events, rows, strict=True) if r["Operation"] in RENDERED]
    assert checked, name
    differ = [(e["detail"], r["Detail"]) for e, r in checked if e["detail"] != r["Detail"]]
    for ours, procmon in differ:
        assert ours.split(", Impersonating: S-1-5-")[0] == procmon.split(", Impersonating: ")[0]
    assert len(differ) / len(checked) < 0.01, name


def test_pair_typed_columns_follow_the_detail(pair):
    name, events, rows = pair
    creates = [(e, r) for e, r in zip(events, rows, strict=True) if r["Operation"] == "CreateFile"]
    for event, row in creates:
        assert event["disposition"] == row["Detail"].split("Disposition: ")[1].split(",")[0]
        assert ("OpenResult: " in row["Detail"]) == (event["open_result"] is not None)
        assert event["access_mask"] is not None and event["share_mode"] is not None
    writes = [(e, r) for e, r in zip(events, rows, strict=True) if r["Operation"] == "WriteFile"]
    for event, row in writes:
        offset = row["Detail"].split("Offset: ")[1].split(", Length")[0].replace(",", "")
        assert event["offset"] == int(offset)


def test_version_7_log_matches_procmons_csv_of_it():
    events = read_pml(CORPUS / "procmon-pml" / "noriben-2013-v7.pml").events.sort("row")
    rows = csv_rows(CORPUS / "procmon-csv" / "noriben-2013.csv")
    assert events.height == len(rows) == 623
    keys = [
        (str(e["pid"]), e["operation"], e["path"], e["result"])
        == (r["PID"], r["Operation"], r["Path"], r["Result"])
        for e, r in zip(events.to_dicts(), rows, strict=True)
    ]
    assert all(keys)


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (CORPUS / "procmon-pml").glob("*.pml")) if CORPUS.is_dir() else [],
)
def test_every_corpus_log_reads_whole(name):
    procmon_parser = pytest.importorskip("procmon_parser")
    path = CORPUS / "procmon-pml" / name
    trace = read_pml(path)
    assert trace.warnings == ()
    assert trace.events["pid"].null_count() == 0
    try:
        with path.open("rb") as handle:
            oracle = procmon_parser.ProcmonLogsReader(handle, should_get_stacktrace=False)
            expected = len(oracle)
            oracle_keys = [(e.process.pid, e.path) for e in oracle]
    except NotImplementedError:  # procmon-parser refuses version 7
        pytest.skip(f"procmon-parser cannot read {name}")
    assert trace.events.height == expected
    ours = trace.events.sort("row").select("pid", "path").rows()
    assert share([a == b for a, b in zip(ours, oracle_keys, strict=True)]) >= AGREEMENT


def test_renames_have_their_targets():
    events = read_pml(CORPUS / "procmon-pml" / "file-dump-renames.pml").events
    renames = events.filter(events["operation"] == "SetRenameInformationFile")
    assert renames.height == 4
    for row in renames.iter_rows(named=True):
        assert row["rename_target"] and row["rename_target"] != row["path"]
        assert row["rename_target"][1:3] == ":\\"
        assert row["replace_if_exists"] is False
        assert row["detail"] == f"ReplaceIfExists: False, FileName: {row['rename_target']}"


def test_truncated_copy_reads_up_to_the_last_intact_event(tmp_path):
    whole = tmp_path / "Tests64bit.pml"
    with (
        gzip.open(CORPUS / "procmon-pairs" / "Tests64bit.pml.gz") as source,
        whole.open("wb") as target,
    ):
        shutil.copyfileobj(source, target)
    complete = read_pml(whole).events.sort("row")
    cut = tmp_path / "cut.pml"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 5])
    trace = read_pml(cut)
    events = trace.events.sort("row")
    kept = events.height
    assert 0 < kept < complete.height
    assert f"{complete.height - kept} of the {complete.height} events" in trace.warnings[0]
    columns = ["row", "time", "tid", "operation", "path", "result", "detail"]
    assert events.select(columns).equals(complete.head(kept).select(columns))


def test_process_table_of_a_real_log():
    table = read_pml_processes(CORPUS / "procmon-pairs" / "UTC64Process.pml.gz")
    rows = csv_rows(CORPUS / "procmon-pairs" / "UTC64Process.csv.gz")
    by_pid = {row["PID"]: row for row in rows}
    for process in table.iter_rows(named=True):
        row = by_pid.get(str(process["pid"]))
        if row is not None and row["Process Name"] == process["name"]:
            assert process["image_path"] == row["Image Path"]
            assert process["user"] == row["User"]
            assert str(process["parent_pid"]) == row["Parent PID"]
