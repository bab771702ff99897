"""The matplotlib classes behind :mod:`traceaudit.report.plot`, imported only when it draws.

- :class:`ReportFigure`: a Figure that Jupyter shows as a PNG (``_repr_png_``), made
  without pyplot, so the inline backend never shows it a second time.
- :class:`ReportAxes`: the Axes of such a figure; it shows its whole figure, so that
  ``plot.timeline(report)`` as the last line of a cell draws the picture once.
- :class:`HandleBars`: the handle bars of a timeline, cut back at draw time so that a
  handle that follows another one in the same lane is always separated by a visible gap.
- :class:`FittedLabel`: a label inside a bar that picks, at draw time, the longest of
  its candidate texts that fits the bar, and is never drawn beyond it.

Everything here knows the rendered size of the Axes (pixels depend on the final layout,
the dpi and the user's own figure), which is why it is done at draw time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.transforms import ScaledTranslation

__all__ = ["FittedLabel", "HandleBars", "ReportAxes", "ReportFigure"]

BAR_GAP_PX = 2.5
"""Room left between a handle's bar and the next handle's in the same lane, in pixels."""

MIN_BAR_PX = 1.0
"""The narrowest a bar is drawn, so that an instant still shows."""


class ReportFigure(Figure):
    """A figure made by :mod:`traceaudit.report.plot` that Jupyter displays by itself.

    It is never registered with pyplot (unless a GUI backend is in use, see
    ``plot._new_axes``), so the inline backend does not show it; Jupyter shows it through
    :meth:`_repr_png_` when it, or its Axes, is the value of a cell. A figure that pyplot
    manages shows itself the pyplot way and has no PNG repr (no second copy).
    """

    def _repr_png_(self) -> bytes | None:
        if getattr(self.canvas, "manager", None) is not None:
            return None  # pyplot shows it (a GUI window, a widget): not a second time
        from traceaudit.report.plot import figure_bytes

        return figure_bytes(self, "png", dpi=round(self.get_dpi()))


class ReportAxes(Axes):
    """The Axes of a :class:`ReportFigure`: in Jupyter it shows its whole figure."""

    def _repr_png_(self) -> bytes | None:
        figure = _root(self)
        return figure._repr_png_() if isinstance(figure, ReportFigure) else None


def _root(artist: Any) -> Any:
    """The figure an artist is drawn in (the root one when it sits in a subfigure)."""
    figure = artist.figure
    return getattr(figure, "figure", figure) if figure is not None else None


class HandleBars(PolyCollection):
    """Bars ``(x0, x1, y0, y1)`` in data coordinates, one per handle.

    ``next_start[i]`` is where the next bar in the same lane begins (``inf``: none). When
    the two would touch on screen, bar *i* is drawn ending :data:`BAR_GAP_PX` pixels
    before it, so that two handles never read as one. The data (and the HTML report)
    keep the true times; only the drawing leaves the gap.
    """

    def __init__(self, rects: np.ndarray, next_start: np.ndarray, **kwargs: Any) -> None:
        self._rects = np.asarray(rects, dtype=float).reshape(-1, 4)
        self._next = np.asarray(next_start, dtype=float)
        super().__init__(self._verts(self._rects[:, 1]), **kwargs)

    def _verts(self, x1: np.ndarray) -> list[list[tuple[float, float]]]:
        r = self._rects
        return [
            [(a, c), (b, c), (b, d), (a, d)]
            for a, b, c, d in zip(r[:, 0], x1, r[:, 2], r[:, 3], strict=True)
        ]

    def _screen_ends(self, axes: Any) -> np.ndarray:
        """Each bar's end, cut back where it would touch the next one on screen."""
        r, nxt = self._rects, self._next
        trans = axes.transData
        y = r[:, 2]

        def px(xs: np.ndarray) -> np.ndarray:
            return np.asarray(trans.transform(np.column_stack([xs, y]))[:, 0], dtype=float)

        x0, x1 = px(r[:, 0]), px(r[:, 1])
        has_next = np.isfinite(nxt)
        nx = px(np.where(has_next, nxt, r[:, 1]))
        end = np.where(has_next, np.minimum(x1, nx - BAR_GAP_PX), x1)
        end = np.maximum(end, x0 + MIN_BAR_PX)
        back = np.asarray(trans.inverted().transform(np.column_stack([end, y]))[:, 0], dtype=float)
        return np.where(end == x1, r[:, 1], back)

    def draw(self, renderer: Any) -> None:
        if self.axes is not None and len(self._rects):
            self.set_verts(self._verts(self._screen_ends(self.axes)))
        super().draw(renderer)


class FittedLabel(Text):
    """Text inside the bar ``x0 .. x1`` of data height ``y0 .. y1``, written from its left.

    At draw time the first of ``candidates`` (longest first) that fits the bar's width on
    screen is drawn; none is drawn when not even the last fits. It is clipped to the bar,
    so it never spills over a neighbour.
    """

    def __init__(
        self,
        x0: float,
        x1: float,
        y: float,
        y0: float,
        y1: float,
        candidates: Sequence[str],
        pad_px: float = 4.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(x0, y, candidates[0] if candidates else "", **kwargs)
        self._span = (x0, x1, y0, y1)
        self._candidates = tuple(candidates)
        self._pad = pad_px

    @property
    def candidates(self) -> tuple[str, ...]:
        return self._candidates

    def draw(self, renderer: Any) -> None:
        ax = self.axes
        if ax is None or not self.get_visible() or not self._candidates:
            return
        x0, x1, y0, y1 = self._span
        lo, hi = sorted(ax.get_xlim())
        x0, x1 = max(x0, lo), min(x1, hi)
        if x1 <= x0:
            return
        trans = ax.transData
        left, right = trans.transform([(x0, y0), (x1, y0)])[:, 0]
        room = right - left - 2 * self._pad - BAR_GAP_PX
        self.set_x(x0)
        figure = _root(self)
        self.set_transform(
            trans + ScaledTranslation(self._pad / figure.dpi, 0, figure.dpi_scale_trans)
        )
        for text in self._candidates:
            self.set_text(text)
            if self.get_window_extent(renderer).width <= room:
                break
        else:
            return
        clip = Rectangle((x0, min(y0, y1)), x1 - x0, abs(y1 - y0), transform=trans)
        self.set_clip_path(clip)
        super().draw(renderer)
