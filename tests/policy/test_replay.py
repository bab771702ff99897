"""Replay on hand-built lock timelines, against a naive oracle, and its invariants."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traceaudit.errors import UsageError
from traceaudit.policy import (
    KNOWN_POLICIES,
    KnownPolicy,
    RetryPolicy,
    frames_from_windows,
    known_policy,
    pool,
    replay,
    replay_table,
    window_lengths,
)

# --- story builders -------------------------------------------------------------------


def timeline(*episodes: dict, trace: str = "t1") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Frames from dicts like ``dict(code=5, horizon=5000, blocked=[(0, 120), (300, None)])``."""
    ep_rows, bl_rows = [], []
    for i, e in enumerate(episodes):
        ep_rows.append(
            {
                "episode": i,
                "trace": e.get("trace", trace),
                "error_code": e.get("code", 5),
                "horizon_ms": e.get("horizon", 10_000.0),
            }
        )
        for start, end in e.get("blocked", []):
            bl_rows.append({"episode": i, "start_ms": float(start), "end_ms": end})
    ep = pl.DataFrame(
        ep_rows,
        schema={
            "episode": pl.UInt32,
            "trace": pl.String,
            "error_code": pl.Int64,
            "horizon_ms": pl.Float64,
        },
    )
    bl = pl.DataFrame(
        bl_rows, schema={"episode": pl.UInt32, "start_ms": pl.Float64, "end_ms": pl.Float64}
    )
    return ep, bl


def delays_policy(delays, triggers=(5, 32, 33), final_sleep: bool = False) -> KnownPolicy:
    """A deterministic policy with a literal delay table."""
    return KnownPolicy(
        tool="test",
        version="0",
        source="test",
        triggers=frozenset(triggers),
        kind="table",
        params=(("delays", tuple(float(d) for d in delays)),),
    )


def one(frame: pl.DataFrame, episode: int = 0) -> dict:
    return frame.filter(pl.col("episode") == episode).row(0, named=True)


# --- hand-built timelines -------------------------------------------------------------


def test_schedule_passing_the_last_release_succeeds():
    ep, bl = timeline(dict(blocked=[(0, 100)]), dict(blocked=[(0, 500)]))
    r = replay(ep, bl, delays_policy([200, 400]))  # attempts at 200, 600
    assert one(r, 0)["success"] and one(r, 0)["attempts"] == 2 and one(r, 0)["wait_ms"] == 200
    assert one(r, 1)["success"] and one(r, 1)["attempts"] == 3 and one(r, 1)["wait_ms"] == 600


def test_schedule_stopping_short_fails_with_whole_wait():
    ep, bl = timeline(dict(blocked=[(0, 1000)]))
    r = one(replay(ep, bl, delays_policy([100, 200, 300])))
    assert r["success"] is False
    assert r["attempts"] == 4 and r["wait_ms"] == 600 and r["censored"] is False


def test_release_exactly_at_attempt_time_succeeds():
    ep, bl = timeline(dict(blocked=[(0, 30)]))  # [0, 30): free at 30
    r = one(replay(ep, bl, delays_policy([10, 20])))
    assert r["success"] and r["wait_ms"] == 30


def test_blocker_opening_after_the_failure_catches_a_later_attempt():
    # free between 50 and 80, blocked again by a second process from 80 to 1000
    ep, bl = timeline(dict(blocked=[(0, 50), (80, 1000)]))
    r = one(replay(ep, bl, delays_policy([40, 60, 200])))  # 40 blocked, 100 blocked, 300 blocked
    assert r["success"] is False and r["attempts"] == 4
    r = one(replay(ep, bl, delays_policy([40, 20, 200])))  # 60 is in the gap
    assert r["success"] and r["wait_ms"] == 60 and r["attempts"] == 3


def test_overlapping_intervals_are_a_union():
    ep, bl = timeline(dict(blocked=[(0, 100), (50, 300), (300, 400)]))
    r = one(replay(ep, bl, delays_policy([150, 150, 150])))  # 150, 300, 450
    assert r["success"] and r["wait_ms"] == 450
    assert one(window_lengths(ep, bl))["window_ms"] == 400


def test_policy_not_triggered_by_the_code_gets_no_retries():
    ep, bl = timeline(dict(code=5, blocked=[(0, 100)]), dict(code=32, blocked=[(0, 100)]))
    r = replay(ep, bl, known_policy("MSBuild Copy"))
    assert one(r, 0)["triggered"] is False
    assert one(r, 0)["success"] is False
    assert one(r, 0)["attempts"] == 1 and one(r, 0)["wait_ms"] == 0
    assert one(r, 1)["triggered"] and one(r, 1)["success"] and one(r, 1)["wait_ms"] == 1000


def test_uv_misses_sharing_violations_rimraf_misses_access_denied():
    ep, bl = timeline(dict(code=32, blocked=[(0, 20)]), dict(code=5, blocked=[(0, 20)]))
    uv = replay(ep, bl, known_policy("uv"))
    assert uv["success"].to_list() == [False, True]
    rimraf = replay(ep, bl, known_policy("rimraf"))
    assert rimraf["success"].to_list() == [True, False]


