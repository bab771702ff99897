"""suggest(): out-of-sample coverage, budgets, honesty about small samples, tail fits."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from traceaudit.errors import UsageError
from traceaudit.policy import (
    RetryPolicy,
    fit_tail,
    frames_from_windows,
    pool,
    replay,
    suggest,
)


def lognormal_windows(n: int, seed: int, median_ms: float = 200.0, sigma: float = 1.0):
    return np.random.default_rng(seed).lognormal(np.log(median_ms), sigma, n)


def coverage(policy: RetryPolicy, windows, **kw) -> float:
    ep, bl = frames_from_windows(windows, **kw)
    return float(replay(ep, bl, policy)["success"].fill_null(False).mean())


@pytest.mark.parametrize(("seed", "target"), [(1, 0.99), (2, 0.99), (3, 0.95), (4, 0.9)])
def test_fitted_on_one_half_meets_target_on_the_other(seed: int, target: float):
    w = lognormal_windows(800, seed)
    train, test = w[:400], w[400:]
    p = suggest(*frames_from_windows(train), target=target)
    assert p.coverage >= target
    assert coverage(p, train) == pytest.approx(p.coverage)
    assert coverage(p, test) >= target - 0.02


def test_max_wait_is_never_exceeded_and_reports_best_coverage():
    w = lognormal_windows(400, 5)
    ep, bl = frames_from_windows(w)
    for budget in (50, 300, 1000, 2500):
        p = suggest(ep, bl, max_wait_ms=budget)
        assert p.total_budget_ms <= budget
        assert p.worst_wait_ms <= budget
        waits = replay(ep, bl, p)["wait_ms"]
        assert waits.max() <= budget
        # the coverage reported is what the budget reaches on these windows
        assert p.coverage == pytest.approx(float(np.mean(w <= p.total_budget_ms)), abs=0.01)
    unbounded = suggest(ep, bl)
    tight = suggest(ep, bl, max_wait_ms=300)
    assert tight.coverage < unbounded.coverage
    assert any("not reachable within the 300 ms budget" in n for n in tight.notes)


def test_unreachable_max_wait_gives_no_retry():
    ep, bl = frames_from_windows([100, 200, 300])
    p = suggest(ep, bl, max_wait_ms=0.5)
    assert p.max_attempts == 1 and p.total_budget_ms == 0 and p.coverage == 0


def test_five_episodes_get_a_small_sample_note():
    p = suggest(*frames_from_windows([40, 90, 150, 700, 1200]))
    assert p.n_windows == 5
    assert p.coverage == 1.0
    assert any(n.startswith("Only 5 lock episodes") for n in p.notes)
    assert any("needs at least 100 episodes" in n for n in p.notes)
    # the confidence bound makes plain how little 5/5 proves
    assert any("lower confidence bound" in n and "56.6%" in n for n in p.notes)


def test_many_windows_get_no_small_sample_note():
    p = suggest(*frames_from_windows(lognormal_windows(300, 6)))
    assert not any(n.startswith("Only") for n in p.notes)


def test_suggestion_is_deterministic():
    ep, bl = frames_from_windows(lognormal_windows(200, 7))
    assert suggest(ep, bl).to_dict() == suggest(ep, bl).to_dict()


def test_result_fields_and_json():
    p = suggest(*frames_from_windows(lognormal_windows(200, 8)), target=0.95)
    d = json.loads(json.dumps(p.to_dict()))
    for key in (
        "initial_delay_ms",
        "multiplier",
        "max_delay_ms",
        "max_attempts",
        "total_budget_ms",
        "jitter",
        "target",
        "coverage",
        "expected_wait_ms",
        "worst_wait_ms",
        "n_windows",
        "censored",
        "tail_model",
        "notes",
    ):
        assert key in d
    assert d["jitter"] is False and d["target"] == 0.95
    assert d["tail_model"]["distribution"] in ("lognormal", "weibull", "exponential")
    assert {"ks_statistic", "p99_ms", "p999_ms", "budget_for_target_ms"} <= set(d["tail_model"])
    assert p.initial_delay_ms in (1, 2, 5, 10, 20, 50, 100, 200, 500)
    assert p.multiplier in (1, 1.5, 2, 3)
    # the stated budget is the sum of the stated delays
    assert p.total_budget_ms == pytest.approx(p.nominal_delays().sum())
    assert p.error_codes == (5,)  # exactly the codes observed (frames_from_windows: 5)


def test_the_policy_retries_exactly_the_codes_observed():
    episodes, blocked = frames_from_windows([10.0, 20.0, 30.0], error_code=[5, 32, 5])
    assert suggest(episodes, blocked).error_codes == (5, 32)
    note = next(n for n in suggest(episodes, blocked).notes if n.startswith("Observed"))
    assert note.startswith("Observed error codes: 5 (ACCESS_DENIED), 32 (SHARING_VIOLATION);")
    assert "add 33" in note


def test_expected_wait_matches_replay():
    w = lognormal_windows(300, 9)
    ep, bl = frames_from_windows(w)
    p = suggest(ep, bl, target=0.95)
    r = replay(ep, bl, p)
    assert p.expected_wait_ms == pytest.approx(r["wait_ms"].mean())
    assert p.worst_wait_ms == pytest.approx(r["wait_ms"].max())


def test_each_target_is_met_in_sample():
    ep, bl = frames_from_windows(lognormal_windows(400, 10))
    covered = [suggest(ep, bl, target=t).coverage for t in (0.8, 0.9, 0.99)]
    assert covered[0] >= 0.8 and covered[1] >= 0.9 and covered[2] >= 0.99


def test_censored_windows_count_as_not_covered_and_are_noted():
    w = lognormal_windows(200, 11, median_ms=500, sigma=1.2)
    ep, bl = frames_from_windows(w, horizon_ms=2000.0)
    n_cens = int((w > 2000).sum())
    assert n_cens > 0
    p = suggest(ep, bl, target=0.99)
    assert p.censored == n_cens
    assert p.coverage <= 1 - n_cens / len(w) + 1e-12
    assert any("still blocked when the trace ended" in n for n in p.notes)
    assert p.tail_model is not None and p.tail_model.n_censored == n_cens
    # the censored fit still recovers the lognormal beyond the horizon
    params = dict(p.tail_model.parameters)
    if p.tail_model.distribution == "lognormal":
        assert params["mu"] == pytest.approx(np.log(500), abs=0.25)
        assert params["sigma"] == pytest.approx(1.2, abs=0.2)
    assert p.tail_model.budget_for_target_ms > 2000


def test_pooled_traces_suggest_over_all_windows():
    a = frames_from_windows(lognormal_windows(60, 12), trace="ci-1")
    b = frames_from_windows(lognormal_windows(60, 13), trace="ci-2")
    p = suggest(*pool(a, b))
    assert p.n_windows == 120


def test_error_no_episodes():
    ep, bl = frames_from_windows([])
    with pytest.raises(UsageError, match=r"^No lock episodes to learn a retry policy from"):
        suggest(ep, bl)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": 0}, r"target must be in \(0, 1\], got 0"),
        ({"target": 1.5}, r"target must be in \(0, 1\], got 1.5"),
        ({"max_wait_ms": -1}, r"max_wait_ms must be ≥ 0, got -1"),
    ],
)
def test_error_bad_arguments(kwargs, message):
    ep, bl = frames_from_windows([10, 20])
    with pytest.raises(UsageError, match=message):
        suggest(ep, bl, **kwargs)


def test_attempt_cost_prefers_fewer_attempts():
    ep, bl = frames_from_windows(lognormal_windows(300, 14))
    free = suggest(ep, bl, target=0.95)
    costly = suggest(ep, bl, target=0.95, attempt_cost_ms=50)
    assert costly.max_attempts <= free.max_attempts
    assert costly.coverage >= 0.95


# --- RetryPolicy ----------------------------------------------------------------------


def test_retry_policy_delays_and_budget():
    p = RetryPolicy(initial_delay_ms=10, multiplier=2, max_delay_ms=100, max_attempts=7)
    assert p.nominal_delays().tolist() == [10, 20, 40, 80, 100, 100]
    assert p.total_budget_ms == 350 and p.retries == 6
    assert p.describe() == "10 ms ×2 capped at 100 ms, 7 attempts (≤ 350 ms)"
    fixed = RetryPolicy(initial_delay_ms=50, multiplier=1, max_attempts=3)
    assert fixed.describe() == "50 ms fixed, 3 attempts (≤ 100 ms)"


def test_retry_policy_jitter_is_seeded():
    p = RetryPolicy(initial_delay_ms=10, multiplier=2, max_attempts=5, jitter=True)
    a = p.schedule(np.random.default_rng(1)).delays
    assert a == p.schedule(np.random.default_rng(1)).delays
    nominal = p.nominal_delays()
    assert np.all((np.asarray(a) >= nominal) & (np.asarray(a) < 2 * nominal))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_delay_ms": -1}, "initial_delay_ms must be ≥ 0, got -1"),
        ({"initial_delay_ms": 10, "multiplier": 0.5}, "multiplier must be ≥ 1, got 0.5"),
        ({"initial_delay_ms": 10, "max_attempts": 0}, "max_attempts must be ≥ 1, got 0"),
        (
            {"initial_delay_ms": 10, "max_delay_ms": 5},
            r"max_delay_ms \(5\) is below initial_delay_ms \(10\)",
        ),
    ],
)
def test_error_retry_policy_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        RetryPolicy(**kwargs)


# --- tail fits ------------------------------------------------------------------------


def test_tail_fit_picks_the_generating_family():
    rng = np.random.default_rng(15)
    ln = rng.lognormal(np.log(150), 0.9, 2000)
    m = fit_tail(ln, np.zeros(len(ln), bool), target=0.99)
    assert m.distribution == "lognormal"
    assert m.p99_ms == pytest.approx(150 * np.exp(0.9 * 2.3263), rel=0.1)
    assert m.ks_statistic < 0.03
    wb = rng.weibull(0.6, 2000) * 300
    assert fit_tail(wb, np.zeros(len(wb), bool)).distribution == "weibull"


def test_tail_fit_needs_three_windows_and_skips_zeros():
    assert fit_tail(np.array([5.0, 9.0]), np.zeros(2, bool)) is None
    m = fit_tail(np.array([0.0, 0.0, 5.0, 9.0, 30.0, 70.0]), np.zeros(6, bool))
    assert m is not None and m.n == 4 and m.n_zero == 2


def test_tail_model_in_notes_mentions_fit_and_budget():
    p = suggest(*frames_from_windows(lognormal_windows(300, 16)))
    note = next(n for n in p.notes if n.startswith("Tail model:"))
    assert "KS" in note and "p99" in note and "p99.9" in note
    assert p.tail_model.quantile(0.99) == pytest.approx(p.tail_model.p99_ms)
    assert float(p.tail_model.cdf(p.tail_model.p99_ms)) == pytest.approx(0.99)


def test_zero_length_windows_are_covered_by_the_first_retry():
    ep = pl.DataFrame(
        {"episode": [0, 1], "trace": ["t", "t"], "error_code": [32, 32], "horizon_ms": [1e4, 1e4]}
    )
    bl = pl.DataFrame(
        {"episode": [0], "start_ms": [0.0], "end_ms": [30.0]},
        schema={"episode": pl.Int64, "start_ms": pl.Float64, "end_ms": pl.Float64},
    )
    p = suggest(ep, bl, target=1.0)
    assert p.coverage == 1.0
    assert p.total_budget_ms >= 30
