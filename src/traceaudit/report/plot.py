"""Figures of a report, drawn with matplotlib: who held the file, how long, which retries win.

::

    from traceaudit import analyze, plot

    report = analyze("Logfile.CSV")
    plot.timeline(report)             # handles on the blocked path, failures, what was held
    plot.windows(report)              # blocked times as an ECDF, the replay table's tools over it
    plot.blockers(report)             # conflicts per blocking process
    plot.save_all(report, "plots/")   # every figure as PNG and SVG

Every function takes ``ax=None`` and returns the Axes it drew on. With ``ax`` it draws into
that Axes and makes nothing new (the figure is yours, shown the way you show it). Without
``ax`` it makes a new :class:`~traceaudit.report._mpl.ReportFigure` and returns its
:class:`~traceaudit.report._mpl.ReportAxes` (an :class:`~matplotlib.axes.Axes` like any
other). Neither is registered with pyplot, so it works headless and Jupyter's inline
backend never shows it by itself; instead both have a ``_repr_png_``, so that in a notebook
``plot.timeline(report)`` (or ``ax.figure``) as the last line of a cell shows the figure,
exactly once. Only when pyplot is in use with a GUI backend (a window, an ipympl widget) is
the figure made through pyplot, to show the usual way (``plt.show()``); it then has no PNG
of its own, so it is not shown twice either. Importing :mod:`traceaudit` does not import
this module or matplotlib; this module imports matplotlib only when a function runs.

A figure with nothing to show (no conflicts, no windows) says so in the Axes instead of
raising; :func:`save_all` skips such figures.

Text from the trace (paths, process names) is drawn as written: ``$`` is escaped so that
matplotlib never reads a path such as ``C:\\$Recycle.Bin\\$R1`` as mathematics.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from traceaudit._atomic import write_atomically
from traceaudit.display import fmt_duration, plural, share_text
from traceaudit.report import figure_data as data
from traceaudit.report.figure_data import DEFAULT_POLICIES, shorten_middle

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from traceaudit.report.data import ReportData as Report

__all__ = [
    "DEFAULT_POLICIES",
    "blockers",
    "figure_bytes",
    "report_figures",
    "save_all",
    "timeline",
    "timeline_figures",
    "windows",
]

# Roles of a handle on the timeline, and their colours (colour-blind-safe Okabe–Ito).
ROLE_COLORS = {"blocker": "#D55E00", "failing": "#0072B2", "other": "#999999"}
ROLE_LABELS = {
    "blocker": "handle that blocked a failure or its retries",
    "failing": "handle of the failing process",
    "other": "other handle",
}
HELD_COLOR = "#D55E00"
POLICY_COLORS = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
    "#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#DDCC77", "#117733",
)  # fmt: skip
"""Okabe–Ito, then Paul Tol's muted colours: one per tool of the replay table.

