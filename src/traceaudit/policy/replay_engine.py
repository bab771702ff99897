"""Replay retry policies against observed lock timelines.

Input frames (times in float ms, relative to each episode's first failure):

- ``episodes``: ``episode`` (id), ``trace``, ``error_code`` (the Win32 code the app saw),
  ``horizon_ms`` (first failure → end of trace; beyond it nothing is known);
- ``blocked``: ``episode``, ``start_ms``, ``end_ms`` (null: still open at trace end). At
  time t the operation succeeds iff t lies in no interval [start_ms, end_ms).

The engine merges each episode's intervals and keeps their complement, the *free gaps*.
For a schedule with sorted attempt times T₁ ≤ T₂ ≤ …, the first attempt that lands in a
gap [a, b) is ``searchsorted(T, a)`` if that attempt is before b; the earliest such
attempt over all gaps is the success. This is vectorised over episodes × gaps with numpy
(one ``searchsorted`` per draw), so it scales with the number of episodes, not with the
number of attempts.

Beyond the horizon the state at the horizon is assumed to last: an episode free at the
end of the trace stays free, and an attempt past the horizon of an episode that was still
blocked there has an unknown outcome: the episode is *censored* for that policy (counted,
never dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from traceaudit.display import plural
from traceaudit.errors import UsageError
from traceaudit.policy.known import KNOWN_POLICIES, format_triggers
from traceaudit.policy.schedule import ReplayablePolicy, stack_schedules

__all__ = [
    "Timeline",
    "Outcomes",
    "build_timeline",
    "draw_outcomes",
    "replay",
    "replay_table",
    "pool",
    "frames_from_windows",
    "window_lengths",
    "describe_policy",
]

EPISODE_COLUMNS = ("episode", "trace", "error_code", "horizon_ms")
BLOCKED_COLUMNS = ("episode", "start_ms", "end_ms")

FAIL, SUCCESS, CENSORED = 0, 1, 2


def _require(frame: pl.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UsageError(
            f"{name} frame: missing columns {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(repr(c) for c in frame.columns) or 'none'}). "
            "Build it with the conflict analysis or frames_from_windows()."
        )


@dataclass(frozen=True, eq=False)
class Timeline:
    """Episodes as arrays: ids, codes, horizons and the free gaps of each (padded with +inf).

    ``gap_start``/``gap_end`` are (episodes × gaps); padding gaps are [inf, inf) and never
    match. ``window`` is the time until the operation would first succeed (0 if a retry
    right away would have), +inf when it was still blocked at the horizon.
    """

    episode: np.ndarray
    trace: np.ndarray
    error_code: np.ndarray
    horizon: np.ndarray
    gap_start: np.ndarray
    gap_end: np.ndarray
    blocked_at_horizon: np.ndarray
    window: np.ndarray

    @property
    def n(self) -> int:
        """Number of episodes."""
        return len(self.episode)

    def first_free_at(self, t: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
        """Earliest time ≥ ``t`` at which the operation would succeed.

        ``t`` holds one time per episode, or per entry of ``index`` (episode positions) when
        given. +inf when that time is unknown (still blocked at the horizon).
        """
        t = np.asarray(t, dtype=np.float64)[:, None]
        starts = self.gap_start if index is None else self.gap_start[index]
        ends = self.gap_end if index is None else self.gap_end[index]
        cand = np.where(ends > t, np.maximum(starts, t), np.inf)
        return cand.min(axis=1) if cand.shape[1] else np.full(len(t), np.inf)


def build_timeline(episodes: pl.DataFrame, blocked: pl.DataFrame) -> Timeline:
    """Validate the two frames and turn them into a :class:`Timeline`.

    Intervals are clipped to start ≥ 0; intervals that open after the horizon are dropped
    and ones that end after it are treated as still open (nothing past the horizon is
    known); empty intervals block nothing and are ignored. Overlapping or touching
    intervals are merged.
    """
    ep, bl = _validated_frames(episodes, blocked)
    segs = _merged_intervals(ep, bl)
    n = ep.height
    i = segs["_i"].to_numpy().astype(np.int64)
    s = segs["s"].to_numpy()
    e = segs["e"].to_numpy()
    horizon = ep["horizon_ms"].to_numpy()
    gap_start, gap_end = _free_gaps(i, s, e, n)

    bah = np.zeros(n, dtype=bool)
    at_h = (s <= horizon[i]) & (horizon[i] < e)
    bah[i[at_h]] = True

    codes = ep["error_code"].fill_null(-1).to_numpy()
    tl = Timeline(
        episode=ep["episode"].to_numpy(),
        trace=np.asarray(ep["trace"].to_list(), dtype=object),
        error_code=codes,
        horizon=horizon,
        gap_start=gap_start,
        gap_end=gap_end,
        blocked_at_horizon=bah,
        window=np.zeros(n),
    )
    object.__setattr__(tl, "window", tl.first_free_at(np.zeros(n)))
    return tl


def _validated_frames(
    episodes: pl.DataFrame, blocked: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two input frames checked and typed: (episodes with their position ``_i``, a
    null horizon as +inf; blocked intervals).

    Raises :class:`UsageError` for missing columns, repeated episode ids, or intervals of
    episodes the episodes frame does not have: such frames would give silent nonsense.
    """
    _require(episodes, EPISODE_COLUMNS, "episodes")
    _require(blocked, BLOCKED_COLUMNS, "blocked")
    ep = episodes.select(
        pl.col("episode").cast(pl.Int64),
        pl.col("trace").cast(pl.String),
        pl.col("error_code").cast(pl.Int64),
        pl.col("horizon_ms").cast(pl.Float64).fill_null(float("inf")).fill_nan(float("inf")),
    )
    dup = ep.filter(pl.col("episode").is_duplicated())["episode"].unique().sort()
    if len(dup):
        raise UsageError(
            f"episodes frame: episode ids must be unique; repeated: {dup.head(5).to_list()}. "
            "Pool traces with pool(), which renumbers them."
        )
    ep = ep.with_row_index("_i")
    bl = blocked.select(
        pl.col("episode").cast(pl.Int64),
        pl.col("start_ms").cast(pl.Float64),
        pl.col("end_ms").cast(pl.Float64),
    )
    orphans = bl.join(ep, on="episode", how="anti")["episode"].unique().sort()
    if len(orphans):
        raise UsageError(
            f"blocked frame: intervals for {plural(len(orphans), 'episode')} missing from the "
            f"episodes frame (e.g. {orphans.head(5).to_list()}). Pass matching frames."
        )
    return ep, bl


