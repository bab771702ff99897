"""Honest answers on real captures: say only what the capture can show, answer first.

Each case is a real capture a user brought (the uv issue's pasted rows are bundled; the rest
come from the corpus beside the repository and skip without it): a paste with closes
missing, Defender's oplock probe, Explorer's own mapped section, captures whose CloseFiles
were filtered out. The expectations are what an expert reading the rows in Procmon by hand
would conclude.
"""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
from click.testing import CliRunner

import traceaudit
from locations import SAMPLES
from traceaudit.cli import main
from traceaudit.report.html import render_html

SAMPLES = SAMPLES
PASTED = SAMPLES / "uv-issue-pasted.tsv"
UV = SAMPLES / "uv-extract-rename.csv"
MIXED = SAMPLES / "mixed-small.csv"


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def answer_block(text: str) -> str:
    """The lines between ``Answer:`` and the details."""
    return text.split("Answer:\n", 1)[1].split("\nDetails\n", 1)[0]


# ---------------------------------------------------------------------------- the uv paste


def test_pasted_rows_do_not_make_uv_its_own_blocker():
    report = traceaudit.analyze(PASTED)
    (conflict,) = report.conflict_records()
    assert conflict["verdict"] == "incomplete-capture"
    assert conflict["blockers"] == []
    assert [c["process"] for c in conflict["candidates"]] == ["uv.exe"] * 3
    assert all(c["closed"] is None and c["own"] for c in conflict["candidates"])
    assert conflict["reason"].startswith("the capture cannot show the holder")


def test_pasted_rows_are_measured_as_an_excerpt():
    completeness = traceaudit.analyze(PASTED).to_dict()["trace"]["completeness"]
    assert completeness["complete"] is False
    assert completeness["gaps"] == ["pasted-excerpt", "io-without-open", "single-process"]
    assert (completeness["io_without_open"], completeness["io_handles"]) == (11, 16)
    assert (completeness["create_file"], completeness["close_file"]) == (6, 3)
    assert completeness["pasted"] is True and completeness["excerpt"] is True


def test_pasted_rows_give_no_window_no_advice_and_no_check_failure():
    report = traceaudit.analyze(PASTED)
    doc = report.to_dict()
    assert doc["windows"]["overall"]["count"] == 0
    assert doc["blocked"]["episodes"] == []
    assert doc["policy"] is None and doc["snippets"] == {} and doc["replay"] == []
    assert doc["policy_withheld"] == (
        "No retry advice: no failure has a holder whose release this capture shows (the "
        "handles in the way are candidates only). Capture the whole system, with CreateFile "
        "and CloseFile, until the operation succeeds, and analyse that."
    )
    assert run("analyze", PASTED, "--check").exit_code == 0


def test_pasted_rows_answer_first_with_the_excerpt_warning():
    text = run("analyze", PASTED).output
    first = answer_block(text)
    assert "blocked by its own handle" not in text
    assert first.startswith(
        "  Cannot tell 1 failure (uv.exe SetRenameInformationFile ACCESS DENIED)"
    )
    assert "3 handles of uv.exe" in first
    assert "  Advice      no failure has a holder whose release this capture shows" in first
    assert (
        "  Warning     uv-issue-pasted.tsv: rows pasted from Procmon's window are an excerpt"
        in first
    )
    assert "snippet" not in text.lower() and "backon" not in text


def test_pasted_rows_html_headline_blames_nobody():
    page = render_html(traceaudit.analyze(PASTED), figures=None)
    header = page[page.index("<body>") : page.index('<section id="traces">')]
    body = page[page.index("<body>") :]
    assert "the capture cannot show the holder" in header
    assert "blocked-by-own-handle" not in body and "its own handle" not in header
    assert "candidate, not evidence: <b>uv.exe</b>" in body
    assert "Cannot tell" in header and "rows pasted from Procmon" in header


# ---------------------------------------------------------------------------- oplock probe


def test_defenders_oplock_probe_is_not_a_lock(corpus):
    path = corpus / "procmon-csv" / "monitorapis.csv"
    report = traceaudit.analyze(path)
    (conflict,) = report.conflict_records()
    assert (conflict["kind"], conflict["verdict"]) == ("oplock", "oplock-probe")
    assert [b["process"] for b in conflict["blockers"]] == ["calc1.exe"]
    assert conflict["blockers"][0]["access"] == "write"
    assert "could not be granted while calc1.exe had the file open" in conflict["reason"]
    assert "share mode exclude" not in conflict["reason"]
    assert report.to_dict()["windows"]["overall"]["count"] == 0
    assert report.policy is None and report.snippets() == {}
    assert not report.blocked_by_other()
    assert run("analyze", path, "--check").exit_code == 0


