"""Hostile and damaged input: one clear ``error:`` line or a careful read, never a
traceback, a false clean result, a flooded terminal or an overwritten input.

Each test is one promise from the issue that found it broken: encrypted and exploding
archives, damaged Parquet, impossible dates, standard input, inputs from which nothing can
be read, outputs that would land on an input, control characters from the trace, error
messages that echo unbounded input, spreadsheet formulas, a full disk, a killed run.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from locations import SAMPLES
from traceaudit.cli import main
from traceaudit.formats import input as _input

SAMPLES = SAMPLES
UV = SAMPLES / "uv-extract-rename.csv"
PASTED = SAMPLES / "uv-issue-pasted.tsv"


def run(*args: object, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def assert_clean_error(result, status: int = 3) -> str:
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    return result.stderr


# ---------------------------------------------------------------------------- archives


def encrypted_zip(path: Path, member: str = "Logfile.CSV") -> Path:
    """A zip whose member is flagged encrypted (general purpose bit 0), as `zip -P` makes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, UV.read_bytes())
    data = bytearray(buffer.getvalue())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    data[local + 6] |= 1
    data[central + 8] |= 1
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("command", ["analyze", "convert", "redact"])
def test_error_encrypted_zip_member(tmp_path, command):
    source = encrypted_zip(tmp_path / "x.zip")
    extra = {
        "analyze": [],
        "convert": ["-o", tmp_path / "o.parquet"],
        "redact": ["-o", tmp_path / "o.zip"],
    }
    message = assert_clean_error(run(command, source, *extra[command]))
    assert message == (
        "error: x.zip/Logfile.CSV: the zip member is encrypted (password-protected). Extract "
        "it with its password and give the trace file, or zip it again without a password.\n"
    )
    assert not any(p.name.startswith("o.") for p in tmp_path.iterdir())


def test_error_gzip_that_expands_far_beyond_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(_input, "MIN_LIMIT", 1 << 20)
    bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        handle.write(UV.read_bytes()[:200])
        handle.write(b"x" * (64 << 20))
    size = bomb.stat().st_size
    limit = max(1 << 20, 100 * size) / (1 << 20)
    message = assert_clean_error(run("analyze", bomb))
    assert message == (
        f"error: bomb.csv.gz: expands to more than {limit:,.1f} MB (from {size / 1024:,.1f} KB "
        "compressed), more than a trace of that size would: refused before memory runs out. "
        "If it really is one trace, set TRACEAUDIT_MAX_UNCOMPRESSED=16GB (or 0 for no limit) "
        "and run again, or decompress it yourself and give the file.\n"
    )
    monkeypatch.setenv("TRACEAUDIT_MAX_UNCOMPRESSED", "0")
    lifted = run("analyze", bomb)
    assert "expands to more than" not in lifted.stderr  # no limit: read (and found wanting)


def test_error_zip_member_that_expands_far_beyond_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(_input, "MIN_LIMIT", 1 << 20)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Logfile.CSV", UV.read_bytes()[:200] + b"x" * (64 << 20))
    message = assert_clean_error(run("analyze", bomb))
    assert message.startswith("error: bomb.zip/Logfile.CSV: expands to more than ")
    assert "compressed), more than a trace of that size would" in message


def test_error_a_limit_that_is_not_a_size(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEAUDIT_MAX_UNCOMPRESSED", "lots")
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(UV.read_bytes()))
    message = assert_clean_error(run("analyze", gz), status=2)
    assert message == (
        "error: TRACEAUDIT_MAX_UNCOMPRESSED='lots': expected a size such as 8GB or 500MB, or 0 "
        "for no limit.\n"
    )


def test_a_zip_member_name_is_quoted_on_one_line(tmp_path):
    source = encrypted_zip(tmp_path / "x.zip", member="evil\nname\x1b[2J.csv")
    message = assert_clean_error(run("analyze", source))
    assert message.startswith(r"error: x.zip/evil\nname\x1b[2J.csv: the zip member is encrypted")


# ---------------------------------------------------------------------------- parquet


@pytest.fixture
def parquet(tmp_path) -> Path:
    out = tmp_path / "events.parquet"
    assert run("convert", UV, "-o", out).exit_code == 0
    return out


