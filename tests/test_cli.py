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
        "No retry advice: no retry policy within the 100.0 ms budget would have ridden out "
        "the one lock episode. Allow a longer wait (--max-wait), or capture more failures."
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
    assert result.stderr == (
        "error: analyze: --date '15/07/2024': expected YYYY-MM-DD, e.g. 2024-07-15. "
        "See 'traceaudit analyze --help'.\n"
    )


@pytest.mark.parametrize("command", ["analyze", "convert", "timeline"])
@pytest.mark.parametrize("day", ["9999-12-31", "1600-01-01"])
def test_error_a_date_no_trace_can_hold_is_a_usage_error(tmp_path, command, day):
    extra = {"analyze": [], "convert": ["-o", str(tmp_path / "x.parquet")], "timeline": ["C:\\x"]}
    args = [PASTED, *extra[command]] if command != "timeline" else [PASTED, "C:\\x"]
    result = run(command, *args, "--date", day)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {command}: --date {day}: a trace's times can only fall between 1677-09-22 "
        f"and 2262-04-10; give the day the capture was taken. See 'traceaudit {command} "
        "--help'.\n"
    )
    assert not (tmp_path / "x.parquet").exists()


def test_error_bad_max_wait():
    result = run("analyze", UV, "--max-wait", "soon")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: analyze: --max-wait 'soon': expected a duration: ms, s or m (min), e.g. 500ms, "
        "10s or 2m. See 'traceaudit analyze --help'.\n"
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


# --- usage errors: one line, exit 2 ---------------------------------------------------


def _help(command: str) -> str:
    return f" See 'traceaudit {command} --help'.\n" if command else " See 'traceaudit --help'.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["analyze", UV, "--target", "abc"],
            "error: analyze: --target 'abc': expected a share above 0 and at most 1, e.g. 0.99.",
        ),
        (
            ["analyze", UV, "--target", "1.5"],
            "error: analyze: --target '1.5': expected a share above 0 and at most 1, e.g. 0.99.",
        ),
        (["analyze"], "error: analyze: missing argument 'TRACES...'."),
        (["analyze", UV, "--bogus"], "error: analyze: no such option '--bogus'."),
        (["analyze", UV, "--limit"], "error: analyze: option '--limit' requires an argument."),
        (
            ["analyze", UV, "--limit", "-3"],
            "error: analyze: --limit '-3': expected a whole number, 0 or more.",
        ),
        (
            ["analyze", UV, "--max-wait", "10"],
            "error: analyze: --max-wait '10': give a unit: ms, s or m (min), e.g. 500ms, 10s or 2m.",
        ),
        (
            ["analyze", UV, "--max-wait", "-5s"],
            "error: analyze: --max-wait '-5s': expected a duration: ms, s or m (min), e.g. "
            "500ms, 10s or 2m.",
        ),
        (
            ["analyze", UV, "--tz", "Mars/Olympus"],
            "error: analyze: --tz 'Mars/Olympus': unknown time zone; use an IANA name such as "
            "Europe/Berlin or America/New_York, or 'local'.",
        ),
        (
            ["analyze", UV, "--json", "--text"],
            "error: analyze: --json and --text both print to standard output; choose one.",
        ),
        (["timeline", UV, "C:\\x", "--bogus"], "error: timeline: no such option '--bogus'."),
        (
            ["convert", UV, "-o", "out.csv", "--to", "xml"],
            "error: convert: --to: 'xml' is not one of 'parquet', 'csv'.",
        ),
        (["convert", UV], "error: convert: missing option '-o' / '--output'."),
        (
            ["fleet", UV, "-o", "dataset", "--workers", "0"],
            "error: fleet: --workers '0': expected a whole number, 1 or more.",
        ),
        (["bogus"], "error: no such command 'bogus'."),
        (
            ["--color", "sometimes", "formats"],
            "error: --color: 'sometimes' is not one of 'auto', 'always', 'never'.",
        ),
    ],
)
def test_error_usage_is_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.exit_code == 2
    command = args[0] if args[0] in main.commands else ""
    assert result.stderr == message[:-1] + "." + _help(command)
    assert result.stdout == ""