A tool keeps the colour of its place among the tools asked for, whether or not the tools
before it get a line, so that one tool has one colour across the figures of a report."""
GID_HANDLES = "traceaudit:handles"
GID_FAILURES = "traceaudit:failures"
GID_SUCCESSES = "traceaudit:successes"
GID_HELD = "traceaudit:held"
GID_ECDF = "traceaudit:ecdf"
GID_POLICY = "traceaudit:policy"
GID_CENSORED = "traceaudit:censored"
GID_BLOCKERS = "traceaudit:blockers"
GID_RETRY_BAND = "traceaudit:retry-band"
"""Artists carry these gids (``artist.get_gid()``) so that tests and notebooks can find them."""

MAX_BLOCKER_BARS = 25
MAX_ANNOTATED_BARS = 12


# ---------------------------------------------------------------------------- helpers


def _safe(text: object) -> str:
    """Text from the trace, made safe for matplotlib: ``$`` would start mathtext."""
    return str(text).replace("$", r"\$")


_NON_INTERACTIVE = frozenset({"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"})


def _pyplot_shows_figures() -> bool:
    """Whether a figure should go through pyplot: pyplot is in use with a GUI backend.

    Not when pyplot was never imported (a script, a server), nor with the Jupyter inline
    backend (it would show the figure once more after the cell's own PNG), nor with a
    backend that only writes files.
    """
    if "matplotlib.pyplot" not in sys.modules:
        return False
    import matplotlib.pyplot as plt

    backend = str(plt.get_backend()).lower()
    return "inline" not in backend and backend not in _NON_INTERACTIVE


def _new_axes(figsize: tuple[float, float], *, pyplot: bool | None = None) -> Axes:
    """A fresh :class:`~traceaudit.report._mpl.ReportAxes` on a new ``ReportFigure``.

    The figure is made without pyplot, and shows itself in Jupyter as a PNG, once;
    only when pyplot is in use with a GUI backend (a window, an ipympl widget) is it made
    through pyplot, so that ``plt.show()`` shows it, and then it has no PNG of its own.
    """
    from traceaudit.report._mpl import ReportAxes, ReportFigure

    if pyplot is None:
        pyplot = _pyplot_shows_figures()
    if pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize, layout="constrained", FigureClass=ReportFigure)
    else:
        fig = ReportFigure(figsize=figsize, layout="constrained")
    return fig.add_subplot(axes_class=ReportAxes)


def _nothing(ax: Axes, message: str) -> Axes:
    """Say in the Axes why there is nothing to draw."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _ms_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: fmt_duration(value).replace(".0 ", " "))


@contextlib.contextmanager
def _quiet_glyphs() -> Iterator[None]:
    """Paths in any script draw with DejaVu Sans; a missing glyph is a box, not a warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
        warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support")
        yield


# ---------------------------------------------------------------------------- timeline


def timeline(
    report: Report, path: str | None = None, *, trace: str | None = None, ax: Axes | None = None
) -> Axes:
    """Who had ``path`` open when it failed: one row per process, one bar per handle.

    ``path`` defaults to the path of the first conflict blocked by another process (else
    the first conflict); it is matched case-insensitively, with everything below it (a
    directory rename fails while a file below it is open). ``trace`` picks the trace
    when several in the report hold the same path.

    Drawn: each handle on the path or below it, and every handle that blocked one of its
    failures, as a bar from open to close, coloured by role (blocked a failure / the
    failing process's own / other). A handle open before the capture started begins at
    the trace start, one still open at its end runs to the trace end; both are hatched and
    faded, since their true extent is unknown. Overlapping handles of one process are
    stacked in lanes. Failures are ``X`` markers on the failing process's row, a retry
    that finally worked a green dot. The shaded band runs from each failure to the close
    of its last blocker: the time the file stayed held (hatched to the trace end when a
    blocker never closed). Time is in ms after the first failure.
    """
    d = data.timeline_data(report, path) if trace is None else _timeline_in(report, path, trace)
    if ax is None:
        ax = _new_axes(_timeline_size(len(d.rows) if d is not None else 1))
    if d is None and path is None:
        return _nothing(ax, "No conflicts in this report: no blocked path to show.")
    if d is None or (d.bars.is_empty() and d.failures.is_empty()):
        return _nothing(
            ax, f"No handle or failure on {_safe(shorten_middle(path or '', 80))} or below it."
        )
    _draw_timeline(ax, d)
    return ax


def _timeline_size(rows: int) -> tuple[float, float]:
    """Wide enough for the legend beside the plot, tall enough for every process row."""
    return 11.0, min(2.2 + 0.45 * max(rows, 1), 14.0)


def _timeline_in(report: Report, path: str | None, trace: str) -> data.TimelineData | None:
    """timeline_data restricted to one trace of a multi-trace report."""
    import dataclasses

    def only(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("trace") == trace) if "trace" in frame.columns else frame

    narrowed = dataclasses.replace(
        report,
        traces=tuple(t for t in report.traces if t.name == trace) or report.traces,
        conflicts=only(report.conflicts),
        handles=only(report.handles),
        blocking=only(report.blocking),
        chains=only(report.chains),
    )
    return data.timeline_data(narrowed, path)


def _draw_timeline(ax: Axes, d: data.TimelineData) -> None:
    lo, hi = d.focus()
    legend: list[Any] = []
    legend += _draw_handle_bars(ax, d.bars)
    legend += _draw_held(ax, d.held)
    legend += _draw_failures(ax, d.failures)
    legend += _draw_successes(ax, d.successes)
    _draw_capture_edges(ax, d, lo, hi)
    if d.bars.filter(pl.col("role") == "blocker").height <= MAX_ANNOTATED_BARS:
        _annotate_blockers(ax, d, lo, hi)
    _finish_timeline_axes(ax, d, lo, hi, legend)


def _draw_handle_bars(ax: Axes, bars: pl.DataFrame) -> list[Artist]:
    """One bar per handle in its process's row and lane, coloured by role; legend entries.

    A bar whose open or close the capture does not show (it stands in at the trace edge)
    is hatched and faded: its true extent is unknown. Each handle is its own bar: one that
    ends where the next handle of its lane opens is drawn a few pixels short of it
    (:class:`~traceaudit.report._mpl.HandleBars`), so that two handles never read as one.
    """
    from matplotlib.patches import Patch

    from traceaudit.report._mpl import HandleBars

    legend: list[Artist] = []
    bars = _with_next_start(bars)
    for role in ("other", "failing", "blocker"):
        of_role = bars.filter(pl.col("role") == role)
        if of_role.is_empty():
            continue
        legend.append(Patch(facecolor=ROLE_COLORS[role], label=ROLE_LABELS[role]))
        for edge in (False, True):
            part = of_role.filter((pl.col("open_before_capture") | pl.col("open_at_end")) == edge)
            if part.is_empty():
                continue
            collection = HandleBars(
                _bar_rects(part),
                part["next_start_ms"].to_numpy(),
                facecolors=ROLE_COLORS[role],
                edgecolors=ROLE_COLORS[role],
                linewidths=0.6,
                alpha=0.35 if edge else 0.9,
                hatch="///" if edge else None,
                gid=GID_HANDLES,
                zorder=2,
            )
            ax.add_collection(collection)
    if bars.filter(pl.col("open_before_capture") | pl.col("open_at_end")).height:
        legend.append(
            Patch(
                facecolor="#999999",
                alpha=0.35,
                hatch="///",
                label="open before the capture / still open at its end",
            )
        )
    return legend


def _with_next_start(bars: pl.DataFrame) -> pl.DataFrame:
    """``next_start_ms``: where the next handle in the same row and lane opens (inf: none)."""
    return (
        bars.with_columns(_i=pl.int_range(pl.len()))
        .sort("row", "lane", "start_ms", "end_ms")
        .with_columns(
            next_start_ms=pl.col("start_ms")
            .shift(-1)
            .over("row", "lane")
            .fill_null(float("inf"))
            .cast(pl.Float64)
        )
        .sort("_i")
        .drop("_i")
    )


def _bar_rects(part: pl.DataFrame) -> np.ndarray:
    """``(x0, x1, y0, y1)`` of each bar: its lane's slice of the row, open to close."""
    lanes = part["lanes"].to_numpy().astype(float)
    height = 0.8 / lanes
    y0 = part["row"].to_numpy() - 0.4 + part["lane"].to_numpy() * height + 0.05 * height
    x0 = part["start_ms"].to_numpy().astype(float)
    x1 = np.maximum(part["end_ms"].to_numpy().astype(float), x0 + 1e-9)  # an instant shows
    return np.column_stack([x0, x1, y0, y0 + 0.9 * height])


def _draw_held(ax: Axes, held: tuple[tuple[float, float, bool], ...]) -> list[Artist]:
    """Shade each span from a failure to its last blocker's close; legend entries.

    A span whose blocker never closed in the trace is hatched: it ran at least that long.
    """
    from matplotlib.patches import Patch

    for start, end, censored in held:
        ax.axvspan(
            start,
            end,
            facecolor=HELD_COLOR,
            alpha=0.10,
            hatch="\\\\" if censored else None,
            edgecolor=HELD_COLOR if censored else "none",
            linewidth=0,
            zorder=0,
            gid=GID_HELD,
        )
    legend: list[Artist] = []
    if any(not censored for *_, censored in held):
        legend.append(
            Patch(facecolor=HELD_COLOR, alpha=0.15, label="held: failure until last blocker closed")
        )
    if any(censored for *_, censored in held):
        legend.append(
            Patch(
                facecolor=HELD_COLOR,
                alpha=0.15,
                hatch="\\\\",
                edgecolor=HELD_COLOR,
                label="held until the trace ended (a blocker never closed)",
            )  # fmt: skip
        )
    return legend


def _draw_failures(ax: Axes, failures: pl.DataFrame) -> list[Artist]:
    """An ``X`` per failure on the failing process's row; the legend entry names results."""
    from matplotlib.lines import Line2D

    failures = failures.filter(pl.col("row").is_not_null())
    if not failures.height:
        return []
    ax.plot(
        failures["x_ms"].to_numpy(),
        failures["row"].to_numpy(),
        linestyle="none",
        marker="X",
        markersize=9,
        markerfacecolor="black",
        markeredgecolor="white",
        zorder=5,
        gid=GID_FAILURES,
    )
    results = ", ".join(sorted(set(failures["result"].to_list())))
    return [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="X",
            markersize=9,
            color="black",
            markeredgecolor="white",
            label=f"failed ({_safe(results)})",
        )  # fmt: skip
    ]


def _draw_successes(ax: Axes, successes: pl.DataFrame) -> list[Artist]:
    """A green dot where a retry finally worked; its legend entry."""
    from matplotlib.lines import Line2D

    if not successes.height:
        return []
    ax.plot(
        successes["x_ms"].to_numpy(),
        successes["row"].to_numpy(),
        linestyle="none",
        marker="o",
        markersize=8,
        markerfacecolor="#009E73",
        markeredgecolor="white",
        zorder=5,
        gid=GID_SUCCESSES,
    )
    return [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=8,
            color="#009E73",
            label="retry succeeded",
        )  # fmt: skip
    ]


