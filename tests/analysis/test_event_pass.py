"""One pass that keeps only what the analysis needs gives what the whole trace gives.

A big trace is read in batches, and the analysis keeps the failures, their retries and the
handles and sections on the failing files, counting everything else
(:mod:`traceaudit.analysis.event_pass`, :mod:`traceaudit.analysis.tally`). Here every stage
is also run on the whole event frame, the way the analysis did before it streamed, and the
two must agree: verdicts, blockers and their intervals, retry chains, completeness. And
the answer may not depend on where the trace was cut into batches, nor on whether the
handle events went to disk.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import TMP, Story, uv_with_backoff
from locations import SAMPLES
from traceaudit.analysis import event_pass as event_pass_module
from traceaudit.analysis.completeness import (
    completeness_of,
    ended_during_failure,
    explain_no_holders,
)
from traceaudit.analysis.conflicts import blocking_handles, conflicts, lock_failures
from traceaudit.analysis.event_pass import EventPass
from traceaudit.analysis.handles import handles
from traceaudit.analysis.retries import retry_chains
from traceaudit.analysis.sections import section_holders, sections
from traceaudit.analysis.spill import FrameSpill
from traceaudit.analysis.tally import EventTally
from traceaudit.formats import load_trace
from traceaudit.pipeline import analyze, analyze_trace
from traceaudit.schema import Trace
from traceaudit.simulation.generate import simulate, simulate_mix


def whole_trace_stages(trace: Trace) -> dict:
    """Every stage run on the whole event frame (what the analysis did before it streamed)."""
    events = trace.events
    all_handles = handles(events)
    completeness = completeness_of(
        EventTally.of(events), name=trace.name, format=trace.format, truncated=trace.truncated
    )
    failures = lock_failures(events)
    blocking = blocking_handles(failures, all_handles, completeness.visibility)
    holders = section_holders(failures, sections(events))
    found = conflicts(
        failures, blocking, single_process=events["pid"].n_unique() <= 1, sections=holders
    )
    found = explain_no_holders(found, completeness)
    chains = retry_chains(events, found)
    ended = ended_during_failure(chains, events["time"].max())
    return {
        "handles": all_handles,
        "blocking": blocking,
        "conflicts": found,
        "chains": chains,
        "completeness": dataclasses.replace(completeness, ended_during_failure=ended).to_dict(),
    }


def without_handle_ids(frame: pl.DataFrame) -> pl.DataFrame:
    """Handle ids number the handles a run looked at; compare handles by their rows."""
    out = frame.drop("handle", strict=False)
    for column in ("blockers", "candidates"):
        if column in out.columns:
            fields = [
                f.name
                for f in out.schema[column].inner.fields
                if f.name != "handle"  # type: ignore[union-attr]
            ]
            out = out.with_columns(
                pl.col(column).list.eval(pl.struct(pl.element().struct.field(*fields)))
            )
    return out


def assert_same_as_whole_trace(trace: Trace, parts) -> None:
    whole = whole_trace_stages(trace)
    assert without_handle_ids(parts.conflicts).equals(without_handle_ids(whole["conflicts"]))
    assert without_handle_ids(parts.blocking).equals(without_handle_ids(whole["blocking"]))
    assert parts.chains.equals(whole["chains"])
    assert parts.summary.completeness.to_dict() == whole["completeness"]
    # The handles kept are those of the whole trace on the failing files, in the same order.
    rows = whole["handles"].join(
        parts.handles.select("open_row", "close_row"),
        on=["open_row", "close_row"],
        how="semi",
        nulls_equal=True,
    )
    assert without_handle_ids(parts.handles).equals(without_handle_ids(rows))
    assert parts.summary.events == trace.events.height


@pytest.mark.parametrize("family", ["extract-rename", "mapped-section", "oplock-probe"])
def test_a_scenario_gives_what_the_whole_trace_gives(family):
    for seed in range(3):
        trace = Trace(events=simulate(family, seed=seed).to_frame(), format="simulated")
        assert_same_as_whole_trace(trace, analyze_trace(trace))


def test_a_mix_of_every_scenario_gives_what_the_whole_trace_gives():
    trace = Trace(events=simulate_mix(20_000, seed=3).to_frame(), format="simulated")
    parts = analyze_trace(trace)
    assert parts.conflicts.height > 50
    assert_same_as_whole_trace(trace, parts)
    # and it kept a small part of the trace
    assert parts.events.height < trace.events.height / 3


@pytest.mark.parametrize(
    "name",
    [
        "procmon-csv/monitorapis.csv",
        "procmon-csv/lotl-detection-renames.csv",
        "procmon-pml/ron-crash-a.pml",
    ],
)
def test_a_real_capture_gives_what_the_whole_trace_gives(corpus, name):
    trace = load_trace(corpus / name)
    assert_same_as_whole_trace(trace, analyze_trace(trace))


def test_the_pasted_uv_rows_give_what_the_whole_trace_gives():
    trace = load_trace(SAMPLES / "uv-issue-pasted.tsv")
    assert_same_as_whole_trace(trace, analyze_trace(trace))


# ---------------------------------------------------------------- batches and the disk


def test_the_report_does_not_depend_on_the_batch_size(tmp_path):
    path = tmp_path / "mix.csv"
    simulate_mix(3_000, seed=11).write_csv(path)
    whole = analyze(path).to_dict()
    assert whole["conflicts"]
    for rows in (11, 499, 2_999):
        assert analyze(path, batch_rows=rows).to_dict() == whole, rows


def test_one_event_per_batch_gives_the_same_report(tmp_path):
    path = tmp_path / "mix.csv"
    simulate_mix(200, seed=5).write_csv(path)
    whole = analyze(path).to_dict()
    assert whole["conflicts"]
    assert analyze(path, batch_rows=1).to_dict() == whole


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 3_000), min_size=1, max_size=6))
def test_the_counts_do_not_depend_on_where_the_trace_is_cut(seed, cuts):
    """Opens, closes, handles open at the edges, I/O without an open: any cuts, same counts."""
    events = simulate_mix(3_000, seed=seed).to_frame()
    events = events.filter(pl.col("row") % 7 != 0)  # closes and opens go missing too
    whole = EventTally.of(events)
    cut = EventTally()
    for start, stop in _slices(events.height, cuts):
        cut.add(events.slice(start, stop - start))
    assert (
        completeness_of(cut, name="t", format="x").to_dict()
        == completeness_of(whole, name="t", format="x").to_dict()
    )
    edges = handles(events)
    assert cut.orphan_closes == int(edges["open_before_capture"].sum())
    assert cut.handles_open_at_end == int(edges["open_at_end"].sum())
    assert (cut.events, cut.span(), cut.pids) == (whole.events, whole.span(), whole.pids)


def _slices(height: int, cuts: list[int]) -> list[tuple[int, int]]:
    points = sorted({0, height, *(c % (height + 1) for c in cuts)})
    return list(zip(points, points[1:], strict=False))


def test_handle_events_on_disk_give_the_same_answer(monkeypatch):
    trace = Trace(events=simulate_mix(8_000, seed=5).to_frame(), format="simulated")
    in_memory = analyze(trace).to_dict()
    folders: list[Path] = []
    real_spill = FrameSpill._spill

    def spill_and_note(self):
        real_spill(self)
        folders.append(self._folder)

    monkeypatch.setattr(FrameSpill, "_spill", spill_and_note)
    monkeypatch.setattr(event_pass_module, "MEMORY_LIMIT", 10_000)
    assert analyze(trace).to_dict() == in_memory
    assert folders, "nothing was written to disk"
    assert not any(os.path.exists(f) for f in folders), "the spill folder was left behind"


def test_a_retry_a_batch_before_its_failure_is_kept():
    """Events from different processors can reach the trace a little out of time order:
    the retry's row comes before the failure's, and a batch boundary falls between them."""
    path = TMP + r"\f.txt"
    story = (
        Story()
        .open_(0.0, 10, path, access="rw", share="", process="app.exe")
        .fail_open(1.0, 20, path, process="tool.exe")
        .close(2.0, 10, path)
        .fail_open(3.0, 20, path, result="SUCCESS")
    )
    events = story.events()
    retry_row = events.filter(pl.col("pid") == 20).sort("time")["row"][-1]
    # the retry first, then the failure: rows out of time order
    swapped = events.with_columns(
        row=pl.when(pl.col("row") == retry_row).then(0).otherwise(pl.col("row") + 1).cast(pl.UInt32)
    ).sort("row")
    one = EventPass()
    one.add(swapped)
    split = EventPass()
    for start in range(swapped.height):
        split.add(swapped.slice(start, 1))
    kept = split.kept()
    assert kept.equals(one.kept())
    chains = retry_chains(kept, lock_failures(kept))
    assert chains["attempts"].to_list() == [2]


def test_kept_hands_the_events_over_once() -> None:
    # The pass forgets what it kept once it has handed it over: no second copy in memory.
    story = uv_with_backoff(release_ms=100)
    with EventPass() as event_pass:
        event_pass.add(story.events())
        first = event_pass.kept()
        assert first.height > 0
        assert event_pass.kept().is_empty()
