"""Retry chains: the same process trying the same operation on the same path again, and
what an observed retry tells the episodes."""

from __future__ import annotations

import polars as pl

from builders import Story, uv_with_backoff
from traceaudit.pipeline import analyze
from traceaudit.schema import Trace


def report_of(story: Story):
    return analyze(Trace(events=story.events(), format="test"))


def test_retry_chain_counts_attempts_delays_and_success():
    report = report_of(uv_with_backoff(100))
    chain = report.chains.row(0, named=True)
    assert chain["attempts"] == 5 and chain["failures"] == 4 and chain["succeeded"]
    assert chain["delays_ms"] == [10.0, 20.0, 40.0, 80.0]
    assert chain["first_conflict"] == 1


def test_a_chain_that_gives_up_is_not_succeeded():
    report = report_of(uv_with_backoff(60_000))
    chain = report.chains.row(0, named=True)
    assert chain["attempts"] == 11 and not chain["succeeded"]
    assert round(chain["total_ms"], 3) == 10230.0


def test_an_observed_successful_retry_ends_the_episode_for_the_replay():
    # The model says calc.exe's exclusive handle blocks the reader until 57 s, but the
    # reader's retry of the very same open 0.1 ms later succeeded: the observation wins in
    # the retry advice (the handle's close was not where the model put it).
    txt = r"C:\calc\my-total.txt"
    story = (
        Story()
        .open_(0, 1, txt, access="w", share="", process="calc.exe")
        .fail_open(10, 2, txt, access="r", share="rwd", process="reader.exe")
        .open_(10.1, 2, txt, access="r", share="rwd")
        .close(11, 2, txt)
        .close(57_000, 1, txt)
    )
    report = report_of(story)
    assert report.conflicts["remaining_ms"].to_list() == [56_990.0]
    assert report.blocked.select("start_ms", "end_ms").rows() == [(0.0, 0.1)]
    assert report.policy.total_budget_ms < 10


def test_an_oplock_probes_fallback_open_is_neither_a_retry_nor_an_episode():
    # Defender's open "requiring an oplock" is refused while the writer holds the file; it
    # opens again at once without the oplock. That fallback is a different request: it says
    # nothing about when the probe could have succeeded, and the probe is no lock episode.
    txt = r"C:\calc\my-total.txt"
    story = (
        Story()
        .open_(0, 1, txt, access="w", share="rw", process="calc.exe")
        .fail_open(
            10, 2, txt, access="a", share="rwd", result="OPLOCK NOT GRANTED", process="MsMpEng.exe"
        )
        .open_(10.1, 2, txt, access="a", share="rwd")
        .close(11, 2, txt)
        .close(57_000, 1, txt)
    )
    events = story.events().with_columns(
        create_options=pl.when(pl.col("result") == "OPLOCK NOT GRANTED")
        .then(pl.lit(0x00010040, dtype=pl.UInt32))
        .otherwise(pl.col("create_options"))
    )
    report = analyze(Trace(events=events, format="test"))
    assert report.conflicts["verdict"].to_list() == ["oplock-probe"]
    assert report.chains["same_request"].to_list() == [False]
    assert report.episodes.is_empty() and report.policy is None
    assert report.windows.row(0, named=True)["count"] == 0
    assert not report.blocked_by_other()
