"""The timeline of one blocked path as SVG markup, for the HTML report (no matplotlib).

One row per process, one bar per handle (overlapping handles of a process stacked in
lanes, successive ones kept apart by a gap), a cross per failure linking to its row of
the conflicts table, a dot per retry that finally worked, and a shaded band for the time
the file stayed held. The markup is complete without script: every bar and mark carries a
``<title>`` (the browser's own tooltip) and is drawn at the default range
(:meth:`TimelineData.focus`). The page's script (``html_assets/report.js``) then re-scales
the elements from their ``data-s`` / ``data-e`` / ``data-x`` times (milliseconds after the
origin) to zoom and pan, and shows the titles as a styled tooltip on hover and focus.

Every string from the trace is escaped here; ids are built from numbers only.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from traceaudit.display import access_text, fmt_ms, share_text
from traceaudit.report.figure_data import TimelineData

__all__ = ["LABEL_CHARS", "nice_ticks", "timeline_svg"]

Scale = Callable[[float], float]
"""Milliseconds to an x coordinate in the plot area."""

WIDTH = 1000
"""Width of the drawing in SVG units (it scales to the page's width)."""

LABEL_CHARS = 34
"""Process labels longer than this end in ``…``; the full label is in their ``<title>``."""

_CHAR_W = {"upper": 8.6, "lower": 6.7, "digit": 7.0, "other": 4.6}
"""Widths of 12 px system-ui characters, in SVG units: generous, because a label that
comes out wider than its gutter is cut at the SVG's left edge (``WINWORD.EXE``)."""
_BOLD = 1.08  # the failing process's label is bold
_LANE_H = 14
_BAR_H = 10
_ROW_PAD = 8
_TOP = 6
_AXIS_H = 30
_RIGHT = 14


def _e(value: object) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _num(value: float) -> str:
    """A coordinate or time with a few decimals, never ``nan`` or ``inf``."""
    if not math.isfinite(value):
        value = 0.0
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_ticks(lo: float, hi: float, target: int = 8) -> list[float]:
    """Round tick positions (1, 2 or 5 times a power of ten) covering ``[lo, hi]``.

    The page's script computes the same ticks after a zoom (``niceTicks`` in report.js).
    """
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo]
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step)
    return [i * step if i else 0.0 for i in range(first, math.floor(hi / step) + 1)]


