"""Judge the application's own retries: what schedule did it use, and was it long enough?

A retry chain is the app trying the same operation on the same path again and again. From
the gaps between its attempts (``delays_ms``) the schedule is inferred: immediate, fixed,
linear (constant step), exponential (constant ratio, perhaps capped) or irregular
(jittered or hand-rolled). Measured gaps include the operation's own time and Windows
timer rounding (15.6 ms by default), so the tests use a relative tolerance.

Linked to its lock episode, a chain that gave up is compared with the time the operation
would first have succeeded after its last attempt: it *gave up too early* by that much.
Chains whose first failure is the episode's first failure share its clock (t = 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from traceaudit.display import fmt_duration
from traceaudit.errors import UsageError
from traceaudit.policy.replay_engine import Timeline, build_timeline

__all__ = ["ScheduleFit", "infer_schedule", "assess_app_retries", "CHAIN_COLUMNS"]

CHAIN_COLUMNS = (
    "chain",
    "trace",
    "process",
    "operation",
    "path",
    "error_code",
    "attempts",
    "delays_ms",
    "succeeded",
    "total_ms",
    "episode",
)

REL_TOL = 0.25  # relative spread accepted as "the same delay" / a good fit
PLATEAU_TOL = 0.1  # tighter: a cap repeats the same delay
FIXED_SHARE = 0.8  # share of gaps near the median that still reads as a fixed delay
MIN_FACTOR = 1.15  # slower growth than this is noise around a fixed delay
ABS_TOL_MS = 2.0  # timer jitter on tiny delays
IMMEDIATE_MS = 1.0


@dataclass(frozen=True)
class ScheduleFit:
    """The schedule inferred from observed gaps between attempts.

    ``kind`` is ``none`` (no retry), ``immediate``, ``single`` (one retry), ``fixed``,
    ``linear``, ``exponential`` or ``irregular``. ``factor`` is set for exponential
    (geometric growth per retry), ``step_ms`` for linear, ``max_delay_ms`` is the largest
    gap (the cap when the gaps plateau, ``capped``). ``ambiguous`` flags fits that two
    kinds explain equally (two growing delays: ×2 or +d?).
    """

    kind: str
    retries: int
    first_delay_ms: float | None = None
    factor: float | None = None
    step_ms: float | None = None
    max_delay_ms: float | None = None
    capped: bool = False
    total_ms: float = 0.0
    ambiguous: bool = False

    @property
    def text(self) -> str:
        """A short description, e.g. ``10 ms ×2, 10 retries over 10.2 s``."""
        n = self.retries
        if self.kind == "none":
            return "no retry"
        tail = f", {n} retr{'y' if n == 1 else 'ies'} over {fmt_duration(self.total_ms)}"
        if self.kind == "immediate":
            return f"immediate{tail}"
        first = fmt_duration(self.first_delay_ms or 0.0)
        if self.kind in ("single", "fixed"):
            return f"fixed {first}{tail}"
        cap = f" capped at {fmt_duration(self.max_delay_ms or 0.0)}" if self.capped else ""
        amb = " (or linear: too few delays to tell)" if self.ambiguous else ""
        if self.kind == "exponential":
            return f"{first} ×{self.factor:.2g}{cap}{tail}{amb}"
        if self.kind == "linear":
            return f"{first} +{fmt_duration(self.step_ms or 0.0)} per retry{cap}{tail}"
        return f"irregular {first} … {fmt_duration(self.max_delay_ms or 0.0)}{tail}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        return {
            "kind": self.kind,
            "retries": self.retries,
            "first_delay_ms": self.first_delay_ms,
            "factor": self.factor,
            "step_ms": self.step_ms,
            "max_delay_ms": self.max_delay_ms,
            "capped": self.capped,
            "total_ms": self.total_ms,
            "ambiguous": self.ambiguous,
            "text": self.text,
        }


def _close(a: np.ndarray, b: float, rel: float = REL_TOL) -> np.ndarray:
    return np.abs(a - b) <= max(rel * abs(b), ABS_TOL_MS)


def _rel_rms(residual: np.ndarray, scale: np.ndarray) -> float:
    return float(np.sqrt(np.mean((residual / np.maximum(scale, ABS_TOL_MS)) ** 2)))


def infer_schedule(delays_ms: Sequence[float] | np.ndarray) -> ScheduleFit:
    """Infer a chain's retry schedule from the gaps between its attempts.

    Exponential growth is fitted as a line through log(delay) (its slope gives the
    factor); linear growth as a line through the delays. A plateau of equal largest delays
    at the end is read as a cap, and only the growth before it is fitted. The better of
    the two fits wins if its relative error is within 25 %; otherwise ``irregular``.
    """
    d = np.asarray([x for x in delays_ms if x is not None], dtype=np.float64)
    n = len(d)
    total = float(d.sum())
    if n == 0:
        return ScheduleFit("none", 0)
    first, top = float(d[0]), float(d.max())
    if top < IMMEDIATE_MS:
        return ScheduleFit("immediate", n, first_delay_ms=first, max_delay_ms=top, total_ms=total)
    if n == 1:
        return ScheduleFit("single", 1, first_delay_ms=first, max_delay_ms=first, total_ms=total)
    med = float(np.median(d))
    close = _close(d, med)
    # all gaps alike, or all but a stray one (a timer hiccup, a slow attempt)
    if bool(np.all(close)) or (n >= 4 and float(np.mean(close)) >= FIXED_SHARE):
        return ScheduleFit("fixed", n, first_delay_ms=med, max_delay_ms=top, total_ms=total)

    # a plateau of (near-)maximal delays at the end is a cap
    at_top = _close(d, top, PLATEAU_TOL)
    plateau = 0
    while plateau < n and at_top[n - 1 - plateau]:
        plateau += 1
    capped = 2 <= plateau < n
    # fit the growth before the plateau (a capped delay is not part of the curve); with a
    # single growing delay, keep the first capped one as the second point
    growth = d[: max(n - plateau, 2)] if capped else d
    if capped:
        top = float(np.median(d[n - plateau :]))
    idx = np.arange(len(growth), dtype=np.float64)

    fits: list[tuple[float, str, float | None, float | None, float]] = []
    if len(growth) >= 2 and np.all(growth > 0):
        slope, icpt = np.polyfit(idx, np.log(growth), 1)
        pred = np.exp(icpt + slope * idx)
        fits.append((_rel_rms(growth - pred, growth), "exponential", math.exp(slope), None, first))
    if len(growth) >= 2:
        slope, icpt = np.polyfit(idx, growth, 1)
        pred = icpt + slope * idx
        fits.append((_rel_rms(growth - pred, growth), "linear", None, float(slope), first))
    fits.sort(key=lambda f: (round(f[0], 9), 0 if f[1] == "exponential" else 1))
    err, kind, factor, step, first_fit = fits[0]
    ok = err <= REL_TOL and (
        (kind == "exponential" and factor is not None and factor >= MIN_FACTOR)
        or (kind == "linear" and step is not None and step > 0)
    )
    if not ok:
        return ScheduleFit("irregular", n, first_delay_ms=first, max_delay_ms=top, total_ms=total)
    ambiguous = len(growth) <= 2 and kind == "exponential" and len(fits) > 1
    return ScheduleFit(
        kind,
        n,
        first_delay_ms=first_fit,
        factor=factor,
        step_ms=step,
        max_delay_ms=top,
        capped=capped,
        total_ms=total,
        ambiguous=ambiguous,
    )


def assess_app_retries(
    retry_chains: pl.DataFrame, episodes: pl.DataFrame, blocked: pl.DataFrame
) -> pl.DataFrame:
    """Each retry chain's inferred schedule and whether it gave up too early.

    The chains link to their episode by ``retry_chains.episode`` or, failing that, by
    ``episodes.chain`` (matched on ``trace`` and ``chain``). Returns the chains' columns
    (``chain``, ``trace``, ``process``, ``operation``, ``path``, ``error_code``,
    ``attempts``, ``succeeded``, ``total_ms``, ``episode`` and any others, less
    ``delays_ms``) plus:

    - ``schedule`` (kind), ``first_delay_ms``, ``factor``, ``step_ms``, ``max_delay_ms``,
      ``schedule_text``: see :func:`infer_schedule`;
    - ``window_ms``: when the operation would first have succeeded after the first failure
      (null if the file was still blocked when the trace ended);
    - ``free_after_ms``: the first time at or after the chain's last attempt at which it
      would have succeeded (null: unknown, still blocked at trace end);
    - ``needed_extra_ms``: for chains that gave up, how much longer they needed to keep
      trying (``free_after_ms − total_ms``);
    - ``overshoot_ms``: for chains that succeeded, how long after the lock lifted the
      successful attempt came (time lost to coarse delays);
    - ``verdict``: ``ok``, ``gave_up_early``, ``gave_up_unknown`` (blocker outlasted the
      trace), ``failed_while_free`` (the trace shows no blocker at the last attempt: a
      handle the analysis missed, or not a lock), ``unlinked`` (no episode);
    - ``advice``: one sentence.
    """
    chains = _link_episodes(retry_chains, episodes)
    missing = [c for c in CHAIN_COLUMNS if c not in chains.columns]
    if missing:
        raise UsageError(
            f"retry_chains frame: missing columns {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(repr(c) for c in retry_chains.columns) or 'none'})."
        )
    tl = build_timeline(episodes, blocked)
    records = list(chains.iter_rows(named=True))
    index, totals, free_at_end, free_before_last = _free_times(records, tl)
    rows = [
        _chain_row(
            ch,
            float(totals[k]),
            int(index[k]),
            tl,
            float(free_at_end[k]),
            float(free_before_last[k]),
        )
        for k, ch in enumerate(records)
    ]
    extra = pl.DataFrame(rows, schema=_ASSESSMENT_SCHEMA)
    kept = chains.drop("delays_ms", *[c for c in extra.columns if c in chains.columns])
    return pl.concat([kept, extra], how="horizontal")


# The columns assess_app_retries adds to the chains', in this order.
_ASSESSMENT_SCHEMA = {
    "schedule": pl.String,
    "first_delay_ms": pl.Float64,
    "factor": pl.Float64,
    "step_ms": pl.Float64,
    "max_delay_ms": pl.Float64,
    "schedule_text": pl.String,
    "window_ms": pl.Float64,
    "free_after_ms": pl.Float64,
    "needed_extra_ms": pl.Float64,
    "overshoot_ms": pl.Float64,
    "verdict": pl.String,
    "advice": pl.String,
}


def _free_times(
    records: list[dict[str, Any]], tl: Timeline
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every chain at once: (its episode's position in ``tl``, -1 when unlinked; its
    total time; the first free time after its last attempt; after the one before it).

    Free times are +inf when unknown (still blocked at the horizon, or no episode).
    """
    pos = {int(e): i for i, e in enumerate(tl.episode)}
    index = np.array(
        [pos.get(int(c["episode"]), -1) if c["episode"] is not None else -1 for c in records],
        dtype=np.int64,
    )
    totals = np.array(
        [
            float(c["total_ms"]) if c["total_ms"] is not None else float(sum(c["delays_ms"] or []))
            for c in records
        ]
    )
    last_gap = np.array([float((c["delays_ms"] or [0.0])[-1] or 0.0) for c in records])
    linked = index >= 0
    free_at_end = np.full(len(records), np.inf)
    free_before_last = np.full(len(records), np.inf)
    if linked.any():
        free_at_end[linked] = tl.first_free_at(totals[linked], index[linked])
        free_before_last[linked] = tl.first_free_at(
            np.maximum(totals[linked] - last_gap[linked], 0.0), index[linked]
        )
    return index, totals, free_at_end, free_before_last


