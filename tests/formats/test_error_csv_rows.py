"""Damaged CSV rows are set aside, counted and named; every sound row around them reads.

Fixtures are the bundled ``samples/uv-extract-rename.csv`` (287 rows, every field quoted,
CRLF, header on line 1, so row N is line N + 1) with one kind of damage made to a copy in
tmp_path, and corpus files damaged the same way (Excel's quoted-where-needed re-save,
a semicolon variant, Excel's tab-separated cp932 re-save with CR-only breaks inside
quoted fields). ``test_error_*`` tests read in strict mode and assert the whole message.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import traceaudit
from locations import SAMPLES
from traceaudit.cli import main
from traceaudit.errors import DamagedRowError, TraceauditError
from traceaudit.formats import load_text, load_trace
from traceaudit.formats.procmon_text import csv_read as procmon_csv

SAMPLE = SAMPLES / "uv-extract-rename.csv"
PASTED = SAMPLES / "uv-issue-pasted.tsv"
ROWS = 287
STRICT = "Fix or delete the row, or read without strict mode to skip damaged rows."


def sample_lines() -> list[bytes]:
    """The sample's physical lines without their CRLF (the last one is empty)."""
    return SAMPLE.read_bytes().split(b"\r\n")


def damaged(tmp_path: Path, name: str, edit: Callable[[list[bytes]], None]) -> Path:
    """A copy of the sample named after its defect, with ``edit`` applied to its lines."""
    lines = sample_lines()
    edit(lines)
    path = tmp_path / name
    path.write_bytes(b"\r\n".join(lines))
    return path


def replace_in_line(number: int, old: bytes, new: bytes) -> Callable[[list[bytes]], None]:
    def edit(lines: list[bytes]) -> None:
        assert old in lines[number - 1]
        lines[number - 1] = lines[number - 1].replace(old, new, 1)

    return edit


def warning(name: str, reason: str, line: int) -> str:
    return (
        f"{name}: skipped 1 damaged row (1 {reason}); first at line {line}. "
        "Use strict mode to stop at the first one."
    )


def check_one_row_lost(path: Path, reason: str, line: int = 12) -> traceaudit.Trace:
    """Every row but the one on ``line`` is read, the gap shows in ``row``, the damage is
    counted, named and warned about, and the analysis still finds the 5 conflicts."""
    trace = load_trace(path)
    row = line - 1
    assert trace.events.height == ROWS - 1
    assert trace.skipped == {reason: 1}
    assert trace.skipped_rows == (f"line {line}",)
    assert warning(path.name, reason, line) in trace.warnings
    rows = trace.events["row"].sort().to_list()
    assert rows == [r for r in range(1, ROWS + 1) if r != row]
    report = traceaudit.analyze(path)
    assert report.conflicts.height == 5
    return trace


# --------------------------------------------------------------- one kind of damage each


def test_closing_quote_replaced(tmp_path: Path) -> None:
    path = damaged(tmp_path, "closing-quote.csv", replace_in_line(12, b'Svc.log",', b"Svc.log',"))
    check_one_row_lost(path, "unbalanced quotes")


def test_opening_quote_deleted(tmp_path: Path) -> None:
    path = damaged(
        tmp_path, "opening-quote.csv", replace_in_line(12, b',"WriteFile"', b',WriteFile"')
    )
    check_one_row_lost(path, "unbalanced quotes")


def test_stray_quote_inserted_in_a_field(tmp_path: Path) -> None:
    path = damaged(tmp_path, "stray-quote.csv", replace_in_line(12, b"OneDrive", b'One"Drive'))
    check_one_row_lost(path, "unbalanced quotes")


def test_row_cut_inside_a_quoted_field_then_the_next_row(tmp_path: Path) -> None:
    def cut(lines: list[bytes]) -> None:
        lines[11] = lines[11][: lines[11].index(b"Offset: 65,5") + 12]

    path = damaged(tmp_path, "cut-in-field.csv", cut)
    trace = check_one_row_lost(path, "unbalanced quotes")
    # The row after the cut one is whole.
    sound = load_trace(SAMPLE).events.filter(pl.col("row") == 12)
    assert trace.events.filter(pl.col("row") == 12).equals(sound)


def test_row_cut_at_a_field_boundary(tmp_path: Path) -> None:
    def cut(lines: list[bytes]) -> None:
        lines[11] = lines[11][: lines[11].index(b',"Offset')]

    check_one_row_lost(damaged(tmp_path, "cut-at-comma.csv", cut), "wrong field count")