def test_censored_when_schedule_goes_past_horizon_while_still_blocked():
    ep, bl = timeline(
        dict(horizon=300, blocked=[(0, None)]),  # open at trace end
        dict(horizon=300, blocked=[(0, 5000)]),  # ends after the horizon: unknowable
        dict(horizon=300, blocked=[(0, 200)]),  # released within the trace
        dict(horizon=300, blocked=[(0, 250)]),  # free at the horizon, first try after it
    )
    r = replay(ep, bl, delays_policy([100, 400]))  # attempts at 100, 500
    assert r["censored"].to_list() == [True, True, False, False]
    assert r["success"].to_list() == [None, None, True, True]
    assert r["wait_ms"].to_list()[:2] == [None, None]
    # a schedule that ends before the horizon: a known failure, not censored
    r = replay(ep, bl, delays_policy([100, 100]))
    assert r["censored"].to_list() == [False, False, False, False]
    assert r["success"].to_list() == [False, False, True, False]
    table = replay_table(ep, bl, [delays_policy([100, 400])])
    assert table["censored"].item() == 2
    assert table["success_rate"].item() == 1.0  # over the two decided episodes


def test_episode_without_intervals_succeeds_on_first_retry():
    ep, bl = timeline(dict(blocked=[]))
    r = one(replay(ep, bl, delays_policy([0, 10])))
    assert r["success"] and r["attempts"] == 2 and r["wait_ms"] == 0
    r = one(replay(ep, bl, known_policy("Node.js fs.rm")))
    assert r["success"] is False and r["attempts"] == 1


def test_dotnet_final_sleep_counts_in_the_wait_when_it_gives_up():
    ep, bl = timeline(dict(blocked=[(0, None)], horizon=60_000))
    r = one(replay(ep, bl, known_policy(".NET SDK")))
    assert r["success"] is False and r["attempts"] == 10
    assert r["wait_ms"] == pytest.approx(10_230)


def test_immediate_retry_at_time_zero_is_still_blocked():
    ep, bl = timeline(dict(blocked=[(0, 5)]))
    r = one(replay(ep, bl, known_policy("Git for Windows")))  # 0, 1, 11, ...
    assert r["success"] and r["wait_ms"] == 11 and r["attempts"] == 4


def test_jittered_policy_is_averaged_over_draws_and_deterministic():
    ep, bl = frames_from_windows([50, 500, 1500, 1990])
    go = known_policy("Go cmd/go robustio")
    a = replay(ep, bl, go, draws=100, seed=3)
    b = replay(ep, bl, go, draws=100, seed=3)
    assert a.equals(b)
    assert a["draws"].to_list() == [100] * 4
    assert a["p_success"][0] == 1.0
    assert 0 < a["p_success"][3] < 1  # 1990 ms: only draws that reach it
    per = replay(ep, bl, go, draws=100, seed=3, per_draw=True)
    assert per.height == 400 and per["draw"].max() == 99
    assert per.group_by("episode").agg(pl.col("success").mean()).sort("episode")[
        "success"
    ].to_list() == pytest.approx(a["p_success"].to_list())


def test_replay_table_columns_and_values():
    ep, bl = frames_from_windows([15, 60, 400, 2500, 9000])
    t = replay_table(ep, bl)
    assert t.columns == [
        "tool",
        "version",
        "triggers",
        "episodes",
        "triggered",
        "success_rate",
        "median_wait_ms",
        "worst_wait_ms",
        "mean_attempts",
        "censored",
    ]
    assert t.height == len(KNOWN_POLICIES)
    uv = t.filter(pl.col("tool") == "uv").row(0, named=True)
    assert uv["triggers"] == "5" and uv["success_rate"] == 1.0  # 9000 < 10230
    # uv tries at 10, 30, 70, 150, 310, 630, 1270, 2550, 5110, 10230 ms
    assert uv["median_wait_ms"] == 630 and uv["worst_wait_ms"] == 10_230
    assert uv["mean_attempts"] == pytest.approx((3 + 4 + 7 + 9 + 11) / 5)
    git = t.filter(pl.col("tool") == "Git for Windows").row(0, named=True)
    # Git tries at 0, 1, 11, 31, 71 ms: catches 15 and 60
    assert git["success_rate"] == pytest.approx(2 / 5) and git["triggers"] == "5,32"


def test_replay_table_by_trace_and_pool():
    a = frames_from_windows([10, 20, 30], trace="a")
    b = frames_from_windows([5000, 6000], trace="b")
    ep, bl = pool(a, b)
    assert ep["episode"].to_list() == [0, 1, 2, 3, 4]
    assert ep["source_episode"].to_list() == [0, 1, 2, 0, 1]
    t = replay_table(ep, bl, [known_policy("Git for Windows")], by_trace=True)
    assert t.select("trace", "episodes", "success_rate").rows() == [("a", 3, 1.0), ("b", 2, 0.0)]
    r = replay(ep, bl, known_policy("uv"))
    assert set(r["trace"]) == {"a", "b"}