def test_error_output_folder_missing_is_refused_before_any_output(tmp_path):
    html = tmp_path / "missing" / "r.html"
    result = run("analyze", UV, "--html", str(html))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {html.parent}: no such folder for the HTML report. Create it first.\n"
    )
    assert result.stdout == ""


def test_error_plots_folder_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x", encoding="utf-8")
    result = run("analyze", UV, "--plots", str(blocker / "plots"))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {blocker}: is a file, so the plots folder {blocker / 'plots'} cannot be "
        "created in it.\n"
    )


def test_error_key_file_that_is_the_output(tmp_path):
    out = tmp_path / "out.csv"
    result = run("redact", UV, "-o", str(out), "--key-file", str(out))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {out}: given as both the key file and the redacted trace; give two names.\n"
    )
    assert not out.exists()


# --- options that do not apply say so -------------------------------------------------


def test_tz_on_a_trace_with_local_times_is_noted():
    result = run("analyze", UV, "--tz", "Europe/Berlin")
    assert result.exit_code == 0
    assert result.stderr == (
        "note: --tz applies to traces with UTC times (PML, ETW); uv-extract-rename.csv has "
        "local times, so it was not used.\n"
    )


def test_date_on_a_trace_with_full_dates_is_noted(tmp_path):
    parquet = tmp_path / "uv.parquet"
    assert run("convert", UV, "-o", str(parquet)).exit_code == 0
    result = run("analyze", str(parquet), "--date", "2024-07-15")
    assert result.exit_code == 0
    assert result.stderr == (
        "note: --date applies to traces whose rows carry only a time of day (pasted rows, "
        "exports without a Date & Time column); uv.parquet has full dates, so it was not "
        "used.\n"
    )


def test_limit_with_json_is_noted():
    result = run("analyze", UV, "--json", "--limit", "3")
    assert json.loads(result.stdout)["trace"]["name"] == "uv-extract-rename.csv"
    assert result.stderr == "note: --limit applies to the text report, not to --json.\n"


# --- --html and --plots print where they wrote ----------------------------------------


def test_html_prints_where_it_wrote_and_the_answer_not_the_report(tmp_path):
    html = tmp_path / "report.html"
    result = run("analyze", UV, "--html", str(html))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == (
        f"wrote {html}\n"
        "answer: 5 conflicts; held by MsMpEng.exe, blocking uv.exe: 5 failures on 1 path\n"
    )


def test_text_prints_the_report_as_well(tmp_path):
    html = tmp_path / "report.html"
    result = run("analyze", UV, "--html", str(html), "--text")
    assert result.stdout.startswith("Trace uv-extract-rename.csv: procmon-csv, 287 events")
    assert result.stderr == f"wrote {html}\n"


# --- help, version, colour ------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag):
    from traceaudit import __version__

    result = run(flag)
    assert result.exit_code == 0 and result.stdout == f"traceaudit, version {__version__}\n"


def test_help_lists_formats_examples_exit_codes_and_whole_summaries():
    text = run("--help").stdout
    for words in (
        "(.PML)",
        "CSV and XML",
        "pasted",
        "ETW traces (.etl",
        "Parquet",
        "Examples:",
        "traceaudit analyze Logfile.PML",
        "0  done",
        "2  wrong usage",
        "3  bad input",
        "4  analyze --check",
        "NO_COLOR",
        "-V, --version",
        "--color WHEN",
    ):
        assert words in text, words
    commands = text.split("Commands:")[1].split("Exit status:")[0]
    assert "..." not in commands
    assert "Who held the failing files, for how long; how long to retry." in " ".join(
        commands.split()
    )


def test_analyze_help_documents_units_and_html_output():
    text = " ".join(run("analyze", "--help").stdout.split())
    assert "with its unit (500ms, 10s, 2m)" in text
    assert "--text prints the text report too" in text


def test_colour_only_when_asked_or_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    plain = run("analyze", UV).stdout
    assert "\x1b[" not in plain  # CliRunner's output is not a terminal
    coloured = run("--color", "always", "analyze", UV).stdout
    assert "\x1b[1mAnswer:\x1b[0m" in coloured
    assert "\x1b[31m\x1b[1mblocked by another process\x1b[0m" in coloured
    assert click_unstyle(coloured) == plain
    assert "\x1b[" not in run("--color", "never", "analyze", UV).stdout
    error = run("--color", "always", "analyze", "no-such.csv").stderr
    assert error.startswith("\x1b[31m\x1b[1merror:\x1b[0m no-such.csv")


