"""The analysis against the simulator's ground truth: exact verdicts, blockers, mapped
sections and hold times.

The simulator decides who holds what from its own model, independently of the analysis
code, and writes the answer key. Here every family, over several seeds, is analysed from
its event frame and compared conflict by conflict.
"""

from __future__ import annotations

import polars as pl
import pytest

from traceaudit.pipeline import analyze
from traceaudit.schema import Trace
from traceaudit.simulation.generate import FAMILY_NAMES, simulate, simulate_mix

SEEDS = range(4)


def found(report) -> dict[int, dict]:
    """Conflicts by source row, in the truth's shape."""
    out = {}
    for row in report.conflicts.iter_rows(named=True):
        out[row["row"]] = {
            "verdict": row["verdict"],
            "blockers": sorted(b["handle"] for b in row["blockers"]),
            "sections": sorted(s["row"] for s in row["sections"]),
            "remaining_ms": row["remaining_ms"],
        }
    return out


def expected(truth: dict, handles: pl.DataFrame) -> dict[int, dict]:
    by_open = dict(zip(handles["open_row"].to_list(), handles["handle"].to_list(), strict=True))
    out = {}
    for c in truth["conflicts"]:
        out[c["row"]] = {
            "verdict": c["verdict"],
            "blockers": sorted(by_open[b["open_row"]] for b in c["blockers"]),
            "sections": sorted(s["row"] for s in c.get("sections", [])),
            "remaining_ms": c["remaining_ms"],
        }
    return out


def assert_matches_truth(sim) -> None:
    report = analyze(Trace(events=sim.to_frame(), format="simulated"))
    got, want = found(report), expected(sim.truth, report.handles.drop_nulls("open_row"))
    assert sorted(got) == sorted(want)
    for row, truth in want.items():
        assert got[row]["verdict"] == truth["verdict"], row
        assert got[row]["blockers"] == truth["blockers"], row
        assert got[row]["sections"] == truth["sections"], row
        if truth["remaining_ms"] is None:
            assert got[row]["remaining_ms"] is None, row
        else:
            assert got[row]["remaining_ms"] == pytest.approx(truth["remaining_ms"], abs=1e-4), row
    chains = report.chains.filter(pl.col("attempts") > 0)
    want_chains = {
        (c["first_row"], c["last_row"], c["attempts"], c["succeeded"])
        for c in sim.truth["retry_chains"]
    }
    got_chains = set(chains.select("first_row", "last_row", "attempts", "succeeded").iter_rows())
    assert got_chains == want_chains
    overall = report.windows.row(0, named=True)
    assert (overall["count"], overall["censored"]) == (
        sim.truth["windows"]["count"],
        sim.truth["windows"]["censored"],
    )


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("seed", SEEDS)
def test_family_matches_ground_truth(family, seed):
    assert_matches_truth(simulate(family, seed=seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_mixed_trace_matches_ground_truth(seed):
    assert_matches_truth(simulate_mix(20_000, seed=seed))