def _draw_capture_edges(ax: Axes, d: data.TimelineData, lo: float, hi: float) -> None:
    """Dotted lines where the capture starts and ends, when they fall inside the view."""
    edges = ((d.trace_start_ms, "capture starts", 1), (d.trace_end_ms, "capture ends", -1))
    for edge, word, side in edges:
        if edge is not None and lo <= edge <= hi:
            ax.axvline(edge, color="#555555", linestyle=":", linewidth=1, zorder=1)
            ax.annotate(
                word, (edge, 0), xycoords=("data", "axes fraction"), xytext=(2 * side, 2),
                textcoords="offset points", fontsize=8, color="#555555",
                ha="left" if side > 0 else "right",
            )  # fmt: skip


def _finish_timeline_axes(
    ax: Axes, d: data.TimelineData, lo: float, hi: float, legend: list[Any]
) -> None:
    """Process rows (failing ones in bold), limits, grid, axis label, title and legend."""
    n = max(len(d.rows), 1)
    ax.set_yticks(range(len(d.rows)), [_safe(_row_label(r)) for r in d.rows])
    for i, label in enumerate(ax.get_yticklabels()):
        if i in d.failing_rows:
            label.set_fontweight("bold")
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(lo, hi)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    when = f"{d.origin:%H:%M:%S}.{d.origin_ns % 1_000_000_000 // 100:07d}"
    anchor = "the first failure" if d.origin_is_failure else "the first event shown"
    ax.set_xlabel(f"ms after {anchor} ({when} on {d.origin:%Y-%m-%d})")
    title = f"Handles on {_safe(shorten_middle(d.path, 90))} and below"
    if d.hidden_processes:
        title += f"\n({d.hidden_processes} more processes not shown)"
    ax.set_title(title, fontsize=10)
    ax.legend(
        handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )


ROW_NAME_WIDTH = 28
"""A process name longer than this is shortened in its middle, at word breaks, on a row."""


def _row_label(row: str) -> str:
    """``process (pid)`` with a very long process name shortened (the pid is kept whole)."""
    match = re.fullmatch(r"(.*) \((\d+)\)", row)
    name, pid = (match.group(1), match.group(2)) if match else (row, None)
    name = _shorten_name(name, ROW_NAME_WIDTH)
    return f"{name} ({pid})" if pid is not None else name