def test_no_color_turns_colour_off_on_a_terminal(monkeypatch):
    from traceaudit import _cli_options

    monkeypatch.setenv("NO_COLOR", "1")
    _cli_options.set_color("auto")
    assert _cli_options.style("x", bold=True) == "x"
    monkeypatch.setenv("NO_COLOR", "")  # empty: as if unset
    _cli_options.set_color("auto")
    assert _cli_options.style("x", bold=True) == "\x1b[1mx\x1b[0m"
    monkeypatch.setenv("NO_COLOR", "1")
    _cli_options.set_color("always")  # the flag wins over the environment
    assert _cli_options.style("x", bold=True) == "\x1b[1mx\x1b[0m"


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)


def test_a_cp1252_console_does_not_crash_on_the_report():
    proc = subprocess.run(
        [sys.executable, "-m", "traceaudit", "--color", "always", "analyze", INDEXER],
        capture_output=True,
        env={**__import__("os").environ, "PYTHONIOENCODING": "cp1252"},
    )
    assert proc.returncode == 0
    assert b"Answer:" in proc.stdout


# --- timeline ---------------------------------------------------------------------------

NOTES = r"C:\Users\alice\Documents\notes"


def test_timeline_columns_are_aligned_and_handles_explained():
    lines = run("timeline", INDEXER, NOTES).stdout.splitlines()
    assert lines[0] == rf"31 events on {NOTES} and below it."
    assert lines[1].startswith("Handles: h5 is the 5th handle opened on these paths")
    table = lines[3:]
    assert table[0].split() == ["time", "process", "(pid)", "handle", "operation", "result", "path"]
    start = table[0].index("path")
    assert all(line[start:].startswith("C:\\Users\\alice") for line in table[1:])
    handle_end = table[0].index("handle") + len("handle")
    assert all(line[handle_end - 1] != " " for line in table[1:])


def test_timeline_takes_forward_slashes():
    slashed = run("timeline", INDEXER, NOTES.replace("\\", "/")).stdout
    assert slashed == run("timeline", INDEXER, NOTES).stdout
    records = json.loads(
        run("timeline", INDEXER, "c:/users/alice/documents/notes", "--json").stdout
    )
    assert len(records) == 31


# --- the text report --------------------------------------------------------------------


def test_pooled_report_names_the_trace_of_each_path_and_retry():
    text = run("analyze", UV, INDEXER).stdout
    assert (
        "C:\\Users\\username\\AppData\\Local\\uv\\cache\\.tmp4abXBU\\numpy-1.26.4  "
        "(trace uv-extract-rename.csv)\n" in text
    )
    assert (
        "C:\\Users\\alice\\Documents\\notes\\file.txt.tmp  (trace replace-under-indexer.csv)\n"
        in text
    )
    assert "\n  replace-under-indexer.csv: Code.exe (19944) SetRenameInformationFile" in text
    assert "(trace " not in run("analyze", UV).stdout


def test_replay_table_says_when_a_tool_does_not_retry_the_error():
    text = run("analyze", UV).stdout
    assert "  MSBuild Copy                       32,33      does not retry this error\n" in text
    assert "  uv                                 5                1/1     100%" in text


@pytest.mark.parametrize(
    ("n", "word", "many", "text"),
    [
        (0, "process", "processes", "0 processes"),
        (1, "process", "processes", "1 process"),
        (2, "failure", None, "2 failures"),
        (1, "more failure", None, "1 more failure"),
        (11813, "conflict", None, "11,813 conflicts"),
        (2479, "process", "processes", "2,479 processes"),
    ],
)
def test_plural(n, word, many, text):
    from traceaudit.display import plural

    assert plural(n, word, many) == text


def test_no_text_report_says_n_things_without_a_plural_or_separator():
    import re

    text = run("analyze", str(SAMPLES / "mixed-small.csv"), "--limit", "0").stdout
    assert [w for w in re.findall(r"\b1 ([a-z]+s)\b", text) if w not in ("ms", "its")] == []
    assert "(s)" not in text and "()" not in text and "=" not in text.replace("==", "")
    assert re.findall(r"\b\d{4,} [a-z]", text) == []  # 1,000 and up carry a separator
