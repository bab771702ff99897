"""The app's own retries: schedule inference and 'gave up too early' verdicts."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from traceaudit.errors import UsageError
from traceaudit.policy import assess_app_retries, infer_schedule, known_policy


@pytest.mark.parametrize(
    ("delays", "kind", "first", "factor", "step", "capped"),
    [
        ([], "none", None, None, None, False),
        ([0, 0, 0.2], "immediate", 0, None, None, False),
        ([250], "single", 250, None, None, False),
        ([100, 104, 97, 101, 100], "fixed", 100, None, None, False),
        ([10, 20, 40, 80, 160, 320], "exponential", 10, 2.0, None, False),
        ([10, 15, 22.5, 33.75, 50.6], "exponential", 10, 1.5, None, False),
        ([0, 10, 20, 30, 40, 50], "linear", 0, None, 10.0, False),
        ([10, 20, 40, 80, 100, 100, 100], "exponential", 10, 2.0, None, True),
        ([5, 50, 3, 200, 7], "irregular", 5, None, None, False),
    ],
)
def test_infer_schedule(delays, kind, first, factor, step, capped):
    fit = infer_schedule(delays)
    assert fit.kind == kind
    assert fit.retries == len(delays)
    if first is not None:
        assert fit.first_delay_ms == pytest.approx(first)
    if factor is not None:
        assert fit.factor == pytest.approx(factor, rel=0.02)
    if step is not None:
        assert fit.step_ms == pytest.approx(step)
    assert fit.capped is capped
    assert fit.total_ms == pytest.approx(sum(delays))


def test_infer_schedule_recognises_known_tools():
    uv = infer_schedule(known_policy("uv").delays())
    assert (uv.kind, uv.factor) == ("exponential", pytest.approx(2.0))
    assert uv.text == "10 ms ×2, 10 retries over 10.2 s"
    gfs = infer_schedule(known_policy("graceful-fs").delays()[:30])
    assert gfs.kind == "linear" and gfs.capped and gfs.max_delay_ms == 100
    msb = infer_schedule(known_policy("MSBuild").delays())
    assert msb.text == "fixed 1 s, 10 retries over 10 s"
    go = infer_schedule(known_policy("Go cmd/go robustio").delays(np.random.default_rng(2)))
    assert go.kind in ("exponential", "irregular")


def test_two_delays_are_flagged_ambiguous():
    fit = infer_schedule([10, 20])
    assert fit.kind == "exponential" and fit.ambiguous
    assert "too few delays to tell" in fit.text


def test_timer_noise_still_reads_as_fixed():
    # Windows' default 15.6 ms timer: Sleep(10) comes out as ~15.6 ms
    fit = infer_schedule([15.6, 15.7, 15.5, 31.2, 15.6])
    assert fit.kind == "fixed" and fit.first_delay_ms == pytest.approx(15.6)
    assert infer_schedule([15.6, 15.7, 15.5, 15.6]).kind == "fixed"


def frames():
    episodes = pl.DataFrame(
        {
            "episode": [0, 1, 2, 3],
            "trace": ["t"] * 4,
            "error_code": [5, 5, 32, 5],
            "horizon_ms": [5000.0, 900.0, 5000.0, 5000.0],
        }
    )
    blocked = pl.DataFrame(
        {
            "episode": [0, 1, 2, 3],
            "start_ms": [0.0, 0.0, 0.0, 0.0],
            "end_ms": [1880.0, None, 250.0, 100.0],
        }
    )
    chains = pl.DataFrame(
        {
            "chain": [0, 1, 2, 3, 4],
            "trace": ["t"] * 5,
            "process": ["uv.exe"] * 5,
            "operation": ["SetRenameInformationFile"] * 5,
            "path": [r"C:\cache\.tmpAbc"] * 5,
            "error_code": [5, 5, 32, 5, 5],
            "attempts": [7, 3, 4, 1, 2],
            "delays_ms": [
                [10.0, 20, 40, 80, 160, 320],
                [100.0, 100],
                [100.0, 100, 100],
                [],
                [500.0],
            ],
            "succeeded": [False, False, True, False, False],
            "total_ms": [630.0, 200.0, 300.0, 0.0, 500.0],
            "episode": [0, 1, 2, None, 3],
        },
        schema_overrides={"chain": pl.UInt32, "episode": pl.UInt32},
    )
    return chains, episodes, blocked


def test_assess_verdicts():
    chains, episodes, blocked = frames()
    a = assess_app_retries(chains, episodes, blocked)
    assert a["verdict"].to_list() == [
        "gave_up_early",
        "gave_up_unknown",
        "ok",
        "unlinked",
        "failed_while_free",
    ]
    early = a.row(0, named=True)
    assert early["schedule"] == "exponential" and early["factor"] == pytest.approx(2.0)
    assert early["needed_extra_ms"] == pytest.approx(1880 - 630)
    assert early["free_after_ms"] == 1880 and early["window_ms"] == 1880
    assert early["advice"] == (
        "Gave up 1.25 s too early: its retries (10 ms ×2, 6 retries over 630 ms) ended at "
        "630 ms, the lock lifted at 1.88 s."
    )
    unknown = a.row(1, named=True)
    assert unknown["needed_extra_ms"] is None and unknown["window_ms"] is None
    assert "at least 700 ms more" in unknown["advice"]
    ok = a.row(2, named=True)
    assert ok["schedule"] == "fixed" and ok["overshoot_ms"] == pytest.approx(50)
    assert a.row(3, named=True)["schedule"] == "none"


def test_assess_keeps_identity_columns():
    chains, episodes, blocked = frames()
    a = assess_app_retries(chains, episodes, blocked)
    for col in ("chain", "trace", "process", "operation", "path", "attempts", "succeeded"):
        assert a[col].to_list() == chains[col].to_list()
    assert "delays_ms" not in a.columns
    assert a.height == chains.height


def test_assess_later_blocker_counts():
    # free from 50 to 80 ms, then blocked again until 400: a chain that stopped at 90
    episodes = pl.DataFrame(
        {"episode": [0], "trace": ["t"], "error_code": [32], "horizon_ms": [1000.0]}
    )
    blocked = pl.DataFrame({"episode": [0, 0], "start_ms": [0.0, 80.0], "end_ms": [50.0, 400.0]})
    chains, _, _ = frames()
    chain = chains.head(1).with_columns(
        pl.lit(90.0).alias("total_ms"),
        pl.lit([30.0, 60.0]).alias("delays_ms"),
        pl.lit(0, dtype=pl.UInt32).alias("episode"),
    )
    a = assess_app_retries(chain, episodes, blocked).row(0, named=True)
    assert a["verdict"] == "gave_up_early" and a["needed_extra_ms"] == pytest.approx(310)


def test_error_missing_chain_columns():
    chains, episodes, blocked = frames()
    with pytest.raises(UsageError, match=r"^retry_chains frame: missing columns 'delays_ms'"):
        assess_app_retries(chains.drop("delays_ms"), episodes, blocked)


def test_assess_links_through_episodes_chain_column():
    chains, episodes, blocked = frames()
    # the analysis links episodes → chains instead of chains → episodes
    episodes = episodes.with_columns(pl.Series("chain", [0, 1, 2, 4], dtype=pl.UInt32))
    unlinked = chains.drop("episode").with_columns(pl.lit(1234).alias("pid"))
    a = assess_app_retries(unlinked, episodes, blocked)
    assert a["episode"].to_list() == [0, 1, 2, None, 3]
    assert a["verdict"].to_list()[0] == "gave_up_early"
    assert a["pid"].to_list() == [1234] * 5
