"""Per-file timelines: every event on a path and below it, with the handle it went through."""

from __future__ import annotations

import polars as pl

from builders import TMP, Story, uv_with_backoff
from traceaudit.analysis.timeline import timeline
from traceaudit.pipeline import analyze
from traceaudit.schema import Trace


def report_of(story: Story):
    return analyze(Trace(events=story.events(), format="test"))


def test_timeline_shows_everything_below_a_directory_with_handles():
    story = uv_with_backoff(40)
    frame = timeline(story.events(), TMP.upper())
    assert frame["path"].str.to_lowercase().str.starts_with(TMP.lower()).all()
    assert "ReadFile" not in frame["operation"].to_list()
    renames = frame.filter(pl.col("operation") == "SetRenameInformationFile")
    assert renames["handle"].null_count() == 0
    scanner = frame.filter(pl.col("process") == "MsMpEng.exe")
    assert scanner["handle"].n_unique() == 1 and scanner.height == 2