def _shorten_name(name: str, width: int) -> str:
    """``name`` cut to ``width`` characters by dropping whole words from its middle.

    Words end at ``.``, ``-``, ``_`` and spaces, so ``Microsoft.VisualStudio.Code.
    ServiceHub.Host.exe`` becomes ``Microsoft.…ServiceHub.Host.exe``; a name made of one
    long word is cut in its middle.
    """
    if len(name) <= width:
        return name
    words = re.findall(r"[^.\-_ ]*[.\-_ ]?", name)
    words = [w for w in words if w]
    head: list[str] = []
    tail: list[str] = []
    i, j = 0, len(words) - 1
    room = width - 1  # for "…"
    while i <= j:
        take_tail = len(tail) <= len(head)  # alternate, the end (".exe") first
        if len(words[j] if take_tail else words[i]) > room:
            take_tail = not take_tail  # that side's next word is too long: try the other
            if len(words[j] if take_tail else words[i]) > room:
                break
        if take_tail:
            room -= len(words[j])
            tail.insert(0, words[j])
            j -= 1
        else:
            room -= len(words[i])
            head.append(words[i])
            i += 1
    if not head or not tail:
        return shorten_middle(name, width)
    return "".join(head) + "…" + "".join(tail)


def _annotate_blockers(ax: Axes, d: data.TimelineData, lo: float, hi: float) -> None:
    """Name the file and share mode inside each blocker bar, when there are few bars.

    Each label is a :class:`~traceaudit.report._mpl.FittedLabel`: at draw time it writes
    the longest of ``…\\dir\\file.dll  share Read, Write``, ``file.dll  share Read,
    Write`` and ``file.dll`` that fits inside its bar, and nothing when not even the file
    name fits: a name is never cut, and a label never runs over the next bar.
    """
    from traceaudit.report._mpl import FittedLabel

    prefix = d.path.lower().rstrip("\\") + "\\"
    for r in d.bars.filter(pl.col("role") == "blocker").sort("start_ms").iter_rows(named=True):
        start, end = max(r["start_ms"], lo), min(r["end_ms"], hi)
        if end <= lo or start >= hi:
            continue
        height = 0.8 / r["lanes"]
        y0 = r["row"] - 0.4 + r["lane"] * height + 0.05 * height
        y1 = y0 + 0.9 * height
        if r["row"] in d.failing_rows:  # failure markers sit mid-row: write below them
            y, va = r["row"] - 0.4 + (r["lane"] + 0.95) * height, "bottom"
        else:
            y, va = r["row"] - 0.4 + (r["lane"] + 0.5) * height, "center"
        label = FittedLabel(
            start, end, y, y0, y1, [_safe(t) for t in _bar_texts(r, prefix)],
            va=va, ha="left", fontsize=8, fontweight="bold", zorder=4,
            color="#4a1f00" if r["open_before_capture"] or r["open_at_end"] else "white",
        )  # fmt: skip
        ax.add_artist(label)


def _bar_texts(r: dict[str, Any], prefix: str) -> list[str]:
    """What a blocker bar can say, longest first: where below the path, the share mode."""
    path = r["path"] or ""
    name = re.split(r"[\\/]", path.rstrip("\\/"))[-1] if path else ""
    where = path
    if path.lower().startswith(prefix):
        where = "…\\" + path[len(prefix) :]
    elif path.lower() == prefix[:-1]:
        where = name = ""
    share = f"share {share_text(r['share_mode'])}"
    target = "rename target " if r["relation"] == "target" else ""
    texts = [
        f"{target}{shorten_middle(where, 60)}  {share}".strip(),
        f"{target}{name}  {share}".strip(),
        f"{target}{name}".strip(),
        name,
    ]
    out: list[str] = []
    for text in texts:
        if text and text not in out:
            out.append(text)
    return out


# ---------------------------------------------------------------------------- windows


def windows(
    report: Report,
    *,
    ax: Axes | None = None,
    policies: Sequence[Any] | None = None,
) -> Axes:
    """The blocked times as an ECDF on a log time axis, with retry schedules over it.

    A lock episode's *blocked time* is how long after the first failure of a retry chain an
    attempt would first have worked (from the report's episodes; when a report carries none,
    each failure's *hold time* instead, and the axes say so). The black step is the share
    of episodes no longer blocked by time *t*; episodes still blocked when the trace ended
    are censored: they never reach the curve and are marked ``▶`` at the time they had
    lasted by then, with their count.

    Over it, each policy is a step that climbs at its retry times (one seeded draw for
    jittered ones) to the share of windows it would have ridden out by then, and ends at
    its last retry: where it gives up. The suggested policy (``report.policy``) is drawn
    thick and dark, real tools in colour. ``policies``: names from
    :data:`traceaudit.policy.KNOWN_POLICIES` or policy objects; by default the tools of
    the report's replay table (``report.replay``), so that the figure and the table speak
    of the same tools (:data:`DEFAULT_POLICIES` when the report has no replay table).

    A tool that does not retry on any error the application saw, or never retries at all,
    would only be a line along 0: it gets no line, and a last legend entry names it and
    says why. Tools whose curves coincide (the same retry times over these episodes) are
    drawn dashed over one another, and their legend entries say which share a curve. Under
    the 0 % line each tool's schedule is a row of ticks, one per retry; where retries come
    closer than a few points apart they are drawn as a band. The legend says how many
    windows each made it through; the replay table gives the exact averages.
    """
    return _windows(report, policies, ax)


def _windows(
    report: Report, policies: Sequence[Any] | None, ax: Axes | None, *, pyplot: bool | None = None
) -> Axes:
    sample = data.window_sample(report)
    if policies is None:
        policies = _replay_tools(report)
    resolved = data.resolve_policies(policies)
    if sample is None or sample.n == 0:
        if ax is None:
            ax = _new_axes(_windows_size(0), pyplot=pyplot)
        return _nothing(
            ax,
            "No blocked time to show: no failure was blocked by a handle whose release "
            "the capture shows.",
        )
    curves: list[tuple[data.PolicyCurve, bool]] = []
    if report.policy is not None:
        curves.append((data.policy_curve(sample, report.policy, "suggested"), True))
    curves += [(data.policy_curve(sample, p), False) for p in resolved]
    colors = {id(c): POLICY_COLORS[i % len(POLICY_COLORS)] for i, (c, s) in enumerate(
        [cs for cs in curves if not cs[1]]
    )}  # fmt: skip
    drawn, left_out = _split_curves(curves)
    if ax is None:
        ax = _new_axes(_windows_size(len(drawn)), pyplot=pyplot)
    _draw_windows(ax, sample, drawn, report, left_out, colors)
    return ax