def test_the_oplock_probes_fallback_open_is_reported_as_such(corpus):
    text = run("analyze", corpus / "procmon-csv" / "monitorapis.csv").output
    assert "Not a lock  1 oplock probe by MsMpEng.exe declined by design (calc1.exe had" in text
    assert "opened again 0.09 ms later without the oplock: SUCCESS" in text
    assert "prevented the oplock: calc1.exe (3952)" in text
    assert "Retries by the failing process" not in text  # a fallback is not a retry
    assert "Suggested retry policy" not in text


# ---------------------------------------------------------------------------- mapped section


@pytest.mark.parametrize("name", ["UTC32Filesystem.pml.gz", "UTC32Filesystem.csv.gz"])
def test_explorers_user_mapped_file_is_its_own_section(corpus, name):
    report = traceaudit.analyze(corpus / "procmon-pairs" / name)
    (conflict,) = report.conflict_records()
    assert conflict["result"] == "USER MAPPED FILE"
    assert (conflict["kind"], conflict["verdict"]) == ("section", "mapped-by-own-process")
    (section,) = conflict["sections"]
    assert (section["process"], section["source"], section["own"]) == (
        "Explorer.EXE",
        "CreateFileMapping",
        True,
    )
    assert section["ended"] is None
    assert conflict["remaining_ms"] is None and not conflict["censored"]
    assert "no event marks when it goes away" in conflict["reason"]
    assert not report.blocked_by_other()


def test_a_capture_without_opens_or_closes_says_so_first(corpus):
    path = corpus / "procmon-pairs" / "UTC32Filesystem.pml.gz"
    text = run("analyze", path).output
    first = answer_block(text)
    assert first.startswith("  Held by     Explorer.EXE, its own mapped section: 1 failure")
    assert (
        "  Warning     UTC32Filesystem.pml.gz: the capture holds no CreateFile or CloseFile"
        in first
    )
    assert "the same request succeeded 0.091 ms later" in text
    gaps = traceaudit.analyze(path).to_dict()["trace"]["completeness"]["gaps"]
    assert gaps == ["no-opens-or-closes"]


# ---------------------------------------------------------------------------- closes filtered


@pytest.mark.parametrize(
    ("name", "creates"), [("ron-crash-a.pml", 1_114), ("ron-crash (b).pml", 1_111)]
)
def test_a_capture_without_closefile_warns_that_lifetimes_cannot_be_rebuilt(corpus, name, creates):
    report = traceaudit.analyze(corpus / "procmon-pml" / name)
    completeness = report.to_dict()["trace"]["completeness"]
    assert completeness["gaps"][0] == "no-closes"
    assert (completeness["create_file"], completeness["close_file"]) == (creates, 0)
    assert report.warnings[0] == (
        f"{name}: {creates:,} CreateFile and no CloseFile: the closes were filtered out of the "
        "capture, so when handles closed cannot be rebuilt. Handles without a close are listed "
        "as candidates, never as holders, and feed no hold or blocked time and no advice. "
        "Capture again with CloseFile included."
    )
    assert report.headline_warning == report.warnings[0]
    assert set(report.conflicts["verdict"]) == {"no-holder-permission"}


def test_a_complete_capture_has_no_gaps(corpus):
    for path in (
        corpus / "procmon-pairs" / "Tests64bit.pml.gz",
        corpus / "procmon-pml" / "file-dump-renames.pml",
        corpus / "procmon-xml" / "defender-scan-russian.xml",
    ):
        completeness = traceaudit.analyze(path).to_dict()["trace"]["completeness"]
        assert completeness["complete"], (path.name, completeness["gaps"])


# ---------------------------------------------------------------------------- two measures


def test_blocked_time_and_hold_time_are_named_apart():
    report = traceaudit.analyze(UV)
    doc = report.to_dict()
    hold, blocked = doc["windows"]["overall"], doc["blocked"]["overall"]
    assert (hold["count"], hold["p50_ms"], hold["max_ms"]) == (5, 56.784, 73.2848)
    assert (blocked["count"], blocked["max_ms"]) == (1, 226.3359)
    (episode,) = doc["blocked"]["episodes"]
    assert (episode["holder"], episode["blocked_ms"], episode["censored"]) == (
        "MsMpEng.exe",
        226.3359,
        False,
    )
    assert report.policy.total_budget_ms >= 226.3359  # the policy rides out blocked time
    first = answer_block(run("analyze", UV).output)
    assert "  Blocked     226.3 ms until the operation could first have succeeded" in first
    assert "  Held for    56.8 ms median, 73.3 ms at most: how long the handles present" in first
    assert "(hold time over 5 failures)" in first