def _merged_intervals(ep: pl.DataFrame, bl: pl.DataFrame) -> pl.DataFrame:
    """Each episode's blocked intervals (``_i``, ``s``, ``e``), clipped to [0, horizon]
    (open past the horizon: ``e`` = +inf), empty ones dropped, overlapping or touching
    ones merged, sorted by episode position and start."""
    inf = float("inf")
    return (
        bl.join(ep.select("episode", "_i", "horizon_ms"), on="episode")
        .with_columns(
            pl.col("start_ms").clip(lower_bound=0.0).fill_null(0.0).alias("s"),
            pl.col("end_ms").fill_null(inf).fill_nan(inf).alias("e"),
        )
        .filter(pl.col("s") <= pl.col("horizon_ms"))
        .with_columns(
            pl.when(pl.col("e") > pl.col("horizon_ms")).then(inf).otherwise(pl.col("e")).alias("e")
        )
        .filter(pl.col("e") > pl.col("s"))
        .sort("_i", "s")
        .with_columns(pl.col("e").cum_max().shift(1).over("_i").alias("_prev"))
        .with_columns(
            (pl.col("_prev").is_null() | (pl.col("s") > pl.col("_prev"))).cum_sum().alias("_seg")
        )
        .group_by("_i", "_seg")
        .agg(pl.col("s").min(), pl.col("e").max())
        .sort("_i", "s")
    )