def test_nul_run_over_part_of_a_row_past_the_sniffed_head(tmp_path: Path) -> None:
    # Line 272 lies past the first 64 KB; the zeroed run wipes quotes and commas, as a
    # zero-filled disk block does.
    run = b'","SUCCESS","'
    path = damaged(tmp_path, "zeroed.csv", replace_in_line(272, run, b"\x00" * len(run)))
    check_one_row_lost(path, "NUL bytes", line=272)


@pytest.mark.parametrize("line", [12, 272])
def test_binary_junk_inside_a_quoted_field(tmp_path: Path, line: int) -> None:
    # Junk with bytes that are not UTF-8 is found anywhere in the file (the read falls
    # back to decoding it); the row goes, its neighbours stay.
    lines = sample_lines()
    path_field = lines[line - 1].split(b'","')[4]
    junk = path_field[:5] + b"\x00\x01\xff\xfe" + path_field[5:]
    path = damaged(tmp_path, "junk.csv", replace_in_line(line, path_field, junk))
    trace = check_one_row_lost(path, "NUL bytes", line=line)
    assert trace.warnings[0] == "junk.csv: damaged UTF-8; 2 undecodable bytes replaced with U+FFFD."


def test_duplicated_row_is_read_twice(tmp_path: Path) -> None:
    # A copy of a whole row is well-formed: nothing tells it from an event that happened
    # twice, so it is read (as row 12) and nothing is skipped.
    path = damaged(tmp_path, "duplicate.csv", lambda lines: lines.insert(12, lines[11]))
    trace = load_trace(path)
    assert trace.events.height == ROWS + 1
    assert trace.skipped == {}
    twins = trace.events.filter(pl.col("row").is_in([11, 12])).drop("row")
    assert twins.n_unique() == 1


def test_two_rows_joined_on_one_line(tmp_path: Path) -> None:
    def join(lines: list[bytes]) -> None:
        lines[11:13] = [lines[11] + lines[12]]

    path = damaged(tmp_path, "joined.csv", join)
    trace = load_trace(path)
    # Both rows are in the damaged one; the rows after it move up one.
    assert trace.events.height == ROWS - 2
    assert trace.skipped == {"wrong field count": 1}
    assert trace.skipped_rows == ("line 12",)
    assert warning("joined.csv", "wrong field count", 12) in trace.warnings
    assert 11 not in trace.events["row"].to_list()
    assert traceaudit.analyze(path).conflicts.height == 5


def test_several_damaged_rows_are_counted_by_reason(tmp_path: Path) -> None:
    def edit(lines: list[bytes]) -> None:
        lines[11] = lines[11].replace(b"OneDrive", b'One"Drive', 1)  # line 12
        lines[19] = lines[19][:40]  # line 20: cut inside the Process Name
        lines[29] = lines[29][: lines[29].index(b',"')]  # line 30: one field
        lines[39] = lines[39].replace(b'"11:27:', b'"99:27:', 1)  # line 40: bad time
        lines[49] = lines[49].replace(b'"', b'"\x00', 1)  # line 50: NUL bytes

    trace = load_trace(damaged(tmp_path, "five.csv", edit))
    assert trace.events.height == ROWS - 5
    assert trace.skipped == {
        "unbalanced quotes": 2,
        "wrong field count": 1,
        "unreadable time": 1,
        "NUL bytes": 1,
    }
    assert trace.skipped_rows == ("line 12", "line 20", "line 30", "line 40", "line 50")
    assert trace.warnings[-1] == (
        "five.csv: skipped 5 damaged rows (2 unbalanced quotes, 1 wrong field count, "
        "1 unreadable time, 1 NUL bytes); first at line 12, line 20, line 30, line 40, "
        "line 50. Use strict mode to stop at the first one."
    )


def test_quoted_line_breaks_survive_next_to_damage(tmp_path: Path) -> None:
    # Row 2 holds an environment block broken with CRLF inside its quotes (lines 3-5):
    # a quoted field, not damage, even while line 7 has a stray quote.
    header = '"Time of Day","Process Name","PID","Operation","Path","Result","Detail"'

    def row(second: int, detail: str = "") -> str:
        return (
            f'"7:19:{second:02d}.0147934 AM","a.exe","12","CloseFile","C:\\x","SUCCESS","{detail}"'
        )

    lines = [
        header,
        row(1),
        row(2, "Env: \r\n;\ta=1\r\n;\tb=2"),
        row(3),
        row(4).replace("a.exe", 'a"exe'),
    ]
    lines += [row(5)]
    path = tmp_path / "env-and-stray.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8-sig"))
    trace = load_trace(path)
    assert trace.events["row"].to_list() == [1, 2, 3, 5]
    assert trace.events["detail"][1] == "Env: \r\n;\ta=1\r\n;\tb=2"
    assert trace.skipped_rows == ("line 7",)