def test_the_windows_figure_is_labelled_blocked_time():
    from traceaudit.report import plot

    ax = plot.windows(traceaudit.analyze(UV), policies=())
    assert ax.get_title().startswith("Blocked time of each lock episode")
    assert ax.get_ylabel() == "share of lock episodes ridden out"
    assert any("blocked time" in t.get_text() for t in ax.get_legend().get_texts())


# ---------------------------------------------------------------------------- answer first


def test_the_answer_comes_before_any_detail():
    text = run("analyze", UV).output
    lines = text.splitlines()
    assert lines[2] == "Answer:"
    assert lines[3].startswith("  Held by     MsMpEng.exe, blocking uv.exe: 5 failures on 1 path")
    advice = next(i for i, line in enumerate(lines) if line.startswith("  Advice"))
    assert (
        advice < 10
        and "(≤ 230 ms): would have ridden out 1 of 1 lock episode (100%)" in (lines[advice])
    )
    assert lines.index("Details") > advice


def test_snippets_only_on_request_in_text_but_always_in_json_and_html():
    plain = run("analyze", UV).output
    assert "backon" not in plain and "--snippets prints this policy" in plain
    assert "use backon::" in run("analyze", UV, "--snippets").output
    assert set(json.loads(run("analyze", UV, "--json").output)["snippets"]) == {
        "rust",
        "python",
        "go",
        "dotnet",
    }
    assert "Rust (backon)" in render_html(traceaudit.analyze(UV), figures=None)


def test_details_are_capped_with_how_many_more_and_how_to_see_them():
    from traceaudit.schema import Trace
    from traceaudit.simulation.generate import simulate_mix

    report = traceaudit.analyze(
        Trace(events=simulate_mix(20_000, seed=3).to_frame(), format="simulated")
    )
    paths = report.conflicts["path"].str.to_lowercase().n_unique()
    assert paths > 12
    capped = report.to_text(limit=3)
    assert capped.count("failed attempt") == 3
    assert f"... and {paths - 3:,} more paths with conflicts: --limit 0 shows them all" in capped
    assert report.to_text(limit=0).count("failed attempt") == paths
    lines = capped.splitlines()
    assert lines[2] == "Answer:" and any(line.startswith("  Advice") for line in lines[:16])


# ---------------------------------------------------------------------------- filters, times


def test_a_filter_that_matches_nothing_says_what_exists():
    result = run("analyze", UV, "--path", r"*\.tmpZZZ*")
    assert result.exit_code == 0
    first = answer_block(result.output)
    assert first.startswith(
        '  Filters     no conflict matches --path "*\\.tmpZZZ*": the trace has 5 conflicts, by '
        "uv.exe (5), on C:\\Users\\username\\AppData\\Local\\uv\\cache\\.tmp4abXBU\\numpy-1.26.4 (5)"
    )
    assert "No failed file operation" not in result.output
    doc = json.loads(run("analyze", UV, "--path", r"*\.tmpZZZ*", "--json").output)
    assert doc["filters"] == {"path": r"*\.tmpZZZ*", "matched": 0, "total": 5}


def test_a_process_name_matches_with_or_without_exe():
    doc = json.loads(run("analyze", UV, "--process", "UV", "--json").output)
    assert doc["filters"] == {"process": "UV", "matched": 5, "total": 5}
    missing = answer_block(run("analyze", MIXED, "--process", "notepad++").output)
    assert missing.startswith(
        "  Filters     no conflict matches --process notepad++: the trace has"
    )
    assert re.search(r"by Code\.exe \(\d+\), [^ ]+ \(\d+\)", missing)


def test_times_keep_the_traces_100_ns():
    text = run("analyze", PASTED).output
    assert "11:27:28.2285886  uv.exe (11604) SetRenameInformationFile" in text
    assert "open 11:27:27.5824242 -> no close in the capture" in text


def test_a_failed_open_belongs_to_no_handle(corpus):
    from traceaudit import timeline

    events = traceaudit.read_trace(corpus / "procmon-csv" / "monitorapis.csv")
    path = r"C:\shared-Mac-mini-Porter\calc\calc-home\calc1\Debug\my-total.txt"
    frame = timeline(events, path)
    refused = frame.filter(pl.col("result") == "OPLOCK NOT GRANTED")
    assert refused["handle"].to_list() == [None]
    opened = frame.filter((pl.col("operation") == "CreateFile") & (pl.col("result") == "SUCCESS"))
    assert opened["handle"].null_count() == 0
