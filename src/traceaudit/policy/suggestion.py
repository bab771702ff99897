"""Suggest a retry policy from the blocked times of observed lock episodes.

The search is a grid of exponential backoffs: first delay × multiplier, optionally capped,
with as many attempts as it takes to reach past the latest release seen. Each candidate
is replayed exactly against the episodes (the suggestion retries exactly the error codes
observed for these locks, so its snippets match the failures in the trace), and for each number of attempts the coverage (share of episodes
that succeed) and the expected added wait (mean over episodes; failures and censored
episodes count their whole budget) follow from one replay. The winner is the one with
coverage ≥ target and the least expected wait (ties: fewer attempts, then a smaller
budget); if the target cannot be met, the best coverage wins. Everything is
deterministic: the grid has no jitter and the replay no randomness.

Coverage is in-sample: it says how the policy would have done on *these* episodes. The
tail fit (:mod:`traceaudit.policy.tail`) and the notes say how far that can be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from traceaudit.display import fmt_duration, plural
from traceaudit.errors import UsageError
from traceaudit.policy.replay_engine import SUCCESS, Timeline, build_timeline, first_outcomes
from traceaudit.policy.schedule import Schedule
from traceaudit.policy.tail import MAX_MODEL_TARGET, TailModel, fit_tail

__all__ = ["RetryPolicy", "suggest", "FIRST_DELAYS_MS", "MULTIPLIERS", "CAPS_MS", "MAX_ATTEMPTS"]

FIRST_DELAYS_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500)
MULTIPLIERS: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
CAPS_MS: tuple[float | None, ...] = (
    None,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    30_000,
    60_000,
)
MAX_ATTEMPTS = 100
SMALL_SAMPLE = 20

_CODE_NAMES = {5: "ACCESS_DENIED", 32: "SHARING_VIOLATION", 33: "LOCK_VIOLATION"}


@dataclass(frozen=True)
class RetryPolicy:
    """An exponential backoff, with (when it came from :func:`suggest`) the evidence for it.

    The n-th retry (n = 1 … ``max_attempts`` − 1) sleeps
    ``min(max_delay_ms, initial_delay_ms · multiplier^(n−1))`` first; ``multiplier`` 1 is a
    fixed delay. ``max_attempts`` counts the first attempt too. ``total_budget_ms`` (derived)
    is the sum of the delays: the longest the caller waits before giving up. ``jitter``
    multiplies each delay by U[1, 2) in replay (never in suggestions: a scanner's lock does
    not shorten because retriers spread out). ``error_codes`` are the Win32 codes to retry.

    The remaining fields describe the fit: ``target`` and in-sample ``coverage``,
    ``expected_wait_ms`` (mean added wait per episode) and ``worst_wait_ms``, the number of
    windows, how many were still blocked at trace end (``censored``), the fitted
    ``tail_model`` and plain-language ``notes``.
    """

    initial_delay_ms: float
    multiplier: float = 2.0
    max_delay_ms: float | None = None
    max_attempts: int = 10
    jitter: bool = False
    error_codes: tuple[int, ...] = (5, 32, 33)
    target: float | None = None
    coverage: float | None = None
    expected_wait_ms: float | None = None
    worst_wait_ms: float | None = None
    n_windows: int | None = None
    censored: int | None = None
    tail_model: TailModel | None = None
    notes: tuple[str, ...] = ()
    total_budget_ms: float = field(init=False)

    def __post_init__(self) -> None:
        if not (self.initial_delay_ms >= 0 and math.isfinite(self.initial_delay_ms)):
            raise UsageError(f"initial_delay_ms must be ≥ 0, got {self.initial_delay_ms!r}")
        if not self.multiplier >= 1:
            raise UsageError(f"multiplier must be ≥ 1, got {self.multiplier!r}")
        if self.max_attempts < 1:
            raise UsageError(f"max_attempts must be ≥ 1, got {self.max_attempts!r}")
        if self.max_delay_ms is not None and self.max_delay_ms < self.initial_delay_ms:
            raise UsageError(
                f"max_delay_ms ({self.max_delay_ms}) is below initial_delay_ms "
                f"({self.initial_delay_ms})"
            )
        object.__setattr__(self, "error_codes", tuple(sorted({int(c) for c in self.error_codes})))
        object.__setattr__(self, "total_budget_ms", float(self.nominal_delays().sum()))

    # -- schedule ---------------------------------------------------------------------

    @property
    def retries(self) -> int:
        """Retries after the first failure (``max_attempts − 1``)."""
        return self.max_attempts - 1

    def nominal_delays(self) -> np.ndarray:
        """The delays (ms) before each retry, without jitter."""
        d = self.initial_delay_ms * self.multiplier ** np.arange(self.retries, dtype=np.float64)
        if self.max_delay_ms is not None:
            d = np.minimum(d, self.max_delay_ms)
        return d

    @property
    def jittered(self) -> bool:
        """Same as ``jitter`` (the replay protocol's name)."""
        return self.jitter

    def schedule(self, rng: np.random.Generator | None = None) -> Schedule:
        """One draw of the delays; with jitter each is multiplied by U[1, 2) (seed 0 if no rng)."""
        d = self.nominal_delays()
        if self.jitter:
            rng = np.random.default_rng(0) if rng is None else rng
            d = d * (1.0 + rng.random(len(d)))
        return Schedule.of(d)

    def retries_on(self, error_code: int | None) -> bool:
        """Whether a failure with ``error_code`` is retried."""
        return error_code is not None and int(error_code) in self.error_codes

    def describe(self) -> str:
        """One line, e.g. ``10 ms ×2 capped at 1 s, 12 attempts (≤ 6.13 s)``."""
        if self.retries == 0:
            return "no retry"
        growth = "fixed" if self.multiplier == 1 else f"×{self.multiplier:g}"
        cap = (
            f" capped at {fmt_duration(self.max_delay_ms)}" if self.max_delay_ms is not None else ""
        )
        budget = (
            f"{fmt_duration(self.total_budget_ms)} nominal, up to 2× with jitter"
            if self.jitter
            else f"≤ {fmt_duration(self.total_budget_ms)}"
        )
        return (
            f"{fmt_duration(self.initial_delay_ms)} {growth}{cap}, {self.max_attempts} attempts "
            f"({budget})"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        return {
            "initial_delay_ms": self.initial_delay_ms,
            "multiplier": self.multiplier,
            "max_delay_ms": self.max_delay_ms,
            "max_attempts": self.max_attempts,
            "total_budget_ms": self.total_budget_ms,
            "jitter": self.jitter,
            "error_codes": list(self.error_codes),
            "target": self.target,
            "coverage": self.coverage,
            "expected_wait_ms": self.expected_wait_ms,
            "worst_wait_ms": self.worst_wait_ms,
            "n_windows": self.n_windows,
            "censored": self.censored,
            "tail_model": None if self.tail_model is None else self.tail_model.to_dict(),
            "notes": list(self.notes),
            "summary": self.describe(),
        }


# Each retry is charged this much when candidate policies are compared. Sleeping is what
# really costs time, but with no charge at all a fine fixed poll (20 ms × 60) always wins by a
# hair; hammering a scanner's file that often is not advice anyone should follow.
ATTEMPT_COST_MS = 1.0


# --- the search -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Best:
    """The best (policy, attempts) found so far and its in-sample numbers."""

    key: tuple[float, ...]
    d0: float
    mult: float
    cap: float | None
    retries: int
    coverage: float
    expected: float
    worst: float
    budget: float


def _candidates(
    reach: float, max_wait: float | None
) -> Iterator[tuple[float, float, float | None, np.ndarray]]:
    """Yield (d0, multiplier, cap, delays) for the grid, delays long enough to pass ``reach``."""
    seen: set[tuple[float, ...]] = set()
    for d0 in FIRST_DELAYS_MS:
        for mult in MULTIPLIERS:
            for cap in CAPS_MS:
                if mult == 1.0 and cap is not None:
                    continue
                if cap is not None and cap <= d0:
                    continue
                delays: list[float] = []
                total = 0.0
                d = float(d0)
                while len(delays) < MAX_ATTEMPTS - 1 and total < reach:
                    step = min(d, cap) if cap is not None else d
                    if max_wait is not None and total + step > max_wait:
                        break
                    delays.append(step)
                    total += step
                    d *= mult
                if not delays:
                    continue
                key = tuple(delays)
                if key in seen:
                    continue
                seen.add(key)
                yield float(d0), float(mult), cap, np.asarray(delays)


def _evaluate(tl: Timeline, delays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Coverage, expected wait and worst wait for every prefix length 1 … len(delays)."""
    t = np.cumsum(delays)
    index, state = first_outcomes(tl, t[None, :], np.array([len(t)]))
    index, state = index[:, 0], state[:, 0]
    k = len(t)
    e = tl.n
    succ = state == SUCCESS
    # successes whose deciding retry is k: they count for every prefix longer than k
    n_succ = np.cumsum(np.bincount(index[succ], minlength=k)[:k])
    wait_succ = np.cumsum(np.bincount(index[succ], weights=t[index[succ]], minlength=k)[:k])
    tries_succ = np.cumsum(np.bincount(index[succ], weights=index[succ] + 2.0, minlength=k)[:k])
    # worst wait among successes within the prefix: running max of t at success indices
    per_index_max = np.zeros(k)
    if succ.any():
        np.maximum.at(per_index_max, index[succ], t[index[succ]])
    max_succ = np.maximum.accumulate(per_index_max)
    coverage = n_succ / e
    expected = (wait_succ + (e - n_succ) * t) / e
    worst = np.where(n_succ < e, t, max_succ)
    mean_attempts = (tries_succ + (e - n_succ) * (np.arange(k) + 2.0)) / e
    return coverage, expected, worst, mean_attempts, t


def _wilson_lower(successes: float, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson score interval for a binomial proportion."""
    if n == 0:
        return 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / denom)


def suggest(
    episodes: pl.DataFrame,
    blocked: pl.DataFrame,
    *,
    target: float = 0.99,
    max_wait_ms: float | None = None,
    attempt_cost_ms: float = ATTEMPT_COST_MS,
) -> RetryPolicy:
    """The cheapest exponential backoff that would have ridden out ``target`` of the locks seen.

    ``max_wait_ms`` bounds the total budget: the result then has the best coverage reachable
    within it (and if that meets the target, the least expected wait). ``attempt_cost_ms``
    charges each attempt that much when candidates are compared (:data:`ATTEMPT_COST_MS` by
    default, so a backoff beats fine polling; raise it to prefer fewer, longer sleeps). See the
    module docstring for the search, and the returned policy's ``notes`` for what the data
    can and cannot support.
    """
    _check_arguments(target, max_wait_ms, attempt_cost_ms)
    tl = build_timeline(episodes, blocked)
    if tl.n == 0:
        raise UsageError(
            "No lock episodes to learn a retry policy from; capture a trace in which the "
            "operation fails because another process holds the file."
        )
    # Retry exactly the codes the application saw for these locks: the snippets then match
    # the failures in the trace, not a guess (5, 32 and 33 when none is known).
    codes = sorted({int(c) for c in tl.error_code if c >= 0})
    error_codes = tuple(codes) or (5, 32, 33)

    best = _search(tl, _reach(tl), target, max_wait_ms, attempt_cost_ms)

    windows = tl.window
    cens_window = ~np.isfinite(windows)
    tail = fit_tail(np.where(cens_window, tl.horizon, windows), cens_window, target=target)
    n_cens = int(cens_window.sum())

    policy_args = _policy_args(best)
    draft = RetryPolicy(**policy_args, error_codes=error_codes)
    notes = _notes(
        tl, draft, target=target, max_wait_ms=max_wait_ms, tail=tail, n_cens=n_cens, codes=codes
    )
    return RetryPolicy(
        **policy_args,
        error_codes=error_codes,
        target=target,
        n_windows=tl.n,
        censored=n_cens,
        tail_model=tail,
        notes=tuple(notes),
    )


def _check_arguments(target: float, max_wait_ms: float | None, attempt_cost_ms: float) -> None:
    """Refuse arguments the search cannot honour (a NaN fails every comparison too)."""
    if not 0 < target <= 1:
        raise UsageError(f"target must be in (0, 1], got {target!r}")
    if max_wait_ms is not None and not max_wait_ms >= 0:
        raise UsageError(f"max_wait_ms must be ≥ 0, got {max_wait_ms!r}")
    if not attempt_cost_ms >= 0:
        raise UsageError(f"attempt_cost_ms must be ≥ 0, got {attempt_cost_ms!r}")


def _reach(tl: Timeline) -> float:
    """How far attempts need to reach: past every known release; beyond a censored
    episode's horizon nothing more can be learned (a hair more, so the last release is
    passed, not touched)."""
    finite_ends = tl.gap_start[np.isfinite(tl.gap_start)]
    reach = max(float(finite_ends.max()) if finite_ends.size else 0.0, 1.0)
    reach = max(reach, float(np.max(np.where(tl.blocked_at_horizon, tl.horizon, 0.0))))
    return reach * (1 + 1e-9) + 1e-9


def _search(
    tl: Timeline,
    reach: float,
    target: float,
    max_wait_ms: float | None,
    attempt_cost_ms: float,
) -> _Best | None:
    """The best (policy, attempts) of the grid, or None when ``max_wait_ms`` is below the
    smallest first delay.

    Every candidate is replayed once for all its prefix lengths; the key ranks meeting the
    target first (else higher coverage), then the cost (expected wait plus
    ``attempt_cost_ms`` per attempt), then fewer attempts, then a smaller budget.
    """
    best: _Best | None = None
    for d0, mult, cap, delays in _candidates(reach, max_wait_ms):
        coverage, expected, worst, mean_attempts, t = _evaluate(tl, delays)
        cost = expected + attempt_cost_ms * mean_attempts
        for j in range(len(delays)):
            meets = coverage[j] >= target - 1e-12
            key = (
                0.0 if meets else 1.0,
                0.0 if meets else -round(float(coverage[j]), 12),
                round(float(cost[j]), 6),
                float(j + 1),
                round(float(t[j]), 6),
            )
            if best is None or key < best.key:
                best = _Best(
                    key=key,
                    d0=d0,
                    mult=mult,
                    cap=cap,
                    retries=j + 1,
                    coverage=float(coverage[j]),
                    expected=float(expected[j]),
                    worst=float(worst[j]),
                    budget=float(t[j]),
                )
    return best


def _policy_args(best: _Best | None) -> dict[str, Any]:
    """The :class:`RetryPolicy` fields of the search's winner: no retry at all when there
    is none, and no cap when the winner never reaches it within its attempts."""
    if best is None:  # max_wait_ms below the smallest first delay
        return {
            "initial_delay_ms": 0.0,
            "multiplier": 1.0,
            "max_delay_ms": None,
            "max_attempts": 1,
            "coverage": 0.0,
            "expected_wait_ms": 0.0,
            "worst_wait_ms": 0.0,
        }
    cap = best.cap
    if cap is not None and best.d0 * best.mult ** (best.retries - 1) <= cap:
        cap = None  # the cap is never reached within these attempts: leave it out
    return dict(
        initial_delay_ms=best.d0,
        multiplier=best.mult,
        max_delay_ms=cap,
        max_attempts=best.retries + 1,
        coverage=best.coverage,
        expected_wait_ms=best.expected,
        worst_wait_ms=best.worst,
    )


def _notes(
    tl: Timeline,
    policy: RetryPolicy,
    *,
    target: float,
    max_wait_ms: float | None,
    tail: TailModel | None,
    n_cens: int,
    codes: list[int],
) -> list[str]:
    """Plain-language caveats: sample size, censoring, tail fit, error codes, budget."""
    notes = _sample_notes(tl.n, policy.coverage or 0.0, target)
    notes += _coverage_notes(tl, policy.coverage or 0.0, target, max_wait_ms, n_cens)
    notes += _tail_notes(tail, policy, target)
    notes += _code_notes(codes)
    if policy.retries and policy.initial_delay_ms < 16:
        notes.append(
            "Delays under ~16 ms may be rounded up by the default Windows timer where the "
            "runtime sleeps with a low-resolution timer; that only lengthens early delays."
        )
    notes.append(
        "No jitter: a scanner's lock does not end sooner when retriers spread out; add "
        "jitter only if many processes contend for the same file."
    )
    return notes


def _sample_notes(n: int, cov: float, target: float) -> list[str]:
    """What ``n`` episodes can support: too few for percentiles, too few to check the
    target empirically, and the confidence bound on the in-sample coverage ``cov``."""
    notes: list[str] = []
    covered = round(cov * n)
    if n < SMALL_SAMPLE:
        notes.append(
            f"Only {plural(n, 'lock episode')}: the policy covers what was seen, not what "
            "will happen. Percentiles like p99 need ~100 episodes or more; capture more "
            "traces and analyse them together."
        )
    if n < math.ceil(1 / max(1 - target, 1e-12)) and target < 1:
        notes.append(
            f"A {target:.0%} target needs at least {math.ceil(1 / (1 - target)):,} episodes "
            f"to check empirically; with {n:,} it is an in-sample figure."
        )
    lower = _wilson_lower(covered, n)
    notes.append(
        f"In-sample coverage {covered:,}/{n:,} ({cov:.1%}); the 95% lower confidence bound on "
        f"the coverage of future locks is {lower:.1%}."
    )
    return notes


def _still_blocked(n: int) -> str:
    return f"{plural(n, 'episode')} {'was' if n == 1 else 'were'} still blocked"


def _coverage_notes(
    tl: Timeline, cov: float, target: float, max_wait_ms: float | None, n_cens: int
) -> list[str]:
    """Whether the target was met (within ``max_wait_ms``), and the ``n_cens`` episodes
    still blocked at trace end, which count as not covered."""
    notes: list[str] = []
    if cov < target:
        why = f" within the {fmt_duration(max_wait_ms)} budget" if max_wait_ms is not None else ""
        notes.append(
            f"Target {target:.1%} is not reachable{why}: best coverage is {cov:.1%}"
            + (
                f"; {_still_blocked(n_cens)} when the trace ended and count as not covered."
                if n_cens
                else "."
            )
        )
    elif max_wait_ms is not None:
        notes.append(f"Within the {fmt_duration(max_wait_ms)} budget the target is met.")
    if n_cens:
        longest = float(np.max(tl.horizon[~np.isfinite(tl.window)]))
        notes.append(
            f"{_still_blocked(n_cens)} when the trace ended (observed up to "
            f"{fmt_duration(longest)}): they count as not covered, and the tail fit treats them as "
            "right-censored. Record longer traces to see them end."
        )
    return notes


def _tail_notes(tail: TailModel | None, policy: RetryPolicy, target: float) -> list[str]:
    """The fitted tail model, how good its fit is, the budget it asks for, and whether the
    policy's budget falls short of it (the sample may understate the tail)."""
    if tail is None:
        return ["Too few completed episodes (< 3 distinct blocked times) to fit a tail model."]
    notes: list[str] = []
    others = ", ".join(f"{d} {k:.3f}" for d, k in tail.alternatives[1:])
    fit_quality = "poor" if tail.ks_statistic > 0.2 or tail.ks_pvalue < 0.05 else "fair"
    notes.append(
        f"Tail model: {tail.distribution} fits best (KS {tail.ks_statistic:.3f}; {others}); "
        f"fit is {fit_quality}. Fitted p99 {fmt_duration(tail.p99_ms)}, p99.9 "
        f"{fmt_duration(tail.p999_ms)}; reaching {min(target, MAX_MODEL_TARGET):.2%} under the "
        "model needs a budget "
        f"of {fmt_duration(tail.budget_for_target_ms)}."
    )
    if policy.retries and tail.budget_for_target_ms > policy.total_budget_ms:
        model_cov = float(tail.cdf(policy.total_budget_ms))
        notes.append(
            f"Under the fitted {tail.distribution}, this budget "
            f"({fmt_duration(policy.total_budget_ms)}) covers {model_cov:.1%} of episodes: the "
            f"sample may understate the tail; consider a budget of "
            f"{fmt_duration(tail.budget_for_target_ms)} if a failure is costly."
        )
    return notes


def _code_notes(codes: list[int]) -> list[str]:
    """The error codes observed (the policy retries exactly these), and which of 5, 32 and
    33 to add where the caller's code also does what fails with them."""
    if not codes:
        return []
    shown = ", ".join(f"{c} ({_CODE_NAMES.get(c, 'code')})" for c in codes)
    others = [c for c in (5, 32, 33) if c not in codes]
    return [
        f"Observed error codes: {shown}; the policy and its code retry exactly these."
        + (
            f" A scanner's handle makes a directory rename fail with 5 and an open with 32; "
            f"add {' and '.join(str(c) for c in others)} where your code also does what "
            "fails with them (Rust's std maps 32 and 33 to Uncategorized, so match them "
            "by raw code)."
            if others
            else ""
        )
    ]