def _replay_tools(report: Report) -> list[Any]:
    """The tools of the report's replay table, as known policies, in its order."""
    from traceaudit.policy import KNOWN_POLICIES

    replay = report.replay
    if replay.is_empty() or "tool" not in replay.columns:
        return list(DEFAULT_POLICIES)
    known = {p.tool: p for p in KNOWN_POLICIES}
    tools = [known.get(t, t) for t in replay["tool"].to_list()]
    return [t for t in tools if not isinstance(t, str)] or list(DEFAULT_POLICIES)


def _split_curves(
    curves: list[tuple[data.PolicyCurve, bool]],
) -> tuple[list[tuple[data.PolicyCurve, bool]], list[tuple[data.PolicyCurve, str]]]:
    """The curves worth a line, and the tools left out with the reason why.

    Left out: a tool that retries on none of the sample's errors (``does not retry``) or
    never retries at all (``never retries``); its line would lie along 0. The suggested
    policy is always drawn.
    """
    drawn: list[tuple[data.PolicyCurve, bool]] = []
    left_out: list[tuple[data.PolicyCurve, str]] = []
    for curve, suggested in curves:
        if not suggested and curve.n and curve.triggered == 0:
            left_out.append((curve, "does not retry"))
        elif not suggested and not len(curve.attempt_ms):
            left_out.append((curve, "never retries"))
        else:
            drawn.append((curve, suggested))
    return drawn, left_out


def _windows_size(curves: int) -> tuple[float, float]:
    """Room for the plot, one schedule row per curve and a legend line per curve."""
    return 11.0, 5.2 + 0.42 * curves


def _draw_windows(
    ax: Axes,
    sample: data.WindowSample,
    curves: list[tuple[data.PolicyCurve, bool]],
    report: Report,
    left_out: Sequence[tuple[data.PolicyCurve, str]] = (),
    colors: dict[int, str] | None = None,
) -> None:
    lo, hi = _windows_range(sample, curves)
    top = _draw_ecdf(ax, sample, lo, hi)
    if sample.n_censored:
        _draw_censored(ax, sample, lo, hi, top)
    rug_step = 0.045
    rug_ticks, rug_names = _draw_policy_curves(ax, curves, report, lo, hi, rug_step, colors)
    if report.policy is not None and report.policy.target:
        ax.axhline(report.policy.target, color="#777777", linewidth=0.8, linestyle=":")
        ax.annotate(
            f"target {report.policy.target:.0%}", (0, report.policy.target),
            xycoords=("axes fraction", "data"), xytext=(3, 2), textcoords="offset points",
            fontsize=8, color="#555555",
        )  # fmt: skip
    _finish_windows_axes(ax, sample, lo, hi, rug_step, rug_ticks, rug_names, left_out)


def _windows_range(
    sample: data.WindowSample, curves: list[tuple[data.PolicyCurve, bool]]
) -> tuple[float, float]:
    """The log x range: from below the shortest window or first retry, past the longest."""
    n = sample.n
    positive = [float(w) for w in sample.window_ms if w > 0]
    firsts = [
        float(c.attempt_ms[c.attempt_ms > 0][0]) for c, _ in curves if (c.attempt_ms > 0).any()
    ]
    smallest = min(positive + firsts) if positive or firsts else 1.0
    largest = max(float(sample.window_ms.max()) if n else 1.0, smallest * 10)
    return max(smallest / 2.5, 1e-3), largest * 4


def _draw_ecdf(ax: Axes, sample: data.WindowSample, lo: float, hi: float) -> float:
    """The black step: share of windows over by each time (censored ones never arrive).

    Returns the height it ends at, where the censored markers go.
    """
    n = sample.n
    known = np.sort(sample.window_ms[~sample.censored])
    if len(known):
        xs = np.concatenate([[lo], np.clip(known, lo, None)])
        ys = np.concatenate([[0.0], np.arange(1, len(known) + 1) / n])
    else:
        xs, ys = np.array([lo]), np.array([0.0])
    xs, ys = np.append(xs, hi), np.append(ys, ys[-1])
    episodes = sample.source == "episodes"
    what = ("lock episode" if episodes else "failure") + ("" if n == 1 else "s")
    measure = "blocked time" if episodes else "hold time"
    ax.plot(
        xs, ys, drawstyle="steps-post", color="black", linewidth=2.6, zorder=4, gid=GID_ECDF,
        label=f"over by then ({measure}; {n} {what})",
    )  # fmt: skip
    return float(ys[-1])


def _draw_censored(ax: Axes, sample: data.WindowSample, lo: float, hi: float, top: float) -> None:
    """``▶`` at how long each window still blocked at the trace end had lasted by then."""
    cens = sample.window_ms[sample.censored]
    ax.scatter(
        np.clip(cens, lo, hi), np.full(len(cens), top), marker=">",
        s=60 if len(cens) <= 20 else 30, alpha=1.0 if len(cens) <= 20 else 0.35,
        color="black", linewidths=0, zorder=6, gid=GID_CENSORED,
        label=f"{sample.n_censored} still blocked when the trace ended "
        f"(had lasted {fmt_duration(float(cens.min()))}"
        + (f" to {fmt_duration(float(cens.max()))})" if len(cens) > 1 else ")"),
    )  # fmt: skip


