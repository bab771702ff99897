"""What the capture can show decides what the verdicts may say.

Simulated traces come with ground truth; here parts of them are removed the way a capture
filter or a paste removes them (every CloseFile, one process's CloseFiles, all but one
thread), and the analysis must then stop short of naming holders it can no longer see.
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import DLL, TMP, Story
from locations import SAMPLES
from traceaudit.analysis.completeness import capture_completeness
from traceaudit.analysis.conflicts import BLOCKED_VERDICTS
from traceaudit.pipeline import analyze
from traceaudit.schema import Trace
from traceaudit.simulation.generate import FAMILY_NAMES, simulate, simulate_mix

NO_HOLDER = ("no-holder-permission", "no-holder-filtered")
# Gaps that change who may be named a holder (the others are warnings only).
ATTRIBUTION_GAPS = {
    "no-opens-or-closes",
    "no-closes",
    "process-without-closes",
    "pasted-excerpt",
    "io-without-open",
    "single-thread",
}


def report_of(events: pl.DataFrame, fmt: str = "simulated"):
    return analyze(Trace(events=events, format=fmt))


def verdicts(report) -> dict[int, str]:
    return dict(report.conflicts.select("row", "verdict").iter_rows())


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_complete_simulated_capture_has_no_attribution_gap(family):
    for seed in range(3):
        report = report_of(simulate(family, seed=seed).to_frame())
        gaps = set(report.to_dict()["trace"]["completeness"]["gaps"])
        assert not gaps & ATTRIBUTION_GAPS, (family, seed, gaps)
        assert report.candidates.is_empty()


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_without_any_closefile_no_process_is_its_own_or_anothers_blocker(family):
    for seed in range(3):
        sim = simulate(family, seed=seed)
        events = sim.to_frame().filter(pl.col("operation") != "CloseFile")
        report = report_of(events)
        assert not set(report.conflicts["verdict"]) & set(BLOCKED_VERDICTS), (family, seed)
        assert report.windows.row(0, named=True)["count"] == 0
        assert report.policy is None and report.episodes.is_empty()
        assert "no-closes" in report.to_dict()["trace"]["completeness"]["gaps"]
        # every handle the truth names is still shown, as a candidate
        by_row = {
            r["row"]: {c["open_row"] for c in r["candidates"]}
            for r in report.conflicts.with_columns(
                candidates=pl.col("candidates").list.eval(
                    pl.struct(open_row=pl.element().struct.field("handle"))
                )
            ).iter_rows(named=True)
        }
        handle_of_open = dict(report.handles.select("open_row", "handle").iter_rows())
        for truth in sim.truth["conflicts"]:
            if truth["verdict"].startswith("blocked-by-"):
                wanted = {handle_of_open[b["open_row"]] for b in truth["blockers"]}
                assert wanted <= by_row[truth["row"]], (family, seed, truth["row"])


def _without_closes_of(events: pl.DataFrame, pid: int) -> pl.DataFrame:
    return events.filter(~((pl.col("operation") == "CloseFile") & (pl.col("pid") == pid)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.sampled_from(FAMILY_NAMES),
    seed=st.integers(0, 50),
    pick=st.integers(0, 10_000),
)
def test_removing_a_process_closes_never_turns_no_holder_into_blocked(family, seed, pick):
    events = simulate(family, seed=seed).to_frame()
    before = verdicts(report_of(events))
    closers = events.filter(pl.col("operation") == "CloseFile")["pid"].unique().sort()
    pid = int(closers[pick % len(closers)])
    after = verdicts(report_of(_without_closes_of(events, pid)))
    assert set(after) == set(before)
    for row, verdict in before.items():
        if verdict in NO_HOLDER:
            assert after[row] not in BLOCKED_VERDICTS, (family, seed, pid, row)


@pytest.mark.parametrize("seed", [0, 1])
def test_removing_each_process_closes_in_a_mixed_trace(seed):
    events = simulate_mix(6_000, seed=seed).to_frame()
    before = verdicts(report_of(events))
    unexplained = {row for row, v in before.items() if v in NO_HOLDER}
    assert unexplained
    for pid in events.filter(pl.col("operation") == "CloseFile")["pid"].unique().to_list():
        after = verdicts(report_of(_without_closes_of(events, pid)))
        assert not {after[row] for row in unexplained} & set(BLOCKED_VERDICTS), pid


def test_a_process_without_closes_holds_only_candidates():
    # MsMpEng's open of a DLL has no close, and MsMpEng closes nothing else in the capture:
    # its CloseFiles may simply not have been captured.
    story = Story().open_(0, 20, DLL, process="MsMpEng.exe")
    story.open_(1, 10, TMP, access="ad", process="uv.exe")
    story.rename(2, 10, TMP, r"C:\c\x").close(3, 10, TMP)
    report = report_of(story.events(), "test")
    assert report.conflicts["verdict"].to_list() == ["incomplete-capture"]
    assert report.candidates["process"].to_list() == ["MsMpEng.exe"]
    assert report.blockers.is_empty() and not report.blocked_by_other()
    gaps = report.to_dict()["trace"]["completeness"]
    assert gaps["processes_without_closes"] == [{"process": "MsMpEng.exe", "pid": 20, "opens": 1}]
    # ... while a capture that shows MsMpEng closing another file shows the handle held
    story.elsewhere(0.5, 20)
    held = report_of(story.events(), "test")
    assert held.conflicts["verdict"].to_list() == ["blocked-by-other-process"]
    assert held.conflicts["censored"].to_list() == [True]


def test_a_one_thread_capture_holds_only_candidates():
    story = Story().open_(0, 10, DLL, process="uv.exe").close(0.5, 10, DLL)
    story.open_(1, 10, DLL).open_(2, 10, TMP, access="ad").rename(3, 10, TMP, r"C:\c\x")
    story.close(4, 10, TMP)
    events = story.events().with_columns(tid=pl.lit(4242, dtype=pl.Int64))
    report = report_of(events, "test")
    assert report.conflicts["verdict"].to_list() == ["incomplete-capture"]
    completeness = report.to_dict()["trace"]["completeness"]
    assert completeness["single_thread"] == 4242 and "single-thread" in completeness["gaps"]
    # the same rows with several threads: the process's own handle, never closed
    threads = story.events().with_columns(tid=pl.col("row").cast(pl.Int64))
    assert report_of(threads, "test").conflicts["verdict"].to_list() == ["blocked-by-own-handle"]


def test_an_excerpt_is_recognised_without_the_paste_format():
    # The uv rows saved as a CSV would no longer say "pasted": the I/O on files that are
    # never opened or closed in them still gives the excerpt away.

    from traceaudit import read_trace

    pasted = SAMPLES / "uv-issue-pasted.tsv"
    report = report_of(read_trace(pasted), "procmon-csv")
    completeness = report.to_dict()["trace"]["completeness"]
    assert "io-without-open" in completeness["gaps"] and not completeness["pasted"]
    assert report.conflicts["verdict"].to_list() == ["incomplete-capture"]
    assert report.warnings[0].startswith(
        "<memory>: 11 of the 16 files read or written in this trace (e.g. WriteFile "
    )


def test_completeness_counts_what_the_capture_holds():
    story = Story().open_(0, 1, r"C:\a", process="a.exe").close(1, 1, r"C:\a")
    story.op(2, 1, "ReadFile", r"C:\b").op(3, 2, "WriteFile", r"C:\c", process="b.exe")
    completeness = capture_completeness(story.events(), name="t", format="test")
    assert (completeness.opens, completeness.closes, completeness.io_handles) == (1, 1, 2)
    assert completeness.io_without_open == 2 and not completeness.io_excerpt  # too few
    visibility = dict(completeness.visibility.select("pid", "closes_visible").iter_rows())
    assert visibility == {1: True, 2: False}