def _tick_text(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    if abs(value) < step / 1e6:
        value = 0.0  # never "-0"
    return f"{value:,.{decimals}f}"


def _clock(origin: datetime, ms: float) -> str:
    return (origin + timedelta(milliseconds=ms)).strftime("%H:%M:%S.%f")


def _text_width(text: str, *, bold: bool = False) -> float:
    """An upper estimate of the width of ``text`` as a label, in SVG units."""
    width = 0.0
    for ch in text:
        if ch.isupper() or ch in "MW@%&":
            width += _CHAR_W["upper"]
        elif ch.isdigit():
            width += _CHAR_W["digit"]
        elif ch.isalpha():
            width += _CHAR_W["lower"]
        else:
            width += _CHAR_W["other"]
    return width * (_BOLD if bold else 1.0)


def _label(text: str) -> str:
    if len(text) <= LABEL_CHARS:
        return text
    return text[: LABEL_CHARS - 1] + "…"


def timeline_svg(
    td: TimelineData,
    *,
    anchors: list[str | None],
    key: int,
) -> str:
    """The SVG of ``td``; ``anchors[i]``: the table row id of failure ``i`` (None: no link).

    ``key`` makes the ids inside this SVG unique on the page.
    """
    lo, hi = td.focus()
    labels = [_label(r) for r in td.rows]
    widest = max((_text_width(t, bold=True) for t in labels), default=60.0)
    gutter = min(max(widest + 20, 110), 330)
    plot_w = WIDTH - gutter - _RIGHT

    lanes = {int(r): int(n) for r, n in td.bars.select("row", "lanes").unique().iter_rows()}
    tops: list[float] = []
    y = _TOP
    for i in range(len(td.rows)):
        tops.append(y)
        y += lanes.get(i, 1) * _LANE_H + _ROW_PAD
    plot_h = y
    height = plot_h + _AXIS_H

    def x(ms: float) -> float:
        return (ms - lo) / (hi - lo) * plot_w if hi > lo else 0.0

    out = [
        f'<svg class="timeline" id="tl-{key}" viewBox="0 0 {WIDTH} {_num(height)}" '
        f'width="{WIDTH}" height="{_num(height)}" role="group" '
        f'aria-label="Timeline of the handles on {_e(td.path)}" '
        f'data-lo="{_num(lo)}" data-hi="{_num(hi)}" data-w="{_num(plot_w)}">'
        f'<defs><pattern id="hatch-{key}" width="5" height="5" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="5" height="5" class="hatch-bg"/>'
        '<line x1="0" y1="0" x2="0" y2="5" class="hatch-line"/></pattern></defs>'
    ]
    # row backgrounds and labels, in the gutter
    failing = set(td.failing_rows)
    for i, (full, short) in enumerate(zip(td.rows, labels, strict=True)):
        top, h = tops[i], lanes.get(i, 1) * _LANE_H + _ROW_PAD
        stripe = " odd" if i % 2 else ""
        out.append(
            f'<rect class="row-bg{stripe}" x="0" y="{_num(top - _ROW_PAD / 2)}" '
            f'width="{WIDTH}" height="{_num(h)}"/>'
        )
        cls = "label failing" if i in failing else "label"
        out.append(
            f'<text class="{cls}" x="{_num(gutter - 10)}" y="{_num(top + (h - _ROW_PAD) / 2 + 4)}" '
            f'text-anchor="end"><title>{_e(full)}</title>{_e(short)}</text>'
        )
    # the plot area clips what lies outside the visible range
    out.append(
        f'<svg class="plot" x="{_num(gutter)}" y="0" width="{_num(plot_w)}" '
        f'height="{_num(plot_h)}" overflow="hidden">'
        f'<rect class="plot-bg" width="{_num(plot_w)}" height="{_num(plot_h)}"/>'
    )
    out.append('<g class="grid">')
    out += _grid(lo, hi, x, plot_h)
    out.append("</g>")
    for start, end, censored in td.held:
        cls = "held censored" if censored else "held"
        out.append(
            f'<rect class="{cls}" data-s="{_num(start)}" data-e="{_num(end)}" '
            f'x="{_num(x(start))}" y="0" width="{_num(max(x(end) - x(start), 1))}" '
            f'height="{_num(plot_h)}"><title>held from the first failure for '
            f"{_e(fmt_ms(end - start))}"
            f"{' (still held when the trace ended)' if censored else ''}</title></rect>"
        )
    for b in td.bars.iter_rows(named=True):
        out.append(_bar(b, td, tops, x, key))
    for i, f in enumerate(td.failures.iter_rows(named=True)):
        if f["row"] is None:
            continue
        out.append(_failure(f, td, tops, lanes, x, anchors[i] if i < len(anchors) else None))
    for s in td.successes.iter_rows(named=True):
        cy = tops[s["row"]] + lanes.get(s["row"], 1) * _LANE_H / 2
        out.append(
            f'<circle class="success" data-x="{_num(s["x_ms"])}" cx="{_num(x(s["x_ms"]))}" '
            f'cy="{_num(cy)}" r="4.5"><title>the retry that worked, at '
            f"{_e(_clock(td.origin, s['x_ms']))} ({_e(fmt_ms(s['x_ms']))})</title></circle>"
        )
    out.append("</svg>")
    # the axis, below the plot
    out.append(
        f'<g class="axis" transform="translate({_num(gutter)},{_num(plot_h)})">'
        f'<line class="axis-line" x1="0" x2="{_num(plot_w)}" y1="0" y2="0"/>'
        f'<g class="ticks" data-w="{_num(plot_w)}">'
    )
    out += _ticks(lo, hi, x)
    out.append("</g></g></svg>")
    return "".join(out)


def _grid(lo: float, hi: float, x: Scale, plot_h: float) -> list[str]:
    return [
        f'<line class="gridline" data-x="{_num(t)}" x1="{_num(x(t))}" x2="{_num(x(t))}" '
        f'y1="0" y2="{_num(plot_h)}"/>'
        for t in nice_ticks(lo, hi)
    ]


def _ticks(lo: float, hi: float, x: Scale) -> list[str]:
    ticks = nice_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    return [
        f'<g class="tick" transform="translate({_num(x(t))},0)"><line y2="5"/>'
        f'<text y="18" text-anchor="middle">{_e(_tick_text(t, step))}</text></g>'
        for t in ticks
    ]


def _bar(b: dict[str, Any], td: TimelineData, tops: list[float], x: Scale, key: int) -> str:
    row, lane = int(b["row"]), int(b["lane"])
    y = tops[row] + lane * _LANE_H
    start, end = float(b["start_ms"]), float(b["end_ms"])
    opened = (
        "open before the capture started"
        if b["open_before_capture"]
        else f"opened {_clock(td.origin, start)} ({fmt_ms(start)})"
    )
    closed = (
        "no close in the capture"
        if b["open_at_end"]
        else f"closed {_clock(td.origin, end)} ({fmt_ms(end)})"
    )
    held = "" if b["open_before_capture"] or b["open_at_end"] else f", held {fmt_ms(end - start)}"
    role = {"blocker": "blocked a failure", "failing": "the failing process's own handle"}.get(
        b["role"], "another handle on the path"
    )
    where = "" if b["relation"] in (None, "same-path") else f" ({b['relation']})"
    lines = [
        f"{b['process']} (pid {b['pid']}): {role}{where}",
        f"access {access_text(b['access_mask'])}; share mode {share_text(b['share_mode'])}",
        f"{opened} → {closed}{held}",
    ]
    if b["path"] and b["path"].casefold() != td.path.casefold():
        lines.append(str(b["path"]))
    classes = ["bar", b["role"]]
    fill = ""
    if b["open_before_capture"] or b["open_at_end"]:
        classes.append("open-edge")
        fill = f' fill="url(#hatch-{key})"'
    x0, x1 = x(start), x(end)
    return (
        f'<rect class="{" ".join(classes)}" tabindex="0" data-s="{_num(start)}" '
        f'data-e="{_num(end)}" x="{_num(x0)}" y="{_num(y)}" '
        f'width="{_num(max(x1 - x0, 2))}" height="{_BAR_H}" rx="2"{fill} '
        f'aria-label="{_e("; ".join(lines))}"><title>{_e(chr(10).join(lines))}</title></rect>'
    )


def _failure(
    f: dict[str, Any],
    td: TimelineData,
    tops: list[float],
    lanes: dict[int, int],
    x: Scale,
    anchor: str | None,
) -> str:
    row = int(f["row"])
    cy = tops[row] + lanes.get(row, 1) * _LANE_H / 2
    if f["censored"]:
        held = "still held when the trace ended"
    elif f["remaining_ms"] is not None:
        held = f"held {fmt_ms(f['remaining_ms'])} more"
    else:
        held = "no blocker's close to time"
    text = (
        f"{f['operation']} failed: {f['result']}, at {_clock(td.origin, f['x_ms'])} "
        f"({fmt_ms(f['x_ms'])}); {held}"
    )
    mark = (
        f'<g class="fail-mark" transform="translate({_num(x(f["x_ms"]))},{_num(cy)})">'
        '<circle r="7" class="hit"/><path d="M-4,-4L4,4M-4,4L4,-4"/></g>'
    )
    if anchor is None:
        return (
            f'<g class="fail" data-x="{_num(f["x_ms"])}" data-y="{_num(cy)}" tabindex="0">'
            f"<title>{_e(text)}</title>{mark}</g>"
        )
    return (
        f'<a class="fail" href="#{_e(anchor)}" data-x="{_num(f["x_ms"])}" data-y="{_num(cy)}" '
        f'aria-label="{_e(text)}; go to its row in the conflicts table">'
        f"<title>{_e(text)} (click: its row in the conflicts table)</title>{mark}</a>"
    )
