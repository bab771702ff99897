"""The retry suggestion on simulated traces: fitted on one half of the lock episodes, it
meets its target on the other half (the issue's out-of-sample check, end to end from
traces through the analysis, not from synthetic window lengths)."""

from __future__ import annotations

import polars as pl

from traceaudit import analyze
from traceaudit.policy import RetryPolicy, replay, suggest
from traceaudit.schema import Trace
from traceaudit.simulation.generate import simulate_mix


def ended_episodes():
    """Episodes of a simulated fleet whose locks ended within their trace (the others are
    censored: no budget below the trace's length can be judged on them)."""
    traces = [
        Trace(events=simulate_mix(8000, seed=s).to_frame(), format="simulated") for s in range(8)
    ]
    report = analyze(traces)
    censored = report.blocked.filter(pl.col("end_ms").is_null()).select("episode")
    episodes = report.episodes.join(censored, on="episode", how="anti")
    blocked = report.blocked.join(episodes.select("episode"), on="episode", how="semi")
    return episodes, blocked


def split(episodes: pl.DataFrame, blocked: pl.DataFrame, parity: int):
    part = episodes.filter(pl.col("episode") % 2 == parity)
    return part, blocked.join(part.select("episode"), on="episode", how="semi")


def test_suggestion_fitted_on_half_the_episodes_covers_the_other_half():
    episodes, blocked = ended_episodes()
    assert episodes.height >= 60
    policy = suggest(*split(episodes, blocked, 1), target=0.95)
    assert isinstance(policy, RetryPolicy) and policy.coverage >= 0.95
    outcome = replay(*split(episodes, blocked, 0), policy)
    coverage = outcome["success"].mean()
    # out of sample, on ~40 episodes: within sampling error of the 95 % target
    assert coverage >= 0.85, (coverage, policy.describe())


def test_a_full_target_covers_every_lock_that_ended():
    episodes, blocked = ended_episodes()
    policy = suggest(episodes, blocked, target=1.0)
    assert policy.coverage == 1.0
    assert replay(episodes, blocked, policy)["success"].all()