def _draw_policy_curves(
    ax: Axes,
    curves: list[tuple[data.PolicyCurve, bool]],
    report: Report,
    lo: float,
    hi: float,
    rug_step: float,
    colors: dict[int, str] | None = None,
) -> tuple[list[float], list[str]]:
    """Each policy's step over the ECDF, and its retry times in a row of its own below 0 %.

    A curve that coincides with one drawn before it is dashed, so that both colours show
    along the shared stretch, and its legend entry names the tool it shares it with.
    Returns the y of each schedule row and its label, for the y axis.
    """
    rug_ticks: list[float] = []
    rug_names: list[str] = []
    color_at = 0
    shared = _shared_curves([c for c, _ in curves], hi)
    for k, (curve, suggested) in enumerate(curves):
        style: str | tuple[int, tuple[int, int]]
        if suggested:
            color, width, style = "#333333", 2.0, (0, (5, 2))
        else:
            color = (colors or {}).get(id(curve), POLICY_COLORS[color_at % len(POLICY_COLORS)])
            color_at += 1
            width, style = 1.6, "-"
        same_as = shared.get(k)
        if same_as is not None and not suggested:
            # dashed over the earlier curve: both colours show along the shared stretch
            place, size = same_as[1], same_as[2]
            style = ((3 * place) % (3 * size), (3, 3 * (size - 1)))
        t, x, y, off_edge = _policy_steps(curve, lo, hi)
        label = _policy_label(curve, report, suggested)
        if same_as is not None:
            label += f" (same curve as {_safe(curves[same_as[0]][0].label)})"
        ax.plot(
            x, y, drawstyle="steps-post", color=color, linewidth=width, linestyle=style,
            zorder=5 if suggested else 3 + 0.01 * k, gid=GID_POLICY, label=label,
        )  # fmt: skip
        if len(t) and not off_edge:  # where it gives up
            ax.plot([x[-1]], [y[-1]], marker="o", markersize=4, color=color, zorder=6)
        row_y = -rug_step * (k + 1.2)
        _draw_schedule_row(ax, t[t <= hi], row_y, rug_step * 0.7, color, lo, hi)
        if off_edge:
            ax.annotate(
                f"→ {fmt_duration(curve.gives_up_ms)}", (1, row_y), xycoords=("axes fraction", "data"),
                xytext=(3, 0), textcoords="offset points", ha="left", va="center",
                fontsize=8, color=color,
            )  # fmt: skip
        rug_ticks.append(row_y)
        rug_names.append("suggested" if suggested else _safe(curve.label))
    return rug_ticks, rug_names


def _shared_curves(curves: list[data.PolicyCurve], hi: float) -> dict[int, tuple[int, int, int]]:
    """For each curve that coincides with an earlier one: ``(first, place, size)``.

    Two curves coincide when their steps are the same up to where the shorter one gives
    up, and they got somewhere (a share above 0) by then: drawn plainly, the later one
    would hide the earlier. ``first`` is the index of the first curve of the group,
    ``place`` this curve's position in it, ``size`` the group's size.
    """
    groups: list[list[int]] = []
    for k, curve in enumerate(curves):
        for group in groups:
            if _same_steps(curves[group[0]], curve, hi):
                group.append(k)
                break
        else:
            groups.append([k])
    out: dict[int, tuple[int, int, int]] = {}
    for group in groups:
        for place, k in enumerate(group[1:], start=1):
            out[k] = (group[0], place, len(group))
    return out


def _same_steps(a: data.PolicyCurve, b: data.PolicyCurve, hi: float) -> bool:
    """Whether two policy steps coincide up to the shorter one's end (and rise above 0)."""
    if not len(a.attempt_ms) or not len(b.attempt_ms):
        return False
    end = min(a.gives_up_ms, b.gives_up_ms, hi)
    points = np.union1d(a.attempt_ms, b.attempt_ms)
    points = points[points <= end]

    def value(c: data.PolicyCurve) -> np.ndarray:
        at = np.searchsorted(c.attempt_ms, points, side="right") - 1
        return np.where(at >= 0, c.covered[np.clip(at, 0, None)], 0.0)

    va, vb = value(a), value(b)
    return bool(len(points)) and bool(np.allclose(va, vb)) and float(va.max()) > 0


DENSE_TICKS_PT = 3.0
"""Retries closer than this on the page are drawn as a band, not as separate ticks."""


def _draw_schedule_row(
    ax: Axes, t: np.ndarray, row_y: float, length: float, color: str, lo: float, hi: float
) -> None:
    """One tick per retry at ``row_y``; runs of ticks closer than a few points: a band."""
    from matplotlib.patches import Rectangle

    if not len(t):
        return
    t = np.sort(np.clip(t, lo, hi))
    # the gap between neighbours in points, on the log axis of the Axes' width
    width_pt = ax.get_position().width * ax.figure.get_figwidth() * 72  # type: ignore[union-attr]
    gap_pt = np.diff(np.log10(t)) / np.log10(hi / lo) * width_pt
    dense = gap_pt < DENSE_TICKS_PT
    lone = np.ones(len(t), dtype=bool)
    i = 0
    while i < len(dense):
        if not dense[i]:
            i += 1
            continue
        j = i
        while j < len(dense) and dense[j]:
            j += 1
        # retries i .. j are a dense run: a band from the first to the last
        if j - i >= 2:
            lone[i : j + 1] = False
            ax.add_patch(
                Rectangle(
                    (t[i], row_y - length * 0.3),
                    t[j] - t[i],
                    length * 0.6,
                    facecolor=color,
                    edgecolor=color,
                    linewidth=0.8,
                    alpha=0.55,
                    gid=GID_RETRY_BAND,
                    zorder=3,
                )  # fmt: skip
            )
        i = j
    if lone.any():
        ax.eventplot(
            t[lone], lineoffsets=row_y, linelengths=length, colors=color,
            linewidths=1.0, zorder=3,
        )  # fmt: skip