def test_cli_reads_a_damaged_file_and_strict_refuses_it(tmp_path: Path) -> None:
    path = damaged(tmp_path, "closing-quote.csv", replace_in_line(12, b'Svc.log",', b"Svc.log',"))
    result = CliRunner().invoke(main, ["analyze", str(path)], catch_exceptions=False)
    assert result.exit_code == 0
    assert "5 conflicts on 1 path: 5 blocked by another process." in result.output
    assert warning("closing-quote.csv", "unbalanced quotes", 12) in result.output
    strict = CliRunner().invoke(main, ["analyze", str(path), "--strict"], catch_exceptions=False)
    assert strict.exit_code == 3
    assert "could not parse" not in strict.output and "Traceback" not in strict.output


# ------------------------------------------------------------------- strict mode messages


def strict_message(path: Path) -> str:
    with pytest.raises(DamagedRowError) as error:
        load_trace(path, strict=True)
    return str(error.value)


def test_error_unbalanced_quotes_in_strict_mode(tmp_path: Path) -> None:
    path = damaged(tmp_path, "closing-quote.csv", replace_in_line(12, b'Svc.log",', b"Svc.log',"))
    assert strict_message(path) == (
        "closing-quote.csv: line 12: unbalanced quotes (a quote missing, replaced or stray, "
        f"or the line cut inside a quoted field?). {STRICT}"
    )


def test_error_row_cut_inside_a_quoted_field_in_strict_mode(tmp_path: Path) -> None:
    def cut(lines: list[bytes]) -> None:
        lines[11] = lines[11][: lines[11].index(b"Offset: 65,5") + 12]

    assert strict_message(damaged(tmp_path, "cut-in-field.csv", cut)) == (
        "cut-in-field.csv: line 12: unbalanced quotes (a quote missing, replaced or stray, "
        f"or the line cut inside a quoted field?). {STRICT}"
    )


def test_error_misplaced_quotes_in_strict_mode(tmp_path: Path) -> None:
    # Text after a closing quote: the quotes pair up, but the row cannot be read.
    path = damaged(tmp_path, "after-quote.csv", replace_in_line(12, b'"SUCCESS",', b'"SUCCESS"X,'))
    assert check_one_row_lost(path, "misplaced quotes")
    assert strict_message(path) == (
        "after-quote.csv: line 12: misplaced quotes (text after a closing quote, or a quote "
        f"inside a field that is not doubled?). {STRICT}"
    )


def test_bisection_finds_rows_the_line_check_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The last resort behind the per-line check: polars itself, on halves of the file.
    monkeypatch.setattr(procmon_csv._Table, "_misquoted_lines", lambda *args: [])
    path = damaged(tmp_path, "after-quote.csv", replace_in_line(12, b'"SUCCESS",', b'"SUCCESS"X,'))
    check_one_row_lost(path, "misplaced quotes")


def test_error_quotes_beyond_repair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procmon_csv._Table, "_misquoted_lines", lambda *args: [])
    monkeypatch.setattr(procmon_csv._Table, "_misquoted_records", lambda *args: [])
    path = damaged(tmp_path, "after-quote.csv", replace_in_line(12, b'"SUCCESS",', b'"SUCCESS"X,'))
    with pytest.raises(TraceauditError) as error:
        load_trace(path)
    assert str(error.value) == (
        "after-quote.csv: cannot read the CSV: its quotes are damaged in a way that cannot be "
        "set aside row by row. Export it again from Process Monitor with File > Save > CSV."
    )


def test_error_nul_bytes_in_strict_mode(tmp_path: Path) -> None:
    run = b'","SUCCESS","'
    path = damaged(tmp_path, "zeroed.csv", replace_in_line(272, run, b"\x00" * len(run)))
    assert strict_message(path) == (
        "zeroed.csv: line 272: NUL bytes in the row (binary junk: a damaged or overwritten "
        f"file?). {STRICT}"
    )