def _chain_row(
    ch: dict[str, Any],
    total: float,
    i: int,
    tl: Timeline,
    free: float,
    lifted: float,
) -> dict[str, Any]:
    """One chain's added columns (:data:`_ASSESSMENT_SCHEMA`): its schedule, then its
    verdict against episode position ``i`` of ``tl`` (-1: unlinked)."""
    delays = [float(x) for x in (ch["delays_ms"] or []) if x is not None]
    fit = infer_schedule(delays)
    row: dict[str, Any] = {
        "schedule": fit.kind,
        "first_delay_ms": fit.first_delay_ms,
        "factor": fit.factor,
        "step_ms": fit.step_ms,
        "max_delay_ms": fit.max_delay_ms,
        "schedule_text": fit.text,
        "window_ms": None,
        "free_after_ms": None,
        "needed_extra_ms": None,
        "overshoot_ms": None,
    }
    if i < 0:
        row["verdict"] = "unlinked"
        row["advice"] = "Not linked to a lock episode: no blocker to compare with."
        return row
    window = float(tl.window[i])
    row["window_ms"] = window if math.isfinite(window) else None
    if ch["succeeded"]:
        row.update(_succeeded(total, lifted, fit))
    else:
        row.update(_gave_up(total, free, float(tl.horizon[i]), fit))
    return row


