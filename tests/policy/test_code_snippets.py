"""Snippets carry the policy's exact numbers, and each library's formula gives its delays back."""

from __future__ import annotations

import re

import numpy as np
import pytest

from traceaudit.policy import RetryPolicy, frames_from_windows, snippets, suggest

POLICIES = [
    RetryPolicy(initial_delay_ms=10, multiplier=2, max_delay_ms=1000, max_attempts=12),
    RetryPolicy(initial_delay_ms=1, multiplier=1.5, max_delay_ms=None, max_attempts=20),
    RetryPolicy(initial_delay_ms=20, multiplier=1, max_delay_ms=None, max_attempts=75),
    RetryPolicy(initial_delay_ms=5, multiplier=3, max_delay_ms=200, max_attempts=9),
    RetryPolicy(initial_delay_ms=500, multiplier=2, max_delay_ms=None, max_attempts=6),
    RetryPolicy(initial_delay_ms=12.5, multiplier=2, max_delay_ms=None, max_attempts=5),
]


def num(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not found in:\n{text}"
    return float(m.group(1))


def tenacity_delays(src: str, retries: int) -> np.ndarray:
    """tenacity: wait_exponential = multiplier · exp_base^(attempt−1), clamped to [min, max]."""
    if "wait_fixed(" in src:
        return np.full(retries, num(r"wait_fixed\(([\d.e-]+)\)", src) * 1000)
    m = re.search(r"wait_exponential\(([^)]*)\)", src)
    args = dict(kv.split("=") for kv in m.group(1).replace(" ", "").split(","))
    mult = float(args["multiplier"])
    base = float(args.get("exp_base", 2))
    lo, hi = float(args.get("min", 0)), float(args.get("max", "inf"))
    attempt = np.arange(1, retries + 1)
    return np.clip(mult * base ** (attempt - 1.0), lo, hi) * 1000


def backon_delays(src: str) -> np.ndarray:
    """backon: min_delay, then cur·factor while cur < max, clamped to max; max_times retries."""

    def dur(name: str) -> float:
        m = re.search(rf"\.{name}\(Duration::from_(millis|secs_f64)\(([\d.]+)\)\)", src)
        if m is None:
            return None
        return float(m.group(2)) * (1 if m.group(1) == "millis" else 1000)

    times = int(num(r"\.with_max_times\((\d+)\)", src))
    if "ConstantBuilder" in src:
        return np.full(times, dur("with_delay"))
    assert "without_max_delay" in src or ".with_max_delay(" in src  # never the 60 s default
    cur, factor, cap = (
        dur("with_min_delay"),
        num(r"\.with_factor\(([\d.]+)\)", src),
        dur("with_max_delay"),
    )
    out = []
    for i in range(times):
        if i:
            if cap is None or cur < cap:
                cur *= factor
            if cap is not None and cur > cap:
                cur = cap
        out.append(cur)
    return np.array(out)


def polly_delays(src: str) -> np.ndarray:
    """Polly v8: Constant / Exponential (Delay·2^n, capped by MaxDelay) or our DelayGenerator."""
    retries = int(num(r"MaxRetryAttempts = (\d+),", src))
    n = np.arange(retries)
    if "DelayGenerator" in src:
        expr = re.search(r"TimeSpan\.FromMilliseconds\((.*)\)\),", src).group(1)
        out = []
        for attempt in n:
            py = (
                expr.replace("Math.Min", "min")
                .replace("Math.Pow", "pow")
                .replace("args.AttemptNumber", str(attempt))
            )
            out.append(eval(py))  # arithmetic only, from our own snippet
        return np.array(out)
    delay = num(r"Delay = TimeSpan\.FromMilliseconds\(([\d.]+)\)", src)
    if "DelayBackoffType.Constant" in src:
        return np.full(retries, delay)
    assert "DelayBackoffType.Exponential" in src
    d = delay * 2.0**n
    if "MaxDelay" in src:
        d = np.minimum(d, num(r"MaxDelay = TimeSpan\.FromMilliseconds\(([\d.]+)\)", src))
    return d


def go_delays(src: str) -> np.ndarray:
    """Replays the Go loop: sleep, then delay·multiplier, clamped to maxDelay."""
    attempts = int(num(r"const maxAttempts = (\d+)", src))

    def go_dur(text: str) -> float:
        m = re.match(r"(\d+) \* time\.Millisecond", text) or re.match(
            r"time\.Duration\(([\d.]+) \* float64\(time\.Millisecond\)\)", text
        )
        return float(m.group(1))

    delay = go_dur(re.search(r"delay := (.*)\n", src).group(1))
    mult_m = re.search(r"delay = time\.Duration\(float64\(delay\) \* ([\d.]+)\)", src)
    cap_m = re.search(r"const maxDelay = (.*)\n", src)
    out = []
    for _ in range(attempts - 1):
        out.append(delay)
        if mult_m:
            delay *= float(mult_m.group(1))
        if cap_m and delay > go_dur(cap_m.group(1)):
            delay = go_dur(cap_m.group(1))
    return np.array(out)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.describe())
