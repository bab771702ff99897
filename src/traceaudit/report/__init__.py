"""The result of an analysis and its faces.

``model`` holds :class:`Report` (frames, summaries, the stable JSON document);
``answer`` the few lines every face opens with; ``text`` the terminal report, ``html``
the self-contained page, ``plot`` the figures and ``figure_data`` what they draw;
``timeline_text`` one path's events. Numbers, durations and times are formatted by
:mod:`traceaudit.display`, the one set of formatters.
"""

from traceaudit._lazy import attach

__all__ = ["FilterOutcome", "Report", "TraceSummary"]

__getattr__, __dir__ = attach(
    __name__,
    {
        "Report": "traceaudit.report.model",
        "TraceSummary": "traceaudit.report.model",
        "FilterOutcome": "traceaudit.report.model",
        "answer": ("traceaudit.report.answer", None),
        "plot": ("traceaudit.report.plot", None),
        "html": ("traceaudit.report.html", None),
    },
)