def test_error_joined_rows_in_strict_mode(tmp_path: Path) -> None:
    def join(lines: list[bytes]) -> None:
        lines[11:13] = [lines[11] + lines[12]]

    assert strict_message(damaged(tmp_path, "joined.csv", join)) == (
        "joined.csv: line 12: more fields than the header's 10 columns (a stray delimiter or "
        f"quote, or a cut line?). {STRICT}"
    )


def test_error_row_cut_at_a_field_boundary_in_strict_mode(tmp_path: Path) -> None:
    def cut(lines: list[bytes]) -> None:
        lines[11] = lines[11][: lines[11].index(b',"Offset')]

    assert strict_message(damaged(tmp_path, "cut-at-comma.csv", cut)) == (
        "cut-at-comma.csv: line 12: fewer fields than the header's 10 columns (a stray "
        f"delimiter or quote, or a cut line?). {STRICT}"
    )


def test_error_first_data_row_too_long_in_strict_mode(tmp_path: Path) -> None:
    # polars sizes its columns on the first row; a long first row must not sink the file.
    path = damaged(
        tmp_path, "long-first.csv", lambda lines: lines.__setitem__(1, lines[1] + b',"a","b"')
    )
    trace = load_trace(path)
    assert trace.events.height == ROWS - 1
    assert trace.skipped_rows == ("line 2",)
    assert strict_message(path) == (
        "long-first.csv: line 2: more fields than the header's 10 columns (a stray delimiter "
        f"or quote, or a cut line?). {STRICT}"
    )


# ------------------------------------------------------------------------- other dialects