def test_each_library_formula_reproduces_the_delays(policy: RetryPolicy):
    s = snippets(policy)
    want = policy.nominal_delays()
    assert tenacity_delays(s["python"], policy.retries) == pytest.approx(want)
    assert backon_delays(s["rust"]) == pytest.approx(want)
    assert polly_delays(s["dotnet"]) == pytest.approx(want)
    assert go_delays(s["go"]) == pytest.approx(want)


def test_snippets_contain_the_exact_numbers():
    p = RetryPolicy(initial_delay_ms=10, multiplier=2, max_delay_ms=1000, max_attempts=12)
    s = snippets(p)
    assert "stop=stop_after_attempt(12) | stop_after_delay(5.27)" in s["python"]
    assert "wait_exponential(multiplier=0.01, min=0.01, max=1.0)" in s["python"]
    assert "exp_base" not in s["python"]  # multiplier 2 is tenacity's default base
    assert 'getattr(e, "winerror", None) in (5, 32, 33)' in s["python"]
    assert ".with_min_delay(Duration::from_millis(10))" in s["rust"]
    assert ".with_factor(2.0)" in s["rust"]
    assert ".with_max_delay(Duration::from_millis(1000))" in s["rust"]
    assert ".with_max_times(11)" in s["rust"]
    assert "ErrorKind::PermissionDenied" in s["rust"] and "Some(32 | 33)" in s["rust"]
    assert "const maxAttempts = 12" in s["go"]
    assert "delay := 10 * time.Millisecond" in s["go"]
    assert "const maxDelay = 1000 * time.Millisecond" in s["go"]
    assert "errors.Is(err, windows.ERROR_SHARING_VIOLATION)" in s["go"]
    assert "BackoffType = DelayBackoffType.Exponential," in s["dotnet"]
    assert "Delay = TimeSpan.FromMilliseconds(10)," in s["dotnet"]
    assert "MaxDelay = TimeSpan.FromMilliseconds(1000)," in s["dotnet"]
    assert "MaxRetryAttempts = 11," in s["dotnet"]
    assert "UseJitter = false," in s["dotnet"]
    assert "unchecked((int)0x80070020)" in s["dotnet"]
    assert ".Handle<UnauthorizedAccessException>()" in s["dotnet"]
    for text in s.values():
        assert "10 ms ×2 capped at 1 s, 12 attempts (≤ 5.27 s)" in text


def test_non_doubling_multiplier_uses_exp_base_and_a_polly_generator():
    p = RetryPolicy(initial_delay_ms=1, multiplier=1.5, max_attempts=20)
    s = snippets(p)
    assert "wait_exponential(multiplier=0.001, exp_base=1.5, min=0.001)" in s["python"]
    assert "DelayBackoffType.Exponential" not in s["dotnet"]
    assert "Math.Pow(1.5, args.AttemptNumber)" in s["dotnet"]
    assert ".without_max_delay()" in s["rust"]  # backon would otherwise cap at 60 s


def test_fixed_delay_forms():
    s = snippets(RetryPolicy(initial_delay_ms=20, multiplier=1, max_attempts=75))
    assert "wait=wait_fixed(0.02)" in s["python"]
    assert "ConstantBuilder::default()" in s["rust"] and ".with_max_times(74)" in s["rust"]
    assert "BackoffType = DelayBackoffType.Constant," in s["dotnet"]
    assert "delay = time.Duration" not in s["go"]


def test_error_codes_follow_the_policy():
    s = snippets(RetryPolicy(initial_delay_ms=10, max_attempts=4, error_codes=(32,)))
    assert "in (32,)" in s["python"]
    assert "e.kind() == ErrorKind::PermissionDenied" not in s["rust"]
    assert "matches!(e.raw_os_error(), Some(32))" in s["rust"]
    assert "UnauthorizedAccessException()" not in s["dotnet"]
    assert "ERROR_ACCESS_DENIED" not in s["go"]


def test_jitter_is_explicit_and_matches_the_replay_model():
    s = snippets(RetryPolicy(initial_delay_ms=10, multiplier=2, max_attempts=6, jitter=True))
    assert "(1 + random.random())" in s["python"] and "stop_after_delay" not in s["python"]
    assert "(1 + rand.Float64())" in s["go"]
    assert "(1 + Random.Shared.NextDouble())" in s["dotnet"]
    assert ".with_jitter()" in s["rust"] and "version-dependent" in s["rust"]


def test_no_retry_policy():
    s = snippets(RetryPolicy(initial_delay_ms=0, multiplier=1, max_attempts=1))
    assert all("no retry" in text for text in s.values())


def test_snippets_of_a_suggestion():
    rng = np.random.default_rng(3)
    p = suggest(*frames_from_windows(rng.lognormal(np.log(150), 1.0, 200)))
    s = snippets(p)
    assert f"stop_after_attempt({p.max_attempts})" in s["python"]
    assert tenacity_delays(s["python"], p.retries) == pytest.approx(p.nominal_delays())
    assert backon_delays(s["rust"]) == pytest.approx(p.nominal_delays())
