"""The Report: an analysis's data (:class:`~traceaudit.report.data.ReportData`) with its faces.

``report.to_text()`` is the terminal report (:mod:`traceaudit.report.text`), ``str(report)``
the same, and in Jupyter a report shows its answer, verdicts and hold times as HTML. The
faces read only the data, so they import :mod:`traceaudit.report.data`, never this module.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from traceaudit.display import access_text, iso_time, plural, share_text
from traceaudit.report.answer import answer
from traceaudit.report.data import FilterOutcome, ReportData, TraceSummary
from traceaudit.report.text import render_text

# The formatters are re-exported for code written against earlier versions.
__all__ = ["Report", "TraceSummary", "FilterOutcome", "iso_time", "share_text", "access_text"]


@dataclass(frozen=True)
class Report(ReportData):
    """Everything one analysis found; frames for notebooks, ``to_dict``/``to_text`` for people."""

    def to_text(self, *, limit: int | None = 10, snippets: bool = False) -> str:
        """The report for a person: the answer first, then details for at most ``limit``
        paths (None or 0: all); the suggested policy as code only with ``snippets``."""
        return render_text(self, limit=limit, snippets=snippets)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        """In Jupyter: the answer first (as the terminal report opens), then the verdicts,
        the hold-time table and the warnings."""
        t = self._trace_dict()
        verdicts = (
            self.conflicts["verdict"].value_counts(sort=True).to_dicts()
            if self.conflicts.height
            else []
        )
        lines = "".join(
            f"<tr><th>{html.escape(label)}</th><td>{html.escape(text)}</td></tr>"
            for label, text in answer(self).lines()
        )
        items = "".join(f"<li>{html.escape(v['verdict'])}: {v['count']}</li>" for v in verdicts)
        warn = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
        table = self.windows.to_pandas().to_html(index=False) if self.windows.height else ""
        return (
            f"<div><b>traceaudit</b>: {html.escape(t['name'])} ({html.escape(t['format'])}, "
            f"{plural(t['events'], 'event')}, {plural(t['processes'], 'process', 'processes')})"
            "<br>"
            f"<table>{lines}</table>"
            f"{plural(self.conflicts.height, 'conflict')}<ul>{items}</ul>{table}"
            + (f"<b>Warnings</b><ul>{warn}</ul>" if warn else "")
            + "</div>"
        )
