"""What the figures and the HTML report draw, computed from a Report without matplotlib.

The drawing code (:mod:`traceaudit.report.plot`) and the HTML page (:mod:`traceaudit.report.html`) both
need the same few derived tables: which paths were blocked, the handles and failures of
one path on a millisecond axis, the blocked times with their censoring, how far a retry
schedule would have got, and the conflicts per blocking process. They live here, as plain
numpy / polars, so that they can be tested and reused without importing matplotlib.

Times on a figure are float milliseconds relative to an ``origin``: the first failure on
the path, or the first event shown when nothing failed there. Offsets are computed on the
trace's integer nanoseconds, so the 100 ns precision of a Procmon time survives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from traceaudit.analysis.conflicts import BLOCKED_VERDICTS
from traceaudit.analysis.rules import SEP, fold, path_key

if TYPE_CHECKING:
    from traceaudit.report.data import ReportData as Report

__all__ = [
    "DEFAULT_POLICIES",
    "BlockedPath",
    "PolicyCurve",
    "TimelineData",
    "WindowSample",
    "blocked_paths",
    "blocker_counts",
    "policy_curve",
    "shorten_middle",
    "timeline_data",
    "window_sample",
]

DEFAULT_POLICIES: tuple[str, ...] = (
    "uv",
    "graceful-fs",
    "Go cmd/go robustio",
    "rustup rename",
    "MSBuild Copy",
    ".NET SDK FileAccessRetrier",
)
"""Real tools drawn over the blocked times by default: a spread of short and long budgets."""

MAX_ROWS = 30
"""Processes shown on one timeline; the rest are counted in the subtitle."""

MAX_LANES = 6
"""Overlapping handles of one process are stacked in at most this many lanes."""

_NS_PER_MS = 1_000_000.0


def shorten_middle(text: str, width: int = 72) -> str:
    """``text`` cut to at most ``width`` characters by replacing its middle with ``…``.

    Paths keep their drive and their last components, which are the parts that identify a
    file; the middle (``Users\\me\\AppData\\Local``) is what a reader can do without. The
    cut falls on backslashes when there is one in each half.
    """
    if width < 5 or len(text) <= width:
        return text
    keep = width - 2  # room for "…" and the separator after it
    head, start = text[: keep // 2], len(text) - (keep - keep // 2)
    if SEP in head[1:] and SEP in text[start:-1]:
        head = head[: head.rindex(SEP) + 1]
        if text[start - 1] != SEP:  # start the tail at a whole component
            start = text.index(SEP, start) + 1
        return head + "…" + SEP + text[start:]
    keep = width - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


def _ms_between(later: datetime | None, earlier: datetime) -> float | None:
    if later is None:
        return None
    return (later - earlier).total_seconds() * 1000.0


def _epoch_ns(value: datetime, nanos: int | None = None) -> int:
    """A naive datetime as integer ns since 1970 (``nanos``: the exact sub-second part)."""
    if nanos is not None:
        value = value.replace(microsecond=0)
    base = int(pl.Series([value], dtype=pl.Datetime("ns")).dt.epoch("ns")[0])
    return base + (nanos or 0)


def _rel_ms(column: str, origin_ns: int) -> pl.Expr:
    """``column`` (Datetime) as float ms after ``origin_ns``."""
    return (pl.col(column).dt.epoch("ns") - origin_ns) / _NS_PER_MS


def _under(key: str) -> pl.Expr:
    """Rows whose folded ``path`` is ``key`` or below it."""
    folded = path_key("path")
    prefix = key if key.endswith(SEP) else key + SEP  # a drive root keeps its backslash
    return (folded == key) | folded.str.starts_with(prefix)


def _trace_span(report: Report, trace: str | None) -> tuple[int | None, int | None]:
    """First and last event time (epoch ns) of the capture named ``trace`` (or of all).

    From the traces' summaries, which count every event read: ``report.events`` holds
    only the events the analysis kept, a narrower span. The kept events serve only when
    no summary has a time.
    """
    chosen = [t for t in report.traces if trace is None or t.name == trace] or list(report.traces)
    firsts = [_epoch_ns(t.first, t.first_ns) for t in chosen if t.first is not None]
    lasts = [_epoch_ns(t.last, t.last_ns) for t in chosen if t.last is not None]
    if firsts and lasts:
        return min(firsts), max(lasts)
    events = report.events
    if events.height and "time" in events.columns:
        if trace is not None and "trace" in events.columns:
            events = events.filter(pl.col("trace") == trace)
        span = events.select(
            first=pl.col("time").dt.epoch("ns").min(), last=pl.col("time").dt.epoch("ns").max()
        ).row(0)
        if span[0] is not None:
            return int(span[0]), int(span[1])
    return None, None


# ---------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class BlockedPath:
    """One failing path: where it was, how often it failed, and by whom it was held."""

    trace: str
    path: str
    conflicts: int
    blocked_by_other: int
    blockers: tuple[str, ...]


def blocked_paths(report: Report, limit: int | None = None) -> list[BlockedPath]:
    """Paths with conflicts, the most telling first.

    Paths blocked by another process come first (most such conflicts first), then the
    rest by number of conflicts; ties keep the order of the first failure. One entry per
    (trace, folded path).
    """
    frame = report.conflicts
    if frame.is_empty():
        return []
    if "trace" not in frame.columns:
        frame = frame.with_columns(trace=pl.lit("<memory>"))
    grouped = (
        frame.with_columns(key=path_key("path"), n=pl.int_range(pl.len()))
        .group_by("trace", "key", maintain_order=True)
        .agg(
            path=pl.col("path").first(),
            conflicts=pl.len(),
            other=(pl.col("verdict") == "blocked-by-other-process").sum(),
            first=pl.col("n").min(),
            blockers=pl.col("decisive_process").drop_nulls().unique(maintain_order=True),
        )
        .sort(["other", "conflicts", "first"], descending=[True, True, False])
    )
    if limit is not None:
        grouped = grouped.head(limit)
    return [
        BlockedPath(
            trace=r["trace"],
            path=r["path"],
            conflicts=int(r["conflicts"]),
            blocked_by_other=int(r["other"]),
            blockers=tuple(r["blockers"]),
        )
        for r in grouped.iter_rows(named=True)
    ]


def default_path(report: Report) -> tuple[str, str] | None:
    """(trace, path) of the first conflict blocked by another process, else the first one."""
    frame = report.conflicts
    if frame.is_empty():
        return None
    other = frame.filter(pl.col("verdict") == "blocked-by-other-process")
    row = (other if other.height else frame).sort("time").row(0, named=True)
    return row.get("trace", "<memory>"), row["path"]


# ---------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class TimelineData:
    """Everything the timeline of one path draws, on a millisecond axis from ``origin``.

    ``rows``: one label per process row, top to bottom (``process (pid)``), and
    ``failing_rows``: the indices of rows whose process had a failure.
    ``bars``: one row per handle with ``handle``, ``pid``, ``process``, ``path``,
    ``row`` (index into ``rows``), ``lane`` / ``lanes`` (stacking of overlapping handles of
    one process), ``start_ms`` / ``end_ms`` (trace start / end stand in for an unknown
    open / close), ``open_before_capture``, ``open_at_end``, ``role`` (``blocker``: it
    blocked one of the failures or a retry of it; ``failing``: the failing process's own;
    ``other``), ``share_mode``, ``access_mask``, ``relation`` (a blocker's: ``same-path``,
    ``below`` or ``target``).
    ``failures``: ``x_ms``, ``row``, ``result``, ``operation``, ``remaining_ms``,
    ``censored``. ``successes``: ``x_ms``, ``row`` of the retries that finally worked.
    ``held``: merged intervals ``(start_ms, end_ms, censored)`` from each failure to its
    last blocker's close (to the trace end when it never closed).
    """

    trace: str
    path: str
    origin: datetime
    origin_ns: int
    origin_is_failure: bool
    trace_start_ms: float | None
    trace_end_ms: float | None
    rows: tuple[str, ...]
    failing_rows: tuple[int, ...]
    hidden_processes: int
    bars: pl.DataFrame
    failures: pl.DataFrame
    successes: pl.DataFrame
    held: tuple[tuple[float, float, bool], ...]

    def focus(self) -> tuple[float, float]:
        """The x range worth showing: every known time of the path, padded a little.

        Trace edges (standing in for unknown opens and closes) are included only when
        they are close to the rest; otherwise bars run off the side, hatched to say so.
        """
        points: list[float] = []
        points += self.failures["x_ms"].to_list()
        points += self.successes["x_ms"].to_list()
        bars = self.bars
        if bars.height:
            points += bars.filter(~pl.col("open_before_capture"))["start_ms"].to_list()
            points += bars.filter(~pl.col("open_at_end"))["end_ms"].to_list()
        points += [end for _, end, censored in self.held if not censored]
        edges = [e for e in (self.trace_start_ms, self.trace_end_ms) if e is not None]
        if not points:
            points = edges or [0.0]
        lo, hi = min(points), max(points)
        span = hi - lo
        for edge in edges:
            if lo - 0.25 * span <= edge <= hi + 0.25 * span:
                lo, hi = min(lo, edge), max(hi, edge)
        span = hi - lo
        pad = 0.04 * span if span > 0 else 1.0
        return lo - pad, hi + pad


def _lanes(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, int]:
    """Greedy interval partitioning: a lane per overlapping handle, at most MAX_LANES."""
    order = np.argsort(starts, kind="stable")
    lane_end: list[float] = []
    lanes = np.zeros(len(starts), dtype=np.int64)
    for i in order:
        for j, end in enumerate(lane_end):
            if end <= starts[i]:
                lanes[i], lane_end[j] = j, ends[i]
                break
        else:
            if len(lane_end) < MAX_LANES:
                lanes[i] = len(lane_end)
                lane_end.append(ends[i])
            else:  # too many at once: share the lane that frees first
                j = int(np.argmin(lane_end))
                lanes[i], lane_end[j] = j, max(lane_end[j], ends[i])
    return lanes, max(len(lane_end), 1)


def timeline_data(report: Report, path: str | None = None) -> TimelineData | None:
    """The handles and failures of ``path`` (default: the blocked path), or None.

    ``path`` is matched case-insensitively, with everything below it. Without ``path``,
    the path of the first conflict blocked by another process is used (else the first
    conflict's); None when the report has no conflicts. The blockers of the path's
    failures are shown even when they sit elsewhere (the target of a rename).
    """
    if path is None:
        chosen = default_path(report)
        if chosen is None:
            return None
        trace, path = chosen
    else:
        trace = None
    key = fold(path)
    on_path, trace = _failures_on(report, key, trace)
    shown, relation = _handles_shown(report, trace, key, on_path)

    first, last = _trace_span(report, trace)
    origin_ns, origin_is_failure = _origin(on_path, shown, first)
    if origin_ns is None:
        return None
    origin = pl.Series([origin_ns]).cast(pl.Datetime("ns"))[0]
    start_ms = None if first is None else (first - origin_ns) / _NS_PER_MS
    end_ms = None if last is None else (last - origin_ns) / _NS_PER_MS

    failing_pids = on_path["pid"].unique(maintain_order=True).to_list() if on_path.height else []
    bars = _bars(shown, origin_ns, start_ms, end_ms, relation, set(failing_pids))
    order, rows, hidden = _process_rows(on_path, bars, failing_pids)
    row_of = {pid: i for i, pid in enumerate(order)}
    bars = bars.filter(pl.col("pid").is_in(order)).with_columns(
        row=pl.col("pid").replace_strict(row_of, return_dtype=pl.Int64)
    )
    bars = _with_lanes(bars)

    failures = _failure_marks(on_path, origin_ns, row_of)
    successes = _successes(report, trace, key, origin_ns, row_of)
    held = _held_intervals(failures, end_ms)
    return TimelineData(
        trace=trace,
        path=_spelling(on_path, key, path),
        origin=origin,
        origin_ns=origin_ns,
        origin_is_failure=origin_is_failure,
        trace_start_ms=start_ms,
        trace_end_ms=end_ms,
        rows=rows,
        failing_rows=tuple(row_of[p] for p in failing_pids if p in row_of),
        hidden_processes=hidden,
        bars=bars,
        failures=failures,
        successes=successes,
        held=held,
    )


def _failures_on(report: Report, key: str, trace: str | None) -> tuple[pl.DataFrame, str]:
    """The conflicts on the folded path ``key`` or below it, in time order, and their trace.

    Without ``trace``, the trace of the earliest such conflict (else the report's first).
    """
    conflicts = report.conflicts
    if "trace" not in conflicts.columns:
        conflicts = conflicts.with_columns(trace=pl.lit("<memory>"))
    on_path = conflicts.filter(_under(key)) if conflicts.height else conflicts
    if trace is None:
        if on_path.height:
            trace = on_path.sort("time")["trace"][0]
        else:
            trace = report.traces[0].name if report.traces else "<memory>"
    on_path = on_path.filter(pl.col("trace") == trace).sort("time") if on_path.height else on_path
    return on_path, trace


def _handles_shown(
    report: Report, trace: str, key: str, on_path: pl.DataFrame
) -> tuple[pl.DataFrame, dict[int, str]]:
    """The handles to draw: on the path or below it, plus every blocker of its failures.

    Also each blocker's ``relation`` by handle id. Candidates are no evidence (the capture
    cannot show their close), so they are not drawn as blockers.
    """
    handles = report.handles
    if "trace" in handles.columns:
        handles = handles.filter(pl.col("trace") == trace)
    blocking = report.blocking
    if blocking.height and "trace" in blocking.columns:
        blocking = blocking.filter(pl.col("trace") == trace)
    ids = on_path["conflict"].to_list() if on_path.height else []
    blocking = blocking.filter(pl.col("conflict").is_in(ids)) if blocking.height else blocking
    if "candidate" in blocking.columns:  # candidates are no evidence: not drawn as blockers
        blocking = blocking.filter(~pl.col("candidate"))
    relation: dict[int, str] = (
        dict(
            blocking.unique("handle", keep="first", maintain_order=True)
            .select("handle", "relation")
            .iter_rows()
        )
        if blocking.height
        else {}
    )
    shown = (
        handles.filter(_under(key) | pl.col("handle").is_in(list(relation)))
        if handles.height
        else handles
    )
    return shown, relation


def _origin(
    on_path: pl.DataFrame, shown: pl.DataFrame, first: int | None
) -> tuple[int | None, bool]:
    """Time zero of the axis (epoch ns), and whether it is the first failure.

    Without a failure: the first open or close shown, else the trace start.
    """
    if on_path.height:
        return int(on_path["time"].dt.epoch("ns").min()), True  # type: ignore[arg-type]
    times = (
        pl.concat([shown["opened"], shown["closed"]]).drop_nulls()
        if shown.height
        else pl.Series([], dtype=pl.Datetime("ns"))
    )
    return (int(times.dt.epoch("ns").min()) if len(times) else first), False  # type: ignore[arg-type]


def _process_rows(
    on_path: pl.DataFrame, bars: pl.DataFrame, failing_pids: list[int]
) -> tuple[list[int], tuple[str, ...], int]:
    """The pids shown top to bottom, their labels, and how many more are left out.

    Rows: failing processes, then blockers, then the rest, each by first appearance; at
    most :data:`MAX_ROWS`.
    """
    names: dict[int, str] = {}
    for pid, process in on_path.select("pid", "process").iter_rows() if on_path.height else []:
        names.setdefault(pid, process)
    for pid, process in bars.select("pid", "process").iter_rows():
        names.setdefault(pid, process)

    order: list[int] = list(failing_pids)
    if bars.height:
        ranked = (
            bars.group_by("pid")
            .agg(
                is_blocker=(pl.col("role") == "blocker").any(),
                first=pl.col("start_ms").min(),
                n=pl.len(),
            )
            .sort(["is_blocker", "first", "n"], descending=[True, False, True])
        )
        order += [p for p in ranked["pid"].to_list() if p not in order]
    hidden = max(len(order) - MAX_ROWS, 0)
    order = order[:MAX_ROWS]
    rows = tuple(f"{names.get(pid, '?')} ({pid})" for pid in order)
    return order, rows, hidden


def _failure_marks(on_path: pl.DataFrame, origin_ns: int, row_of: dict[int, int]) -> pl.DataFrame:
    """One marker per failure on the path: where (ms, row), what, and its hold time."""
    return on_path.select(
        x_ms=_rel_ms("time", origin_ns),
        row=pl.col("pid").replace_strict(row_of, default=None, return_dtype=pl.Int64),
        result="result",
        operation="operation",
        remaining_ms="remaining_ms",
        censored="censored",
        blocked=pl.col("verdict").is_in(list(BLOCKED_VERDICTS)),
    ) if on_path.height else pl.DataFrame(
        schema={
            "x_ms": pl.Float64, "row": pl.Int64, "result": pl.String, "operation": pl.String,
            "remaining_ms": pl.Float64, "censored": pl.Boolean, "blocked": pl.Boolean,
        }
    )  # fmt: skip


def _spelling(on_path: pl.DataFrame, key: str, path: str) -> str:
    """The path as the trace spells it (when a failure is on exactly it), else as given."""
    if on_path.height:
        exact = on_path.filter(path_key("path") == key)
        if exact.height:
            return str(exact["path"][0])
    return path


def _bars(
    shown: pl.DataFrame,
    origin_ns: int,
    start_ms: float | None,
    end_ms: float | None,
    relation: dict[int, str],
    failing_pids: set[int],
) -> pl.DataFrame:
    schema = {
        "handle": pl.UInt32, "pid": pl.Int64, "process": pl.String, "path": pl.String,
        "start_ms": pl.Float64, "end_ms": pl.Float64, "open_before_capture": pl.Boolean,
        "open_at_end": pl.Boolean, "role": pl.String, "share_mode": pl.UInt8,
        "access_mask": pl.UInt32, "relation": pl.String,
    }  # fmt: skip
    if shown.is_empty():
        return pl.DataFrame(schema=schema)
    frame = shown.select(
        "handle",
        "pid",
        "process",
        "path",
        start_ms=_rel_ms("opened", origin_ns),
        end_ms=_rel_ms("closed", origin_ns),
        open_before_capture=pl.col("opened").is_null(),
        open_at_end=pl.col("closed").is_null(),
        role=pl.when(pl.col("handle").is_in(list(relation)))
        .then(pl.lit("blocker"))
        .when(pl.col("pid").is_in(list(failing_pids)))
        .then(pl.lit("failing"))
        .otherwise(pl.lit("other")),
        share_mode="share_mode",
        access_mask="access_mask",
        relation=pl.col("handle").replace_strict(relation, default=None, return_dtype=pl.String),
    )
    lo = start_ms if start_ms is not None else frame["start_ms"].min()
    hi = end_ms if end_ms is not None else frame["end_ms"].max()
    frame = frame.with_columns(
        start_ms=pl.col("start_ms").fill_null(lo if lo is not None else 0.0),
        end_ms=pl.col("end_ms").fill_null(hi if hi is not None else 0.0),
    ).with_columns(end_ms=pl.max_horizontal("start_ms", "end_ms"))
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def _with_lanes(bars: pl.DataFrame) -> pl.DataFrame:
    if bars.is_empty():
        return bars.with_columns(lane=pl.lit(0, pl.Int64), lanes=pl.lit(1, pl.Int64))
    parts = []
    for (_,), group in bars.group_by(["row"], maintain_order=True):
        lanes, n = _lanes(group["start_ms"].to_numpy(), group["end_ms"].to_numpy())
        parts.append(group.with_columns(lane=pl.Series(lanes), lanes=pl.lit(n, pl.Int64)))
    return pl.concat(parts).sort("row", "start_ms")


def _successes(
    report: Report, trace: str, key: str, origin_ns: int, row_of: dict[int, int]
) -> pl.DataFrame:
    empty = pl.DataFrame(schema={"x_ms": pl.Float64, "row": pl.Int64})
    chains = report.chains
    if chains.is_empty() or "succeeded" not in chains.columns:
        return empty
    if "trace" in chains.columns:
        chains = chains.filter(pl.col("trace") == trace)
    done = chains.filter(pl.col("succeeded") & _under(key) & pl.col("pid").is_in(list(row_of)))
    if done.is_empty():
        return empty
    return done.select(
        x_ms=_rel_ms("last_attempt", origin_ns),
        row=pl.col("pid").replace_strict(row_of, return_dtype=pl.Int64),
    )


def _held_intervals(
    failures: pl.DataFrame, end_ms: float | None
) -> tuple[tuple[float, float, bool], ...]:
    """Union of [failure, last blocker's close) over the failures that had a blocker."""
    spans: list[tuple[float, float, bool]] = []
    for r in failures.filter(pl.col("blocked")).iter_rows(named=True):
        if r["censored"] or r["remaining_ms"] is None:
            if end_ms is None:
                continue
            spans.append((r["x_ms"], max(end_ms, r["x_ms"]), True))
        else:
            spans.append((r["x_ms"], r["x_ms"] + r["remaining_ms"], False))
    spans.sort()
    merged: list[list[Any]] = []
    for start, end, censored in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] = merged[-1][2] or censored
        else:
            merged.append([start, end, censored])
    return tuple((float(s), float(e), bool(c)) for s, e, c in merged)


# ---------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class WindowSample:
    """Blocked times: for each episode, how long after its first failure a retry first works.

    ``window_ms`` is that time, or for a ``censored`` one the time observed until the
    trace ended (a lower bound). ``error_code`` is the Win32 code the application saw;
    ``intervals[i]`` the (start_ms, end_ms) spans during which a retry of episode *i*
    would fail (``inf`` when still blocked at the end); ``horizon_ms`` the time left in
    the trace after the first failure. ``source`` says where they came from: ``episodes``
    (the first failure of each retry chain) or ``conflicts`` (every failed attempt, when
    the report carries no episodes).
    """

    window_ms: np.ndarray
    censored: np.ndarray
    error_code: np.ndarray
    horizon_ms: np.ndarray
    intervals: tuple[np.ndarray, ...]
    source: str

    @property
    def n(self) -> int:
        """Number of windows, censored ones included."""
        return len(self.window_ms)

    @property
    def n_censored(self) -> int:
        """Windows still blocked when the trace ended."""
        return int(self.censored.sum())


def window_sample(report: Report) -> WindowSample | None:
    """The report's blocked times (see :class:`WindowSample`), or None when there are none."""
    episodes, blocked = report.episodes, report.blocked
    if episodes.height and "horizon_ms" in episodes.columns:
        from traceaudit.policy import window_lengths

        lengths = window_lengths(episodes, blocked)
        keys = episodes.select("episode", "horizon_ms").join(
            lengths.select("episode", "window_ms", "censored", "error_code"),
            on="episode",
            how="inner",
        )
        if "trace" in episodes.columns and "trace" in lengths.columns:
            keys = (
                episodes.select("trace", "episode", "horizon_ms")
                .join(
                    lengths.select("trace", "episode", "window_ms", "censored", "error_code"),
                    on=["trace", "episode"],
                    how="inner",
                )
                .drop("trace")
            )
        if keys.height:
            spans = {
                ep: np.column_stack(
                    [
                        g["start_ms"].to_numpy().astype(np.float64),
                        g["end_ms"].fill_null(math.inf).to_numpy().astype(np.float64),
                    ]
                )
                for (ep,), g in blocked.group_by(["episode"])
            }
            empty = np.zeros((0, 2))
            return WindowSample(
                window_ms=keys["window_ms"].to_numpy().astype(np.float64),
                censored=keys["censored"].to_numpy().astype(bool),
                error_code=keys["error_code"].fill_null(-1).to_numpy().astype(np.int64),
                horizon_ms=keys["horizon_ms"].fill_null(math.inf).to_numpy().astype(np.float64),
                intervals=tuple(spans.get(ep, empty) for ep in keys["episode"].to_list()),
                source="episodes",
            )
    return _sample_from_conflicts(report)


def _sample_from_conflicts(report: Report) -> WindowSample | None:
    """Each blocked failure's hold time, when the report carries no episodes."""
    timed = report.conflicts
    if timed.is_empty():
        return None
    timed = timed.filter(pl.col("verdict").is_in(list(BLOCKED_VERDICTS)))
    if timed.is_empty():
        return None
    ends = {t.name: t.last for t in report.traces}
    horizons = []
    for r in timed.select(
        pl.col("trace") if "trace" in timed.columns else pl.lit("<memory>").alias("trace"),
        "time",
    ).iter_rows():
        last = ends.get(r[0]) or max((v for v in ends.values() if v), default=None)
        horizons.append(max(_ms_between(last, r[1]) or 0.0, 0.0) if last else math.inf)
    horizon = np.asarray(horizons, dtype=np.float64)
    censored = timed["censored"].to_numpy().astype(bool)
    remaining = timed["remaining_ms"].fill_null(math.nan).to_numpy().astype(np.float64)
    window = np.where(censored, horizon, remaining)
    intervals = tuple(
        np.array([[0.0, math.inf if c else float(w)]])
        for w, c in zip(window, censored, strict=True)
    )
    return WindowSample(
        window_ms=window,
        censored=censored,
        error_code=timed["error_code"].fill_null(-1).to_numpy().astype(np.int64),
        horizon_ms=horizon,
        intervals=intervals,
        source="conflicts",
    )


@dataclass(frozen=True)
class PolicyCurve:
    """How far one retry policy gets through a window sample, as time passes.

    ``attempt_ms``: the retry times (cumulative delays, one draw for jittered policies);
    ``covered``: for each, the fraction of all windows ridden out by then; ``made_it``
    episodes succeeded in the end, of ``n``; ``triggered`` episodes had an error code
    the policy retries on; ``unknown`` ones were still blocked at the last retry inside
    the trace while the policy would have tried again after it ended. ``label`` names the
    policy.
    """

    label: str
    attempt_ms: np.ndarray
    covered: np.ndarray
    made_it: int
    triggered: int
    n: int
    jittered: bool
    unknown: int = 0
    triggers: str = ""

    @property
    def gives_up_ms(self) -> float:
        """Time of the last retry (0 for a policy that never retries)."""
        return float(self.attempt_ms[-1]) if len(self.attempt_ms) else 0.0


def _policy_label(policy: Any) -> str:
    tool = getattr(policy, "tool", None)
    return str(tool) if tool else "suggested"


def policy_curve(sample: WindowSample, policy: Any, label: str | None = None) -> PolicyCurve:
    """Replay ``policy``'s schedule (seed 0) on ``sample``: when each episode gets through.

    An episode gets through at the first retry that lands outside every blocked interval
    and within the trace; a policy that does not retry on the episode's error code never
    gets it through. The replay table of the report averages jittered policies over many
    draws; this curve shows one draw, which is what a reader can follow on a figure.
    """
    times = np.asarray(policy.schedule(np.random.default_rng(0)).attempt_times, dtype=float)
    success = np.full(sample.n, math.inf)
    triggered = unknown = 0
    for i in range(sample.n):
        code = int(sample.error_code[i])
        if not policy.retries_on(None if code < 0 else code):
            continue
        triggered += 1
        spans = sample.intervals[i]
        for t in times:
            if t > sample.horizon_ms[i]:
                unknown += 1
                break
            if not np.any((spans[:, 0] <= t) & (t < spans[:, 1])):
                success[i] = t
                break
    covered = (
        np.searchsorted(np.sort(success), times, side="right") / sample.n
        if sample.n
        else np.zeros(len(times))
    )
    return PolicyCurve(
        label=label or _policy_label(policy),
        attempt_ms=times,
        covered=covered.astype(float),
        made_it=int(np.isfinite(success).sum()),
        triggered=triggered,
        n=sample.n,
        jittered=bool(getattr(policy, "jittered", False)),
        unknown=unknown,
        triggers=_triggers_text(policy),
    )


def _triggers_text(policy: Any) -> str:
    """The Win32 codes a policy retries on, as ``5`` or ``5,32,33`` (``any``)."""
    text = getattr(policy, "triggers_text", None)
    if text:
        return str(text)
    codes = getattr(policy, "error_codes", ())
    return ",".join(str(c) for c in sorted(codes)) or "none"


def resolve_policies(policies: Iterable[Any]) -> list[Any]:
    """Known-policy names (``"uv"``, ``"MSBuild Copy"``) or policy objects, as objects."""
    from traceaudit.policy import known_policy

    return [known_policy(p) if isinstance(p, str) else p for p in policies]


# ---------------------------------------------------------------------------- blockers


_MAPPED = ("mapped-by-other-process", "mapped-by-own-process")
_NO_HOLDER = ("no-holder-permission", "no-holder-filtered")


def blocker_counts(report: Report) -> pl.DataFrame:
    """Conflicts per blocking process, most first.

    Each conflict with a holder counts once, for its *decisive* blocker (the one that let
    go last, as in the hold-time table; for a mapped section, the process that mapped the
    file). Oplock probes and failures whose holder the capture cannot show have none.
    Columns ``process``, ``own`` (the failing process's own handle or section),
    ``conflicts``, ``censored`` (holder still open at the end), ``median_ms`` (median hold
    time over the uncensored ones, null if none).
    """
    frame = report.conflicts
    schema = {
        "process": pl.String,
        "own": pl.Boolean,
        "conflicts": pl.UInt32,
        "censored": pl.UInt32,
        "median_ms": pl.Float64,
    }
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    timed = frame.filter(pl.col("verdict").is_in([*BLOCKED_VERDICTS, *_MAPPED]))
    if timed.is_empty():
        return pl.DataFrame(schema=schema)
    out = (
        timed.group_by(
            pl.col("decisive_process").fill_null("?").alias("process"),
            pl.col("verdict")
            .is_in(["blocked-by-own-handle", "mapped-by-own-process"])
            .alias("own"),
            maintain_order=True,
        )
        .agg(
            conflicts=pl.len(),
            censored=pl.col("censored").sum(),
            median_ms=pl.col("remaining_ms").drop_nulls().median(),
        )
        .sort(["conflicts", "process"], descending=[True, False])
    )
    return out.select([pl.col(c).cast(t) for c, t in schema.items()])


def unexplained_count(report: Report) -> int:
    """Conflicts no holder in the trace explains (no holder, or only candidates)."""
    frame = report.conflicts
    if frame.is_empty():
        return 0
    return int(frame["verdict"].is_in(["incomplete-capture", *_NO_HOLDER]).sum())