def test_error_damaged_parquet_never_panics(parquet, tmp_path):
    data = parquet.read_bytes()
    for offset in range(4, len(data) - 8, max(1, len(data) // 97)):
        damaged = tmp_path / "damaged.parquet"
        damaged.write_bytes(data[:offset] + b"\xff\xff\xff\xff" + data[offset + 4 :])
        result = run("analyze", damaged)
        assert result.exit_code in (0, 3), offset
        assert "Traceback" not in result.output + result.stderr and "panic" not in result.stderr
        if result.exit_code == 3:
            assert result.stderr == (
                "error: damaged.parquet: cannot read this Parquet file: it is damaged, or was "
                "not written by 'traceaudit convert'. Convert the trace again.\n"
            )


def test_error_parquet_time_stored_as_text(parquet, tmp_path):
    text = tmp_path / "text.parquet"
    pl.read_parquet(parquet).with_columns(pl.col("time").cast(pl.String)).write_parquet(text)
    assert assert_clean_error(run("analyze", text)) == (
        "error: text.parquet: its 'time' column holds String, not timestamps: not a trace "
        "written by 'traceaudit convert'. Convert the trace again.\n"
    )


def test_error_parquet_time_no_trace_can_hold(parquet, tmp_path):
    old = tmp_path / "old.parquet"
    pl.read_parquet(parquet).with_columns(
        pl.col("time").cast(pl.Datetime("us")).dt.offset_by("-400y")
    ).write_parquet(old)
    assert assert_clean_error(run("analyze", old)) == (
        "error: old.parquet: event times outside 1677-09-22 to 2262-04-11, which a trace cannot "
        "hold: the file is damaged or not a trace written by 'traceaudit convert'.\n"
    )


def test_error_parquet_with_more_rows_than_its_size_could_hold(tmp_path, monkeypatch):
    monkeypatch.setattr(_input, "MIN_LIMIT", 1 << 20)
    rows = 200_000
    frame = pl.DataFrame({"row": [1] * rows}).with_columns(
        time=pl.datetime(2024, 7, 15),
        process=pl.lit("a.exe"),
        pid=pl.lit(1),
        operation=pl.lit("ReadFile"),
        path=pl.lit(r"C:\a"),
        result=pl.lit("SUCCESS"),
    )
    tiny = tmp_path / "tiny.parquet"
    frame.write_parquet(tiny, compression="zstd")
    message = assert_clean_error(run("analyze", tiny))
    assert message.startswith(
        f"error: tiny.parquet: claims 200,000 events in {tiny.stat().st_size:,} bytes"
    )


def test_error_parquet_column_of_the_wrong_type(parquet, tmp_path):
    wrong = tmp_path / "wrong.parquet"
    pl.read_parquet(parquet).with_columns(pid=pl.lit("not a pid")).write_parquet(wrong)
    assert assert_clean_error(run("analyze", wrong)) == (
        "error: wrong.parquet: columns of the wrong type for a trace: pid (String). Only Parquet "
        "written by 'traceaudit convert' can be analysed.\n"
    )


# ---------------------------------------------------------------------------- stdin, streams


def test_standard_input_is_read_with_a_dash():
    result = run("analyze", "-", "--json", input=PASTED.read_bytes())
    assert result.exit_code == 0
    assert '"events": 42' in result.output and '"name": "<stdin>"' in result.output


@pytest.mark.skipif(not os.path.exists("/dev/stdin"), reason="no /dev/stdin")
def test_a_pipe_is_read_like_a_file():
    proc = subprocess.run(
        [sys.executable, "-m", "traceaudit", "analyze", "/dev/stdin", "--json"],
        input=gzip.compress(PASTED.read_bytes()),
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert b'"events": 42' in proc.stdout


def test_error_standard_input_twice():
    message = assert_clean_error(run("analyze", "-", "-", input=b""), status=2)
    assert message == "error: '-' (standard input) can be given once only.\n"


# ---------------------------------------------------------------------------- nothing read


def test_error_no_event_could_be_read(tmp_path):
    # header columns swapped: every row's "Time of Day" holds a process name
    lines = UV.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].replace('"Time of Day"', '"X"').replace('"Process Name"', '"Time of Day"')
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("\n".join([header.replace('"X"', '"Process Name"'), *lines[1:]]) + "\n")
    result = run("analyze", swapped, "--check")
    message = assert_clean_error(result)
    assert message.startswith(
        "error: swapped.csv: not one event could be read: all 287 rows are damaged ("
    )
    assert message.endswith(
        ". Check that the file is a trace whose header matches its rows, or export it again.\n"
    )


# ---------------------------------------------------------------------------- outputs


def test_error_plots_would_overwrite_an_input_named_like_a_figure(tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    trace = plots / "blockers.png"
    trace.write_bytes(UV.read_bytes())
    result = run("analyze", trace, "--plots", plots)
    message = assert_clean_error(result, status=2)
    assert message == (
        f"error: {trace}: an input trace named like a figure, in the plots folder: writing the "
        "figures would replace it. Give another folder for --plots.\n"
    )
    assert result.stdout == "" and trace.read_bytes() == UV.read_bytes()


def test_error_html_folder_missing_is_reported_before_the_report(tmp_path):
    result = run("analyze", UV, "--html", tmp_path / "nope" / "r.html")
    message = assert_clean_error(result, status=2)
    assert (
        message
        == f"error: {tmp_path / 'nope'}: no such folder for the HTML report. Create it first.\n"
    )
    assert result.stdout == ""


def test_error_redact_map_would_overwrite_the_input(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_bytes(UV.read_bytes())
    result = run("redact", trace, "-o", tmp_path / "out.csv", "--map", trace)
    assert assert_clean_error(result, status=2) == (
        f"error: {trace}: this is an input trace; refusing to write the pseudonym map over it. "
        "Give another file name.\n"
    )
    assert trace.read_bytes() == UV.read_bytes() and not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------------- terminal safety


def test_control_characters_from_the_trace_never_reach_the_terminal(tmp_path):
    hostile = r"C:\t\x" + "\x1b]0;pwned\x07\x1b[2J" + r"\a.dll"
    text = UV.read_text(encoding="utf-8-sig").replace(
        r"C:\Users\username\AppData\Local\uv\cache\.tmp4abXBU\numpy-1.26.4\numpy\parser.py", hostile
    )
    trace = tmp_path / "t.csv"
    trace.write_text(text, encoding="utf-8")
    for args in (
        ["analyze", trace, "--limit", "0"],
        ["timeline", trace, r"C:\t"],
        ["analyze", trace, "--json"],
    ):
        output = run(*args).output
        assert "\x1b" not in output and "\x07" not in output
    assert r"\x1b]0;pwned\x07\x1b[2J" in run("timeline", trace, r"C:\t").output


def test_error_messages_do_not_echo_unbounded_input(tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"A" * 5_000_000 + b"\n")
    message = assert_clean_error(run("analyze", junk))
    assert len(message) <= 2_001


# ---------------------------------------------------------------------------- spreadsheets


def test_convert_csv_defuses_formulas_unless_raw(tmp_path):
    text = UV.read_text(encoding="utf-8-sig").replace('"uv.exe"', '"=HYPERLINK(""http://x"")"', 1)
    trace = tmp_path / "t.csv"
    trace.write_text(text, encoding="utf-8")
    out = tmp_path / "events.csv"
    assert run("convert", trace, "-o", out).exit_code == 0
    cells = pl.read_csv(out, infer_schema=False)["process"].to_list()
    assert '\'=HYPERLINK("http://x")' in cells and not any(c.startswith("=") for c in cells)
    raw = tmp_path / "raw.csv"
    assert run("convert", trace, "-o", raw, "--raw").exit_code == 0
    assert '=HYPERLINK("http://x")' in pl.read_csv(raw, infer_schema=False)["process"].to_list()


# ---------------------------------------------------------------------------- writing


def test_error_full_disk_names_the_output_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "events.parquet"
    message = assert_clean_error(run("convert", UV, "-o", out))
    assert message == (
        f"error: {out}: cannot write it: no space left on the device. Free some space, or write "
        "the output elsewhere.\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_removes_temporary_output(tmp_path):
    script = (
        "import os, signal, sys\n"
        "from traceaudit.cli import install_signal_handlers\n"
        "from traceaudit._atomic import atomic_output\n"
        "install_signal_handlers()\n"
        f"with atomic_output({str(tmp_path / 'out.bin')!r}) as handle:\n"
        "    handle.write(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    handle.write(b'never')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 128 + 15, proc.stderr
    assert list(tmp_path.iterdir()) == []
