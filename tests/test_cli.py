"""The ``traceaudit`` command, end to end on the bundled samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from locations import SAMPLES
from traceaudit.cli import main

SAMPLES = SAMPLES
UV = str(SAMPLES / "uv-extract-rename.csv")
INDEXER = str(SAMPLES / "replace-under-indexer.csv")
PASTED = str(SAMPLES / "uv-issue-pasted.tsv")


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_analyze_names_the_scanner_that_blocked_the_rename():
    result = run("analyze", UV)
    assert result.exit_code == 0
    assert "5 conflicts on 1 path: 5 blocked by another process." in result.output
    assert "held by MsMpEng.exe (43120)" in result.output
    assert "Suggested retry policy" in result.output


def test_analyze_json_is_one_object_with_the_documented_keys():
    result = run("analyze", UV, "--json")
    doc = json.loads(result.output)
    assert {"trace", "warnings", "conflicts", "windows", "retries", "policy", "replay"} <= set(doc)
    assert doc["trace"]["format"] == "procmon-csv" and doc["trace"]["events"] == 287
    first = doc["conflicts"][0]
    assert first["time"] == "2024-07-15T11:27:01.0215923"
    assert {b["process"] for b in first["blockers"]} == {"MsMpEng.exe"}
    assert set(first["blockers"][0]) >= {"pid", "process", "path", "opened", "closed"}
    assert first["remaining_ms"] == pytest.approx(67.4517)


def test_check_exits_4_when_another_process_blocked():
    assert run("analyze", UV, "--check").exit_code == 4


def test_check_exits_0_when_no_other_process_blocked():
    assert run("analyze", PASTED, "--check").exit_code == 0


def test_process_and_path_filters_narrow_the_conflicts():
    doc = json.loads(run("analyze", UV, INDEXER, "--json", "--process", "code.exe").output)
    assert {c["process"] for c in doc["conflicts"]} == {"Code.exe"}
    doc = json.loads(run("analyze", UV, INDEXER, "--json", "--path", r"*\numpy-*").output)
    assert {c["process"] for c in doc["conflicts"]} == {"uv.exe"}


def test_several_traces_are_pooled():
    doc = json.loads(run("analyze", UV, INDEXER, "--json").output)
    assert [t["name"] for t in doc["traces"]] == [
        "uv-extract-rename.csv",
        "replace-under-indexer.csv",
    ]
    assert doc["policy"]["n_windows"] == 2


def test_max_wait_bounds_the_suggested_budget():
    doc = json.loads(run("analyze", UV, "--json", "--max-wait", "300ms").output)
    assert doc["policy"]["total_budget_ms"] <= 300 and doc["policy"]["coverage"] == 1.0


def test_a_max_wait_too_short_to_cover_anything_gives_no_policy():
    # uv's rename stayed blocked 226 ms: no policy within 100 ms rides it out, and a policy
    # that covers nothing is not advice.
    doc = json.loads(run("analyze", UV, "--json", "--max-wait", "100ms").output)
    assert doc["policy"] is None and doc["snippets"] == {}
    assert doc["policy_withheld"] == (
        "No retry advice: no retry policy within --max-wait 100.0 ms would have ridden out "
        "any of the 1 lock episodes. Allow a longer wait, or capture more failures."
    )


def test_pasted_rows_warn_that_the_capture_was_filtered():
    result = run("analyze", PASTED)
    assert result.exit_code == 0
    assert "only one process (uv.exe) is in the trace" in result.output


def test_timeline_text_and_json(tmp_path):
    directory = r"C:\Users\alice\Documents\notes\file.txt"
    text = run("timeline", INDEXER, directory)
    assert text.exit_code == 0
    assert "SearchProtocolHost.exe" in text.output
    records = json.loads(run("timeline", INDEXER, directory, "--json").output)
    assert all(r["path"].lower().startswith(directory.lower()) for r in records)
    assert {"time", "process", "operation", "result", "handle", "share_mode"} <= set(records[0])


def test_html_and_plots_are_written(tmp_path):
    html, plots = tmp_path / "report.html", tmp_path / "plots"
    result = run("analyze", UV, "--html", str(html), "--plots", str(plots))
    assert result.exit_code == 0
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.suffix for p in plots.iterdir()) == sorted([".png", ".svg"] * 3)


def test_python_dash_m_runs_the_same_command():
    proc = subprocess.run(
        [sys.executable, "-m", "traceaudit", "analyze", INDEXER, "--check"],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    assert proc.returncode == 4
    assert "SearchProtocolHost.exe" in proc.stdout


def test_error_missing_file():
    result = run("analyze", "no-such-trace.csv")
    assert result.exit_code == 3
    assert (
        result.stderr
        == "error: no-such-trace.csv: no such file (no-such-trace.csv). Check the path.\n"
    )


def test_error_bad_date():
    result = run("analyze", PASTED, "--date", "15/07/2024")
    assert result.exit_code == 2
    assert result.stderr == "error: --date '15/07/2024': expected YYYY-MM-DD, e.g. 2024-07-15.\n"


@pytest.mark.parametrize("command", ["analyze", "convert", "timeline"])
@pytest.mark.parametrize("day", ["9999-12-31", "1600-01-01"])
def test_error_a_date_no_trace_can_hold_is_a_usage_error(tmp_path, command, day):
    extra = {"analyze": [], "convert": ["-o", str(tmp_path / "x.parquet")], "timeline": ["C:\\x"]}
    args = [PASTED, *extra[command]] if command != "timeline" else [PASTED, "C:\\x"]
    result = run(command, *args, "--date", day)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: --date {day}: a trace's times can only fall between 1677-09-22 and "
        "2262-04-10; give the day the capture was taken.\n"
    )
    assert not (tmp_path / "x.parquet").exists()


def test_error_bad_max_wait():
    result = run("analyze", UV, "--max-wait", "soon")
    assert result.exit_code == 2
    assert (
        result.stderr == "error: --max-wait 'soon': expected a duration such as 500ms, 10s or 2m.\n"
    )


def test_error_html_would_overwrite_the_input(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_bytes(Path(INDEXER).read_bytes())
    result = run("analyze", str(trace), "--html", str(trace))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {trace}")
    assert trace.read_bytes() == Path(INDEXER).read_bytes()


def test_error_not_a_trace_is_refused_without_traceback(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\nthis is not a trace\n", encoding="utf-8")
    result = run("analyze", str(junk))
    assert result.exit_code == 3
    assert result.stderr.startswith("error: notes.txt: not a trace traceaudit can read")
    assert "Traceback" not in result.output + result.stderr


def test_progress_line_shows_only_on_a_terminal_and_after_a_delay(monkeypatch):
    import io
    import time

    from traceaudit import _progress

    monkeypatch.setattr(_progress, "DELAY_S", 0.05)
    monkeypatch.setattr(_progress, "INTERVAL_S", 0.02)
    quiet = io.StringIO()
    with _progress.progress("reading big.csv", stream=quiet):
        time.sleep(0.2)
    assert quiet.getvalue() == ""  # not a terminal: silent
    shown = io.StringIO()
    with _progress.progress("reading big.csv", stream=shown, force=True):
        time.sleep(0.2)
    assert "reading big.csv" in shown.getvalue() and shown.getvalue().endswith("\r")
    fast = io.StringIO()
    with _progress.progress("reading small.csv", stream=fast, force=True):
        pass
    assert fast.getvalue() == ""  # done before the delay: silent