def _free_gaps(
    i: np.ndarray, s: np.ndarray, e: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The complement of the merged intervals: (gap_start, gap_end), each (n × widest),
    one row per episode, gaps in time order, padded with [inf, inf).

    ``i``, ``s``, ``e`` are the merged intervals sorted by episode position and start. The
    gaps are the one before the first interval (when it starts after 0), those between
    intervals, the one after a last interval that ends, and [0, inf) for an episode
    never blocked; all built at once with numpy, without a loop over episodes.
    """
    first = np.ones(len(i), dtype=bool)
    last = np.ones(len(i), dtype=bool)
    if len(i):
        first[1:] = i[1:] != i[:-1]
        last[:-1] = i[1:] != i[:-1]
    s_next = np.empty_like(s)
    if len(s):
        s_next[:-1] = s[1:]
        s_next[-1] = np.inf
    has_seg = np.zeros(n, dtype=bool)
    has_seg[i] = True
    lead = first & (s > 0)
    trail = last & np.isfinite(e)
    empty = np.flatnonzero(~has_seg)
    gi = np.concatenate([i[lead], i[~last], i[trail], empty])
    ga = np.concatenate([np.zeros(lead.sum()), e[~last], e[trail], np.zeros(len(empty))])
    gb = np.concatenate(
        [s[lead], s_next[~last], np.full(trail.sum(), np.inf), np.full(len(empty), np.inf)]
    )
    order = np.lexsort((ga, gi))
    gi, ga, gb = gi[order], ga[order], gb[order]
    counts = np.bincount(gi, minlength=n)
    width = int(counts.max()) if n and len(gi) else 0
    rank = np.arange(len(gi)) - (np.cumsum(counts) - counts)[gi]
    gap_start = np.full((n, width), np.inf)
    gap_end = np.full((n, width), np.inf)
    gap_start[gi, rank] = ga
    gap_end[gi, rank] = gb
    return gap_start, gap_end


def first_outcomes(
    tl: Timeline, times: np.ndarray, n_retries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each episode × draw, the index of the deciding retry and its state.

    ``times`` is (draws × retries), sorted along each row, padded with +inf. Returns
    ``(index, state)`` of shape (episodes × draws): state SUCCESS at retry ``index``,
    CENSORED at retry ``index`` (the first one past the horizon while still blocked), or
    FAIL (``index`` = number of retries).
    """
    e, g = tl.gap_start.shape
    r = times.shape[0]
    index = np.empty((e, r), dtype=np.int64)
    state = np.empty((e, r), dtype=np.int8)
    flat_start = tl.gap_start.ravel()
    for row in range(r):
        n = int(n_retries[row])
        t = times[row, :n]
        t_ext = np.append(t, np.inf)
        if g:
            ks = np.searchsorted(t, flat_start, side="left").reshape(e, g)
            ok = t_ext[ks] < tl.gap_end
            k_free = np.where(ok, ks, n).min(axis=1)
        else:
            k_free = np.full(e, n)
        k_unk = np.where(tl.blocked_at_horizon, np.searchsorted(t, tl.horizon, side="right"), n)
        success = k_free < k_unk
        censored = ~success & (k_unk < n)
        index[:, row] = np.where(success, k_free, np.where(censored, k_unk, n))
        state[:, row] = np.where(success, SUCCESS, np.where(censored, CENSORED, FAIL))
    return index, state


@dataclass(frozen=True, eq=False)
class Outcomes:
    """One policy replayed on a timeline: (episodes × draws) arrays.

    ``attempts`` counts the first failure too (1 = no retry); ``wait`` is the cumulative
    delay at the successful attempt, or everything slept before giving up. Both are
    meaningless (−1 / NaN) where ``state`` is CENSORED.
    """

    triggered: np.ndarray
    state: np.ndarray
    attempts: np.ndarray
    wait: np.ndarray


def draw_outcomes(
    tl: Timeline, policy: ReplayablePolicy, *, draws: int = 200, seed: int = 0
) -> Outcomes:
    """Replay ``policy`` on every episode of ``tl``; jittered policies get ``draws`` draws.

    The same draws are used for every episode (common random numbers), from
    ``numpy.random.default_rng(seed)``: the result is the same on every run.
    """
    rng = np.random.default_rng(seed)
    r = max(int(draws), 1) if policy.jittered else 1
    times, n_retries, total = stack_schedules([policy.schedule(rng) for _ in range(r)])
    index, state = first_outcomes(tl, times, n_retries)
    triggered = np.array([policy.retries_on(int(c)) for c in tl.error_code], dtype=bool)
    t_ext = np.concatenate([times, np.full((r, 1), np.inf)], axis=1)
    rows = np.broadcast_to(np.arange(r), index.shape)
    at = t_ext[rows, index]
    attempts = np.where(state == SUCCESS, index + 2, np.where(state == FAIL, index + 1, -1))
    wait = np.where(state == SUCCESS, at, np.where(state == FAIL, total[None, :], np.nan))
    state = np.where(triggered[:, None], state, FAIL).astype(np.int8)
    attempts = np.where(triggered[:, None], attempts, 1)
    wait = np.where(triggered[:, None], wait, 0.0)
    return Outcomes(triggered=triggered, state=state, attempts=attempts, wait=wait)


def describe_policy(policy: ReplayablePolicy) -> tuple[str, str, str]:
    """``(tool, version, triggers)`` for tables, for known and suggested policies alike."""
    tool = getattr(policy, "tool", None)
    if tool is not None:
        return tool, getattr(policy, "version", ""), policy.triggers_text  # type: ignore[attr-defined]
    codes = tuple(getattr(policy, "error_codes", ()))
    label = getattr(policy, "describe", None)
    return ("suggested" if label is None else f"suggested: {label()}", "", format_triggers(codes))


def _per_draw_frame(tl: Timeline, out: Outcomes) -> pl.DataFrame:
    """One row per episode × draw, with exact per-draw outcomes (null where censored)."""
    e, r = out.state.shape
    decided = (out.state != CENSORED).ravel()
    rows = np.repeat(np.arange(e), r)
    return pl.DataFrame(
        {
            "trace": pl.Series(tl.trace.tolist(), dtype=pl.String).gather(rows),
            "episode": pl.Series(tl.episode[rows]).cast(pl.UInt32),
            "error_code": pl.Series(tl.error_code[rows]).replace(-1, None).cast(pl.Int64),
            "draw": np.tile(np.arange(r, dtype=np.uint32), e),
            "triggered": out.triggered[rows],
            "success": pl.Series((out.state == SUCCESS).ravel()),
            "_decided": decided,
            "attempts": out.attempts.ravel().astype(np.int64),
            "wait_ms": out.wait.ravel(),
            "censored": (out.state == CENSORED).ravel(),
        }
    ).with_columns(
        pl.when("_decided").then(pl.col("success")).alias("success"),
        pl.when("_decided").then(pl.col("attempts")).alias("attempts"),
        pl.when("_decided").then(pl.col("wait_ms")).alias("wait_ms"),
    )


def _summary(out: Outcomes, rows: np.ndarray) -> dict[str, float | int | None]:
    """replay_table's numbers for the episodes at positions ``rows`` (numpy, no frames)."""
    state = out.state[rows]
    decided = state != CENSORED
    n_decided = int(decided.sum())
    waits = out.wait[rows][decided]
    return {
        "episodes": len(rows),
        "triggered": int(out.triggered[rows].sum()),
        "success_rate": float((state == SUCCESS).sum() / n_decided) if n_decided else None,
        "median_wait_ms": float(np.median(waits)) if n_decided else None,
        "worst_wait_ms": float(waits.max()) if n_decided else None,
        "mean_attempts": float(out.attempts[rows][decided].mean()) if n_decided else None,
        "censored": int((~decided).any(axis=1).sum()),
    }


def replay(
    episodes: pl.DataFrame,
    blocked: pl.DataFrame,
    policy: ReplayablePolicy,
    *,
    draws: int = 200,
    seed: int = 0,
    per_draw: bool = False,
) -> pl.DataFrame:
    """Replay one policy on every lock episode: would it have ridden out the lock?

    One row per episode: ``trace``, ``episode``, ``error_code``, ``triggered`` (the policy
    retries on that code at all; if not it fails at once), ``draws``, ``success``
    (Boolean; null when the outcome is unknown in every draw; for jittered policies true
    when most decided draws succeed), ``p_success`` (fraction of decided draws that
    succeed), ``attempts`` (mean attempts used, the first failure included), ``wait_ms``
    (mean added wait: cumulative delay at the success, or all that was slept before giving
    up), ``censored`` (in at least one draw the schedule went past the horizon while the
    file was still blocked) and ``p_censored``. With ``per_draw=True`` one row per
    episode × draw instead, with exact Boolean/Int64 values and a ``draw`` column.
    """
    tl = build_timeline(episodes, blocked)
    frame = _per_draw_frame(tl, draw_outcomes(tl, policy, draws=draws, seed=seed))
    if per_draw:
        return frame.drop("_decided")
    return (
        frame.group_by("trace", "episode", "error_code", "triggered", maintain_order=True)
        .agg(
            pl.len().cast(pl.UInt32).alias("draws"),
            pl.col("success").cast(pl.Float64).mean().alias("p_success"),
            pl.col("attempts").cast(pl.Float64).mean().alias("attempts"),
            pl.col("wait_ms").mean(),
            pl.col("censored").any().alias("censored"),
            pl.col("censored").cast(pl.Float64).mean().alias("p_censored"),
        )
        .with_columns((pl.col("p_success") >= 0.5).alias("success"))
        .select(
            "trace",
            "episode",
            "error_code",
            "triggered",
            "draws",
            "success",
            "p_success",
            "attempts",
            "wait_ms",
            "censored",
            "p_censored",
        )
    )


def replay_table(
    episodes: pl.DataFrame,
    blocked: pl.DataFrame,
    policies: Iterable[ReplayablePolicy] = KNOWN_POLICIES,
    *,
    draws: int = 200,
    seed: int = 0,
    by_trace: bool = False,
) -> pl.DataFrame:
    """How each policy would have fared on these episodes, one row per policy.

    Columns: ``tool``, ``version``, ``triggers`` (``"5"``, ``"5,32"``, ``"any"``),
    ``episodes``, ``triggered`` (episodes whose code the policy retries on),
    ``success_rate`` (over decided episode × draw outcomes: censored ones are left out
    and counted in ``censored``), ``median_wait_ms``, ``worst_wait_ms``, ``mean_attempts``
    and ``censored`` (episodes whose outcome was unknown in at least one draw). With
    ``by_trace=True`` one row per policy and trace, with a ``trace`` column.
    """
    tl = build_timeline(episodes, blocked)
    groups: list[tuple[str | None, np.ndarray]]
    if by_trace:
        names, inverse = np.unique(tl.trace.astype(str), return_inverse=True)
        groups = [(str(name), np.flatnonzero(inverse == k)) for k, name in enumerate(names)]
    else:
        groups = [(None, np.arange(tl.n))]
    records = []
    for policy in policies:
        out = draw_outcomes(tl, policy, draws=draws, seed=seed)
        tool, version, triggers = describe_policy(policy)
        for name, rows in groups:
            head: dict[str, Any] = {"tool": tool, "version": version, "triggers": triggers}
            if by_trace:
                head["trace"] = name
            records.append(head | _summary(out, rows))
    schema: dict[str, pl.DataType] = {
        "tool": pl.String(),
        "version": pl.String(),
        "triggers": pl.String(),
        **({"trace": pl.String()} if by_trace else {}),
        "episodes": pl.UInt32(),
        "triggered": pl.UInt32(),
        "success_rate": pl.Float64(),
        "median_wait_ms": pl.Float64(),
        "worst_wait_ms": pl.Float64(),
        "mean_attempts": pl.Float64(),
        "censored": pl.UInt32(),
    }
    return pl.DataFrame(records, schema=schema, orient="row")


def window_lengths(episodes: pl.DataFrame, blocked: pl.DataFrame) -> pl.DataFrame:
    """Each episode's blocked time: how long after the first failure a retry would first work.

    Columns ``trace``, ``episode``, ``error_code``, ``window_ms`` (the time observed, up to
    the horizon, for censored ones) and ``censored`` (still blocked when the trace ended).
    """
    tl = build_timeline(episodes, blocked)
    cens = ~np.isfinite(tl.window)
    return pl.DataFrame(
        {
            "trace": tl.trace.tolist(),
            "episode": tl.episode,
            "error_code": tl.error_code,
            "window_ms": np.where(cens, tl.horizon, tl.window),
            "censored": cens,
        }
    ).with_columns(
        pl.col("episode").cast(pl.UInt32), pl.col("error_code").replace(-1, None).cast(pl.Int64)
    )


def frames_from_windows(
    windows_ms: Sequence[float] | np.ndarray,
    *,
    horizon_ms: float | Sequence[float] | np.ndarray | None = None,
    error_code: int | Sequence[int] = 5,
    trace: str = "synthetic",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Episodes and blocked frames for simple locks: one blocker from 0 to each window's end.

    ``horizon_ms`` defaults to twice the longest window (nothing censored); a window
    longer than its horizon becomes an open (censored) interval. Handy for simulations,
    notebooks and tests.
    """
    w = np.asarray(windows_ms, dtype=np.float64)
    if horizon_ms is None:
        horizon_ms = float(2 * w.max()) if len(w) else 0.0
    h = np.broadcast_to(np.asarray(horizon_ms, dtype=np.float64), w.shape)
    codes = np.broadcast_to(np.asarray(error_code, dtype=np.int64), w.shape)
    ids = np.arange(len(w), dtype=np.uint32)
    episodes = pl.DataFrame(
        {"episode": ids, "trace": [trace] * len(w), "error_code": codes, "horizon_ms": h},
        schema={
            "episode": pl.UInt32,
            "trace": pl.String,
            "error_code": pl.Int64,
            "horizon_ms": pl.Float64,
        },
    )
    blocked = pl.DataFrame(
        {
            "episode": ids,
            "start_ms": np.zeros(len(w)),
            "end_ms": [None if wi > hi else float(wi) for wi, hi in zip(w, h, strict=True)],
        },
        schema={"episode": pl.UInt32, "start_ms": pl.Float64, "end_ms": pl.Float64},
    )
    return episodes, blocked


def pool(*parts: tuple[pl.DataFrame, ...]) -> tuple[pl.DataFrame, ...]:
    """Pool several traces' frames into one set, renumbering episodes (and chains).

    Each part is ``(episodes, blocked)`` or ``(episodes, blocked, retry_chains)``, all of the
    same shape. Episode ids are renumbered 0…n−1 across parts (the original id is kept in
    ``source_episode``; chains likewise in ``source_chain``), and ``blocked`` and the
    chains' ``episode`` links follow. Trace names must differ between parts: the same name
    twice usually means the same trace pooled twice.
    """
    if not parts:
        raise UsageError("pool() needs at least one (episodes, blocked) pair")
    arity = {len(p) for p in parts}
    if len(arity) != 1 or arity.pop() not in (2, 3):
        raise UsageError(
            "pool(): every part must be (episodes, blocked) or (episodes, blocked, retry_chains)"
        )
    seen: dict[str, int] = {}
    out_ep, out_bl, out_ch = [], [], []
    ep_offset = ch_offset = 0
    for k, part in enumerate(parts):
        episodes, blocked = part[0], part[1]
        _require(episodes, EPISODE_COLUMNS, f"pool() part {k} episodes")
        _require(blocked, BLOCKED_COLUMNS, f"pool() part {k} blocked")
        for name in episodes["trace"].unique().to_list():
            if name in seen:
                raise UsageError(
                    f"pool(): trace {name!r} appears in parts {seen[name]} and {k}; "
                    "give each trace a distinct name"
                )
            seen[name] = k
        ids = episodes.select(pl.col("episode").cast(pl.Int64)).unique(maintain_order=True)
        mapping = ids.with_columns(
            (pl.int_range(pl.len()) + ep_offset).cast(pl.UInt32).alias("_new")
        )
        ep_offset += ids.height

        def relink(frame: pl.DataFrame, mapping: pl.DataFrame = mapping) -> pl.DataFrame:
            return (
                frame.with_columns(pl.col("episode").cast(pl.Int64))
                .join(mapping, on="episode", how="left")
                .with_columns(
                    pl.col("episode").alias("source_episode"), pl.col("_new").alias("episode")
                )
                .drop("_new")
            )

        out_ep.append(relink(episodes))
        out_bl.append(relink(blocked))
        if len(part) == 3:
            chains = relink(part[2])
            chains = chains.with_columns(
                pl.col("chain").alias("source_chain"),
                (pl.int_range(pl.len()) + ch_offset).cast(pl.UInt32).alias("chain"),
            )
            ch_offset += chains.height
            out_ch.append(chains)
    result = [pl.concat(out_ep, how="diagonal_relaxed"), pl.concat(out_bl, how="diagonal_relaxed")]
    if out_ch:
        result.append(pl.concat(out_ch, how="diagonal_relaxed"))
    return tuple(result)