def excel_style(text: str, delimiter: str) -> str:
    """``text`` (a CSV) written back the way Excel saves: quoted only where needed."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_excel_dialects_lose_only_the_damaged_row(tmp_path: Path, delimiter: str) -> None:
    text = excel_style(SAMPLE.read_text(encoding="utf-8-sig"), delimiter)
    lines = text.split("\r\n")
    sound = tmp_path / "excel.csv"
    sound.write_text(text, encoding="utf-8", newline="")
    assert load_trace(sound).events.height == ROWS
    # A stray quote opening an unquoted field would swallow the line breaks after it.
    lines[11] = lines[11].replace(f"{delimiter}WriteFile", f'{delimiter}"WriteFile', 1)
    path = tmp_path / "excel-stray-quote.csv"
    path.write_text("\r\n".join(lines), encoding="utf-8", newline="")
    check_one_row_lost(path, "unbalanced quotes")


def test_corpus_excel_resave_loses_only_the_damaged_row(corpus: Path, tmp_path: Path) -> None:
    lines = (corpus / "procmon-csv" / "excel-resaved.csv").read_bytes().split(b"\n")
    assert lines[100].count(b",") == 7 and lines[100].count(b'"') == 2
    # Line 101: the closing quote of its Detail is cut off.
    lines[100] = lines[100][:-1]
    path = tmp_path / "excel-resaved-cut.csv"
    path.write_bytes(b"\n".join(lines))
    trace = load_trace(path)
    assert trace.events.height == 3640 - 1
    assert trace.skipped == {"unbalanced quotes": 1}
    assert trace.skipped_rows == ("line 101",)
    assert 100 not in trace.events["row"].to_list()


def test_corpus_tab_separated_cp932_with_cr_breaks(corpus: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(corpus / "procmon-csv" / "excel-japanese-tab-separated.zip") as archive:
        data = archive.read(archive.infolist()[0])
    lines = data.split(b"\r\n")
    assert b"\r" in lines[1]  # row 1: an environment block with CR-only breaks, quoted
    # Row 1000 is cut after its PID and row 2000 gains a stray quote.
    lines[1000] = b"\t".join(lines[1000].split(b"\t")[:3])
    lines[2000] = lines[2000].replace(b"\t", b'\t"', 1)
    path = tmp_path / "japanese-damaged.txt"
    path.write_bytes(b"\r\n".join(lines))

    def editor_line(index: int) -> int:
        # The line an editor shows: CRLF, CR and LF each end one.
        return len(re.split(rb"\r\n|\r|\n", b"\r\n".join(lines[:index]))) + 1

    trace = load_trace(path)
    assert trace.events.height == 178537 - 2
    assert trace.skipped == {"wrong field count": 1, "unbalanced quotes": 1}
    assert trace.skipped_rows == (f"line {editor_line(1000)}", f"line {editor_line(2000)}")
    assert editor_line(1000) > 1001  # the CR breaks of row 1 are counted
    first = trace.events.filter(pl.col("row") == 1)
    assert first["operation"].item() == "Process Start"
    assert first["detail"].item().count("\r") == lines[1].count(b"\r")


# ------------------------------------------------------------------- pasted clipboard rows


def test_pasted_row_with_nul_bytes_is_skipped() -> None:
    lines = PASTED.read_text(encoding="utf-8").split("\n")
    lines[3] = lines[3].replace("uv.exe", "uv\x00\x00.exe", 1)
    trace = load_text("\n".join(lines))
    assert trace.events.height == 41
    assert trace.skipped == {"NUL bytes": 1}
    assert trace.skipped_rows == ("line 4",)
    with pytest.raises(DamagedRowError) as error:
        load_text("\n".join(lines), strict=True)
    assert str(error.value) == (
        "<pasted>: line 4: NUL bytes in the row (binary junk: a damaged or overwritten "
        f"file?). {STRICT}"
    )


def test_pasted_row_broken_in_two_loses_only_itself() -> None:
    lines = PASTED.read_text(encoding="utf-8").split("\n")
    lines[3:4] = [lines[3][:40], lines[3][40:]]
    trace = load_text("\n".join(lines))
    assert trace.events.height == 41
    assert trace.skipped == {"wrong field count": 2}
    assert trace.skipped_rows == ("line 4", "line 5")


# ------------------------------------------------------------------------- seeded mutants


def mutate_one_line(data: bytes, rng: random.Random) -> tuple[str, int, bytes]:
    """One line of ``data`` damaged: a byte flipped (its line break included), a quote
    deleted or inserted, the line cut short, or the line duplicated. Returns the kind,
    the 1-based line and the mutant."""
    starts = [0] + [m.end() for m in re.finditer(rb"\n", data)][:-1]
    number = rng.randrange(2, len(starts) + 1)  # never the header
    start = starts[number - 1]
    end = data.index(b"\n", start) + 1
    line = data[start:end]
    body = line.rstrip(b"\r\n")
    kind = rng.choice(["flip", "delete quote", "insert quote", "cut", "duplicate"])
    if kind == "flip":
        at = rng.randrange(len(line))
        new = line[:at] + bytes([rng.randrange(256)]) + line[at + 1 :]
    elif kind == "delete quote" and b'"' in body:
        at = rng.choice([i for i, c in enumerate(body) if c == ord('"')])
        new = line[:at] + line[at + 1 :]
    elif kind in ("delete quote", "insert quote"):
        at = rng.randrange(len(body) + 1)
        new = line[:at] + b'"' + line[at:]
    elif kind == "cut":
        new = body[: rng.randrange(len(body))] + line[len(body) :]
    else:
        new = line + line
    return kind, number, data[:start] + new + data[end:]


def event_keys(events: pl.DataFrame) -> dict[tuple, int]:
    keys = events.select("time", "pid", "operation", "path", "result", "detail")
    return {row[:-1]: row[-1] for row in keys.group_by(keys.columns).len().iter_rows()}


@pytest.mark.parametrize(("seed_file", "suffix"), [(SAMPLE, ".csv"), (PASTED, ".tsv")])
def test_mutants_of_one_line_lose_at_most_that_line_and_its_neighbour(
    tmp_path: Path, seed_file: Path, suffix: str
) -> None:
    data = seed_file.read_bytes()
    sound = load_trace(seed_file)
    before = event_keys(sound.events)
    by_row = sound.events.sort("row")
    rng = random.Random(20240715)
    read = 0
    for index in range(100):
        kind, number, mutant = mutate_one_line(data, rng)
        path = tmp_path / f"mutant-{index}{suffix}"
        path.write_bytes(mutant)
        try:
            trace = load_trace(path)
        except TraceauditError:
            continue  # refused with a message (e.g. the header's first line flipped)
        read += 1
        # Rows are lines here (header on line 1 for the CSV, none for pasted rows).
        row = number - 1 if suffix == ".csv" else number
        allowed = {
            key
            for r in (row, row + 1)
            if 1 <= r <= by_row.height
            for key in event_keys(by_row.slice(r - 1, 1))
        }
        after = event_keys(trace.events)
        lost = [k for k, n in before.items() if after.get(k, 0) < n and k not in allowed]
        assert not lost, f"mutant {index} ({kind} on line {number}) lost sound rows"
        if trace.skipped_rows:
            assert trace.skipped_rows[0] in (f"line {number}", f"line {number + 1}"), (
                f"mutant {index} ({kind} on line {number}): {trace.skipped_rows}"
            )
    assert read >= 95


def test_read_trace_raises_only_traceaudit_errors_on_byte_mutants(tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    rng = random.Random(7)
    for index in range(100):
        out = bytearray(data)
        kind = rng.choice(["flip", "zero", "duplicate", "delete", "truncate"])
        at = rng.randrange(len(out))
        span = rng.randint(1, 600)
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind == "zero":
            out[at : at + span] = b"\x00" * span
        elif kind == "duplicate":
            out[at:at] = out[at : at + span]
        elif kind == "delete":
            del out[at : at + span]
        else:
            del out[at:]
        path = tmp_path / f"bytes-{index}.csv"
        path.write_bytes(bytes(out))
        try:
            events = traceaudit.read_trace(path)
        except TraceauditError as error:
            assert "could not parse" not in str(error) and "polars" not in str(error).lower()
            continue
        assert isinstance(events, pl.DataFrame)


# ----------------------------------------------------------------- the corpus reads alike

CORPUS_EVENTS = {
    "procmon-csv/blerkk.csv": 5694,
    "procmon-csv/createprocess-gcc-comma-decimal.csv": 9877,
    "procmon-csv/crysis-nanny-filtered.csv": 1321,
    "procmon-csv/excel-japanese-tab-separated.zip": 178537,
    "procmon-csv/excel-resaved.csv": 3640,
    "procmon-csv/exe-to-pdf.csv": 9905,
    "procmon-csv/lab-os4-russian.csv": 6714,
    "procmon-csv/lotl-detection-renames.csv": 368,
    "procmon-csv/monitorapis.csv": 52,
    "procmon-csv/noriben-2013.csv": 623,
    "procmon-csv/ohtorii-24h.csv": 2300,
    "procmon-csv/one-row.csv": 1,
    "procmon-csv/phishing-tiny.csv": 12,
    "procmon-csv/prsp0007-filtered.csv": 2791,
    "procmon-csv/roslyn-test-comma-decimal.csv": 11892,
    "procmon-csv/winxp-24h.csv": 7922,
    "procmon-csv/yara-with-tid.csv": 4979,
    "procmon-pairs/Tests32bit.csv.gz": 32930,
    "procmon-pairs/Tests64bit.csv.gz": 53214,
    "procmon-pairs/UTC32Filesystem.csv.gz": 8577,
    "procmon-pairs/UTC64Filesystem.csv.gz": 31569,
    "procmon-pairs/UTC64Process.csv.gz": 3400,
}
"""Events read from each corpus CSV before damaged rows were resynchronised."""


def test_every_corpus_csv_is_pinned(corpus: Path) -> None:
    found = {
        str(p.relative_to(corpus))
        for folder in ("procmon-csv", "procmon-pairs")
        for p in (corpus / folder).iterdir()
        if ".csv" in p.name or p.suffix == ".zip"
    }
    assert found == set(CORPUS_EVENTS)


@pytest.mark.parametrize("name", sorted(CORPUS_EVENTS))
def test_corpus_csv_reads_the_same_through_the_resync(
    corpus: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counts are unchanged, and the line-by-line resync, forced on a sound file,
    reads exactly the events the one-call read does (quoted line breaks included)."""
    trace = load_trace(corpus / name)
    assert trace.events.height == CORPUS_EVENTS[name]
    assert trace.skipped == {}

    read_body = procmon_csv._Table._read_body

    def always_resync(table: procmon_csv._Table, projection: list[int]) -> pl.DataFrame:
        read_body(table, projection)
        return table._resync(projection)

    monkeypatch.setattr(procmon_csv._Table, "_read_body", always_resync)
    resynced = load_trace(corpus / name)
    assert resynced.skipped == {}
    assert resynced.events.equals(trace.events)


def test_gzip_input_with_a_damaged_row(tmp_path: Path) -> None:
    lines = sample_lines()
    lines[11] = lines[11].replace(b"OneDrive", b'One"Drive', 1)
    path = tmp_path / "stray.csv.gz"
    path.write_bytes(gzip.compress(b"\r\n".join(lines)))
    trace = load_trace(path)
    assert trace.events.height == ROWS - 1
    assert trace.skipped_rows == ("line 12",)