def _policy_steps(
    curve: data.PolicyCurve, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """A policy's retry times (clipped to ``lo``) and its step, cut at ``hi`` when it keeps
    trying past the right edge (``off_edge``); a policy that never retries stays at 0."""
    t = np.clip(curve.attempt_ms, lo, None)
    x = np.concatenate([[lo], t]) if len(t) else np.array([lo])
    y = np.concatenate([[0.0], curve.covered]) if len(t) else np.array([0.0])
    off_edge = bool(len(t)) and curve.gives_up_ms > hi
    if off_edge:  # it keeps trying past the right edge: draw up to the edge
        keep = x <= hi
        x, y = np.append(x[keep], hi), np.append(y[keep], y[keep][-1])
    elif not len(t):
        x, y = np.array([lo, hi]), np.array([0.0, 0.0])
    return t, x, y, off_edge


def _finish_windows_axes(
    ax: Axes,
    sample: data.WindowSample,
    lo: float,
    hi: float,
    rug_step: float,
    rug_ticks: list[float],
    rug_names: list[str],
    left_out: Sequence[tuple[data.PolicyCurve, str]] = (),
) -> None:
    """Log time axis, percent ticks plus one tick per schedule row, grid, labels, legend."""
    from matplotlib.lines import Line2D

    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    bottom = (rug_ticks[-1] - rug_step) if rug_ticks else -0.02
    ax.set_ylim(bottom, 1.06)
    percents = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ax.set_yticks(
        percents + rug_ticks, [f"{p:.0%}" for p in percents] + [f"{n} retries" for n in rug_names]
    )
    for label in ax.get_yticklabels()[len(percents) :]:
        label.set_fontsize(8)
    if rug_ticks:
        ax.axhline(-rug_step * 0.4, color="#bbbbbb", linewidth=0.8)
    ax.xaxis.set_major_formatter(_ms_formatter())
    ax.grid(True, which="major", axis="x", color="#dddddd", linewidth=0.6)
    for p in percents:
        ax.axhline(p, color="#eeeeee", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel("time after the first failure (log scale)")
    episodes = sample.source == "episodes"
    ax.set_ylabel("share of lock episodes ridden out" if episodes else "share of failures")
    ax.set_title(
        ("Blocked time of each lock episode" if episodes else "Hold time of each failure")
        + ", and how far each retry policy gets through them (a dot: where it gives up)",
        fontsize=10,
    )
    handles, labels = ax.get_legend_handles_labels()
    note = _left_out_note(sample, left_out)
    if note:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(note)
    ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(0.0, -0.1), fontsize=8, frameon=False
    )


def _left_out_note(
    sample: data.WindowSample, left_out: Sequence[tuple[data.PolicyCurve, str]]
) -> str:
    """``no line: MSBuild Copy, rimraf (do not retry error 5); Node.js fs.rm (never retries)``."""
    if not left_out:
        return ""
    codes = sorted({int(c) for c in sample.error_code if c >= 0})
    errors = "error " + ", ".join(str(c) for c in codes) if codes else "these errors"
    parts = []
    for why, text in (
        ("does not retry", f"do not retry {errors}"),
        ("never retries", "never retry by default"),
    ):
        names = [_safe(c.label) for c, reason in left_out if reason == why]
        if names:
            parts.append(f"{', '.join(names)} ({text})")
    return "no line: " + "; ".join(parts)


def _policy_label(curve: data.PolicyCurve, report: Report, suggested: bool) -> str:
    """``uv: 3/4 through, gives up at 10.2 s`` and what is unknown or never tried."""
    name = _safe(curve.label)
    if suggested and report.policy is not None:
        name = f"suggested ({report.policy.describe()})"
    if curve.n and curve.triggered == 0:
        return f"{name}: 0/{curve.n}, does not retry on these errors"
    parts = [f"{name}: {curve.made_it}/{curve.n} through"]
    if curve.triggered < curve.n:
        parts.append(f"{curve.n - curve.triggered} not retried (error {curve.triggers} only)")
    if curve.unknown:
        parts.append(f"{curve.unknown} unknown (next retry after the trace ended)")
    parts.append(
        f"gives up at {fmt_duration(curve.gives_up_ms)}"
        if len(curve.attempt_ms)
        else "never retries"
    )
    if curve.jittered:
        parts.append("one jittered draw")
    return ", ".join(parts)


# ---------------------------------------------------------------------------- blockers


def _blockers_size(bars: int) -> tuple[float, float]:
    """A bar's height per blocking process, up to MAX_BLOCKER_BARS."""
    return 9.0, min(1.8 + 0.38 * max(min(bars, MAX_BLOCKER_BARS), 1), 12.0)


def blockers(report: Report, *, ax: Axes | None = None) -> Axes:
    """Conflicts per blocking process, one bar each, most first.

    Each conflict with a holder counts once, for its decisive blocker (the handle that let
    go last, as in the hold-time table); a blocker that is the failing process's own handle
    is labelled so. Each bar is annotated with the median time the file stayed held after
    a failure and how many holders were still open when the trace ended. Conflicts with no
    holder in the trace have no bar; their count is in the title.
    """
    counts = data.blocker_counts(report)
    shown = counts.head(MAX_BLOCKER_BARS)
    if ax is None:
        ax = _new_axes(_blockers_size(shown.height))
    unexplained = data.unexplained_count(report)
    if counts.is_empty():
        message = "No conflict had a holder in the trace: no blocking process to show."
        if unexplained:
            message += f"\n({plural(unexplained, 'conflict')} with no holder: a filtered capture, or permissions.)"
        return _nothing(ax, message)
    labels = [
        _safe(p) + (" (own handle)" if own else "")
        for p, own in shown.select("process", "own").iter_rows()
    ]
    values = shown["conflicts"].to_numpy()
    colors = [ROLE_COLORS["failing"] if own else ROLE_COLORS["blocker"] for own in shown["own"]]
    y = np.arange(shown.height)
    container = ax.barh(y, values, color=colors, height=0.7, gid=GID_BLOCKERS)
    for patch in container.patches:
        patch.set_gid(GID_BLOCKERS)
    for i, r in enumerate(shown.iter_rows(named=True)):
        note = f"{r['conflicts']}"
        if r["median_ms"] is not None:
            note += f"  ·  median held {fmt_duration(r['median_ms'])}"
        if r["censored"]:
            note += f"  ·  {r['censored']} still held at the end"
        ax.annotate(
            note, (r["conflicts"], i), xytext=(4, 0), textcoords="offset points",
            va="center", fontsize=8,
        )  # fmt: skip
    ax.set_yticks(y, labels)
    ax.set_ylim(shown.height - 0.5, -0.5)
    ax.set_xlim(0, values.max() * 1.6)
    ax.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    ax.set_xlabel("conflicts (failed operations), each counted for the holder that let go last")
    title = "Who blocked: conflicts by blocking process"
    extra = []
    if counts.height > shown.height:
        extra.append(f"{counts.height - shown.height} more processes not shown")
    if unexplained:
        extra.append(f"{plural(unexplained, 'conflict')} with no holder in the trace")
    if extra:
        title += "\n(" + "; ".join(extra) + ")"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    return ax


# ---------------------------------------------------------------------------- files


def figure_bytes(figure: Figure, fmt: str = "svg", *, dpi: int = 150) -> bytes:
    """The figure rendered as ``svg``, ``png`` or ``pdf`` bytes, without a creation date
    (the same report gives the same bytes)."""
    import matplotlib

    buffer = io.BytesIO()
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt, {"Software": None})
    with _quiet_glyphs(), matplotlib.rc_context({"svg.hashsalt": "traceaudit"}):
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def _slug(text: str, width: int = 40) -> str:
    """A file-name-safe form of the last component of a path."""
    name = re.split(r"[\\/]", text.rstrip("\\/"))[-1] or "path"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "path"
    return slug[:width]


