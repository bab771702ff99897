"""Hold times: each failure until the handles present at that instant closed, and the table."""

from __future__ import annotations

from builders import DLL, TMP, Story, uv_with_backoff
from traceaudit.pipeline import analyze
from traceaudit.schema import Trace


def report_of(story: Story):
    return analyze(Trace(events=story.events(), format="test"))


def test_every_failed_attempt_is_its_own_conflict_with_its_own_window():
    report = report_of(uv_with_backoff(100))
    assert report.conflicts["remaining_ms"].round(6).to_list() == [94.9, 84.9, 64.9, 24.9]


def test_window_table_has_overall_then_per_blocker_rows():
    table = report_of(uv_with_backoff(100)).windows
    assert table["blocker"].to_list() == ["all", "MsMpEng.exe"]
    overall = table.row(0, named=True)
    assert overall["count"] == 4 and overall["censored"] == 0
    assert round(overall["max_ms"], 6) == 94.9
    assert round(overall["p50_ms"], 6) == 74.9


def test_censored_windows_are_counted_not_dropped():
    story = (
        Story()
        .open_(0, 20, DLL, process="MsMpEng.exe")
        .elsewhere(0.5, 20)
        .open_(1, 10, TMP, access="ad", process="uv.exe")
    )
    story.rename(2, 10, TMP, r"C:\c\x").close(3, 10, TMP)
    table = report_of(story).windows
    assert table.row(0, named=True)["censored"] == 1
    assert table.row(0, named=True)["p50_ms"] is None
