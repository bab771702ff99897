"""Each known policy's schedule against the numbers in docs/retry-policies.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from traceaudit.errors import UsageError
from traceaudit.policy import KNOWN_POLICIES, KnownPolicy, known_policy


def draws(policy: KnownPolicy, n: int = 2000, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [policy.schedule(rng) for _ in range(n)]


def test_every_tool_in_the_brief_is_there():
    tools = {p.tool for p in KNOWN_POLICIES}
    assert {
        "uv",
        "graceful-fs",
        "Go cmd/go robustio",
        "pip rmtree",
        "pip replace",
        "rustup rename",
        "Git for Windows",
        "MSBuild Copy",
        ".NET SDK FileAccessRetrier",
        "conda",
        "rimraf",
        "Chromium ImportantFileWriter",
        "Node.js fs.rm",
    } <= tools


def test_uv_10ms_doubling_10_retries_worst_case_10_23_s():
    s = known_policy("uv").schedule()
    assert s.delays == (10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120)
    assert s.attempts == 11
    assert s.total_ms == pytest.approx(10_230)
    assert known_policy("uv").triggers == frozenset({5})


def test_graceful_fs_linear_to_100ms_for_60s():
    s = known_policy("graceful-fs").schedule()
    assert s.delays[:12] == (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 100)
    assert max(s.delays) == 100
    assert 590 <= s.attempts <= 620  # "about 600 attempts"
    assert 60_000 <= s.total_ms < 60_200  # retries while elapsed < 60 s
    assert s.attempt_times[-2] < 60_000
    assert known_policy("graceful-fs").triggers == frozenset({5, 32, 33})


def test_go_robustio_under_2s_13_to_27_attempts_mean_18():
    go = known_policy("Go cmd/go robustio")
    assert go.jittered
    ss = draws(go)
    assert all(s.total_ms < 2_000 for s in ss)
    assert all(s.delays[0] == 1.0 for s in ss)
    for s in ss[:50]:  # next += U[0, next): each delay grows by a factor in [1, 2)
        d = np.asarray(s.delays)
        assert np.all(d[1:] >= d[:-1]) and np.all(d[1:] < 2 * d[:-1])
    attempts = np.array([s.attempts for s in ss])
    assert attempts.min() >= 12 and attempts.max() <= 29
    assert attempts.mean() == pytest.approx(18, abs=1)
    assert go.triggers == frozenset({2, 5, 32})


def test_go_robustio_is_deterministic_per_seed():
    go = known_policy("Go cmd/go robustio")
    assert go.schedule(np.random.default_rng(7)) == go.schedule(np.random.default_rng(7))
    assert go.schedule() == go.schedule()  # rng=None means seed 0


def test_pip_fixed_500ms_for_3s_and_250ms_for_1s():
    rm = known_policy("pip rmtree").schedule()
    assert rm.delays == (500,) * 6 and rm.attempts == 7 and rm.total_ms == 3_000
    rep = known_policy("pip replace").schedule()
    assert rep.delays == (250,) * 4 and rep.attempts == 5 and rep.total_ms == 1_000
    assert known_policy("pip rmtree").retries_on(5) and known_policy("pip rmtree").retries_on(33)
    assert known_policy("pip rmtree").triggers_text == "any"


def test_rustup_fibonacci_full_jitter_max_317_8_s():
    rustup = known_policy("rustup rename")
    fib = [1, 1]
    while len(fib) < 26:
        fib.append(fib[-1] + fib[-2])
    assert sum(fib) == 317_810 and fib[-1] == 121_393
    ss = draws(rustup, 1000)
    for s in ss[:100]:
        assert s.retries == 26
        assert np.all(np.asarray(s.delays) < np.asarray(fib))  # delay × U[0, 1)
    totals = np.array([s.total_ms for s in ss])
    assert totals.max() < 317_810
    assert totals.mean() == pytest.approx(317_810 / 2, rel=0.05)  # expected ≈159 s
    assert rustup.triggers == frozenset({5})


def test_git_for_windows_71ms():
    s = known_policy("Git for Windows").schedule()
    assert s.delays == (0, 1, 10, 20, 40) and s.total_ms == 71
    assert known_policy("Git").triggers == frozenset({5, 32})


def test_msbuild_copy_1s_times_10_not_on_access_denied():
    p = known_policy("MSBuild Copy")
    s = p.schedule()
    assert s.delays == (1000,) * 10 and s.total_ms == 10_000
    assert not p.retries_on(5) and p.retries_on(32) and p.retries_on(33)


def test_dotnet_sdk_last_attempt_at_5_11_s_elapsed_10_23_s():
    p = known_policy(".NET SDK")
    s = p.schedule()
    assert s.attempts == 10
    assert s.last_attempt_ms == pytest.approx(5_110)
    assert s.final_sleep_ms == 5_120
    assert s.total_ms == pytest.approx(10_230)
    assert p.triggers == frozenset({5})


def test_conda_between_6_3_and_6_9_s():
    p = known_policy("conda")
    ss = draws(p, 500)
    for s in ss:
        assert s.retries == 6 and s.attempts == 7  # MAX_TRIES = 7
        assert 6_300 <= s.total_ms < 6_900
        d = np.asarray(s.delays)
        base = 100 * 2.0 ** np.arange(6)
        assert np.all((d >= base) & (d < base + 100))  # (2^n + U[0,1)) × 0.1 s


def test_rimraf_retry_busy_165ms_then_10_immediate():
    p = known_policy("rimraf")
    s = p.schedule()
    sleeps = (2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 22, 27, 33)
    assert s.delays[:13] == sleeps
    assert s.delays[13:] == (0,) * 10
    assert s.total_ms == 165
    assert p.triggers == frozenset({32, 33}) and not p.retries_on(5)


def test_chromium_100ms_times_5():
    s = known_policy("Chromium").schedule()
    assert s.delays == (100,) * 5 and s.attempts == 6 and s.total_ms == 500


def test_node_fs_rm_default_no_retry():
    s = known_policy("Node.js fs.rm").schedule()
    assert s.retries == 0 and s.total_ms == 0


@pytest.mark.parametrize("policy", KNOWN_POLICIES, ids=lambda p: p.tool)
def test_to_dict_is_json_and_policies_are_hashable(policy: KnownPolicy):
    d = policy.to_dict()
    assert json.loads(json.dumps(d))["tool"] == policy.tool
    assert hash(policy) == hash(policy)
    assert d["triggers"] == sorted(policy.triggers)


def test_triggers_text():
    assert known_policy("uv").triggers_text == "5"
    assert known_policy("Git").triggers_text == "5,32"


def test_error_unknown_policy_name_lists_known_ones():
    with pytest.raises(UsageError, match=r"no single known policy named 'nope' \(known: uv, "):
        known_policy("nope")


def test_error_unknown_schedule_kind():
    with pytest.raises(ValueError, match="x: unknown schedule kind 'zigzag'"):
        KnownPolicy("x", "1", "src", frozenset({5}), kind="zigzag")