def test_pool_relinks_retry_chains():
    ep, bl = frames_from_windows([10, 20], trace="a")
    chains = pl.DataFrame({"chain": [0], "trace": ["a"], "episode": [1]})
    ep2, bl2 = frames_from_windows([30], trace="b")
    chains2 = pl.DataFrame({"chain": [0], "trace": ["b"], "episode": [0]})
    _, _, ch = pool((ep, bl, chains), (ep2, bl2, chains2))
    assert ch["episode"].to_list() == [1, 2] and ch["chain"].to_list() == [0, 1]


def test_error_pool_same_trace_twice():
    a = frames_from_windows([10], trace="same")
    with pytest.raises(UsageError, match="pool\\(\\): trace 'same' appears in parts 0 and 1"):
        pool(a, a)


def test_error_missing_columns():
    ep, bl = frames_from_windows([10])
    with pytest.raises(
        UsageError,
        match=r"^episodes frame: missing columns 'horizon_ms' \(found: 'episode', 'trace', "
        r"'error_code'\)\. Build it with the conflict analysis or frames_from_windows\(\)\.$",
    ):
        replay(ep.drop("horizon_ms"), bl, known_policy("uv"))


def test_error_duplicate_episode_ids():
    ep, bl = frames_from_windows([10, 20])
    with pytest.raises(UsageError, match=r"episode ids must be unique; repeated: \[0\]"):
        replay(pl.concat([ep, ep.head(1)]), bl, known_policy("uv"))


def test_error_blocked_interval_for_unknown_episode():
    ep, bl = frames_from_windows([10, 20])
    with pytest.raises(UsageError, match=r"intervals for 1 episode missing .*\[1\]"):
        replay(ep.head(1), bl, known_policy("uv"))


def test_suggested_retry_policy_replays_like_its_nominal_delays():
    ep, bl = frames_from_windows([5, 25, 75, 1000])
    p = RetryPolicy(initial_delay_ms=10, multiplier=2, max_delay_ms=40, max_attempts=5)
    assert p.nominal_delays().tolist() == [10, 20, 40, 40]
    r = replay(ep, bl, p)
    assert r["wait_ms"].to_list() == [10, 30, 110, 110]
    assert r["success"].to_list() == [True, True, True, False]


# --- the engine against a naive oracle ------------------------------------------------


def oracle(intervals, horizon, delays):
    """Outcome by brute force, straight from the contract: (state, attempts, wait)."""
    intervals = [(s, math.inf if e is None else e) for s, e in intervals]

    def blocked(t):
        return any(s <= t < e for s, e in intervals)

    t = 0.0
    for k, d in enumerate(delays):
        t += d
        if t > horizon:
            if blocked(horizon):
                return "censored", None, None
            return "success", k + 2, t
        if not blocked(t):
            return "success", k + 2, t
    return "fail", len(delays) + 1, float(sum(delays))


interval = st.tuples(
    st.integers(0, 400).map(float),
    st.one_of(st.none(), st.integers(1, 400).map(float)),
).map(lambda se: (se[0], None if se[1] is None else se[0] + se[1]))
episode_st = st.fixed_dictionaries(
    {
        "blocked": st.lists(interval, max_size=4),
        "horizon": st.integers(20, 1200).map(float),
    }
)
delays_st = st.lists(st.integers(0, 250).map(float), max_size=12)


@settings(max_examples=150, deadline=None)
@given(episodes=st.lists(episode_st, min_size=1, max_size=6), delays=delays_st)
def test_engine_matches_naive_oracle(episodes, delays):
    ep, bl = timeline(*episodes)
    r = replay(ep, bl, delays_policy(delays))
    for i, e in enumerate(episodes):
        state, attempts, wait = oracle(e["blocked"], e["horizon"], delays)
        row = one(r, i)
        assert row["censored"] is (state == "censored")
        if state != "censored":
            assert row["success"] is (state == "success")
            assert row["attempts"] == attempts
            assert row["wait_ms"] == pytest.approx(wait)


@settings(max_examples=100, deadline=None)
@given(
    episodes=st.lists(episode_st, min_size=1, max_size=6),
    delays=delays_st,
    more=st.lists(st.integers(0, 250).map(float), min_size=1, max_size=6),
)
def test_success_is_monotone_in_budget(episodes, delays, more):
    ep, bl = timeline(*episodes)
    short = replay(ep, bl, delays_policy(delays))
    longer = replay(ep, bl, delays_policy(delays + more))
    # every episode that succeeds with the short schedule succeeds with the longer one
    assert not (short["success"].fill_null(False) & ~longer["success"].fill_null(False)).any()
    assert longer["success"].fill_null(False).sum() >= short["success"].fill_null(False).sum()


def test_engine_scales_to_many_episodes():
    rng = np.random.default_rng(0)
    ep, bl = frames_from_windows(rng.lognormal(5, 1.5, 20_000), horizon_ms=30_000)
    t = replay_table(ep, bl, draws=50)
    assert t["episodes"].to_list() == [20_000] * len(KNOWN_POLICIES)