def timeline_figures(report: Report, limit: int = 5) -> Iterator[tuple[data.BlockedPath, Figure]]:
    """A timeline figure (no pyplot) for each of the ``limit`` most telling blocked paths."""
    for entry in data.blocked_paths(report, limit=limit):
        d = _timeline_in(report, entry.path, entry.trace)
        if d is None:
            continue
        ax = _new_axes(_timeline_size(len(d.rows)), pyplot=False)
        _draw_timeline(ax, d)
        yield entry, ax.figure  # type: ignore[misc]  # a Figure, never a SubFigure, here


def report_figures(
    report: Report, *, max_timelines: int = 5, policies: Sequence[Any] | None = None
) -> Iterator[tuple[str, Figure]]:
    """``(name, figure)`` for every figure that has something to show, made without pyplot.

    Names: ``blockers``, ``timeline-<n>-<file>`` for the ``max_timelines`` most telling
    blocked paths (see :func:`traceaudit.report.figure_data.blocked_paths`), ``windows``.
    """
    counts = data.blocker_counts(report)
    if counts.height:
        ax = _new_axes(_blockers_size(counts.height), pyplot=False)
        yield "blockers", blockers(report, ax=ax).figure  # type: ignore[misc]
    for i, (entry, figure) in enumerate(timeline_figures(report, max_timelines), start=1):
        yield f"timeline-{i}-{_slug(entry.path)}", figure
    if data.window_sample(report) is not None:
        ax = _windows(report, policies, None, pyplot=False)
        yield "windows", ax.figure  # type: ignore[misc]


def save_all(
    report: Report,
    directory: str | os.PathLike[str],
    *,
    formats: Iterable[str] = ("png", "svg"),
    max_timelines: int = 5,
    dpi: int = 150,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Write every figure that has something to show as PNG and SVG into ``directory``.

    Files: ``blockers.*``, ``timeline-<n>-<file>.*`` (the ``max_timelines`` most telling
    blocked paths) and ``windows.*``. Each is written to a temporary name and moved into
    place, so a reader never sees half a file. A report with no conflicts writes nothing
    and returns an empty list. ``directory`` is created when missing. A figure is never
    written over one of ``inputs`` (the trace files the report came from).
    """
    from traceaudit._outputs import check_plots_dir, same_file
    from traceaudit.errors import UsageError

    formats = tuple(formats)
    unknown = [f for f in formats if f not in ("png", "svg", "pdf")]
    if unknown:
        raise UsageError(f"figure formats {unknown!r} are not supported; use png, svg or pdf.")
    inputs = [Path(p) for p in inputs if str(p) != "-"]
    out = check_plots_dir(directory, inputs)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, figure in report_figures(report, max_timelines=max_timelines):
        for fmt in formats:
            target = out / f"{name}.{fmt}"
            if any(same_file(target, Path(source)) for source in inputs):
                raise UsageError(
                    f"{target}: this is an input trace; refusing to write a figure over it."
                )
            write_atomically(target, figure_bytes(figure, fmt, dpi=dpi))
            written.append(target)
    return written