def _succeeded(total: float, lifted: float, fit: ScheduleFit) -> dict[str, Any]:
    """Verdict of a chain that succeeded at ``total``: ``ok``, and how long after the lock
    lifted (``lifted``: first free time after the attempt before the last) it came."""
    overshoot = total - lifted if math.isfinite(lifted) and lifted <= total else None
    advice = f"Succeeded after {fmt_duration(total)} ({fit.text})." + (
        f" The lock lifted {fmt_duration(overshoot)} before the successful try."
        if overshoot
        else ""
    )
    return {"overshoot_ms": overshoot, "verdict": "ok", "advice": advice}


def _gave_up(total: float, free: float, horizon: float, fit: ScheduleFit) -> dict[str, Any]:
    """Verdict of a chain that gave up at ``total``, against ``free`` (the first free time
    after its last attempt, +inf if still blocked at ``horizon``, the end of the trace)."""
    if not math.isfinite(free):
        return {
            "verdict": "gave_up_unknown",
            "advice": (
                f"Gave up after {fmt_duration(total)} ({fit.text}); the file was still blocked "
                f"when the trace ended, {fmt_duration(horizon)} after the first "
                f"failure: it needed at least {fmt_duration(max(horizon - total, 0.0))} "
                "more, how much more the trace cannot tell."
            ),
        }
    if free > total:
        return {
            "free_after_ms": free,
            "needed_extra_ms": free - total,
            "verdict": "gave_up_early",
            "advice": (
                f"Gave up {fmt_duration(free - total)} too early: its retries ({fit.text}) ended "
                f"at {fmt_duration(total)}, the lock lifted at {fmt_duration(free)}."
            ),
        }
    return {
        "free_after_ms": free,
        "verdict": "failed_while_free",
        "advice": (
            f"Its last attempt at {fmt_duration(total)} failed although the trace shows no "
            "blocker then: a handle the analysis missed, or not a lock (an ACL?)."
        ),
    }


def _link_episodes(retry_chains: pl.DataFrame, episodes: pl.DataFrame) -> pl.DataFrame:
    """Add the ``episode`` link when the chains lack it but the episodes name their chain.

    The analysis may link the other way round (``episodes.chain``); both say the same.
    """
    if "episode" in retry_chains.columns or not {"trace", "chain", "episode"} <= set(
        episodes.columns
    ):
        return retry_chains
    if not {"trace", "chain"} <= set(retry_chains.columns):
        return retry_chains
    link = episodes.select(
        pl.col("trace").cast(pl.String),
        pl.col("chain").cast(pl.Int64).alias("_chain"),
        pl.col("episode"),
    ).unique(subset=["trace", "_chain"], keep="first")
    return (
        retry_chains.with_columns(pl.col("chain").cast(pl.Int64).alias("_chain"))
        .join(link, on=["trace", "_chain"], how="left", maintain_order="left")
        .drop("_chain")
    )
