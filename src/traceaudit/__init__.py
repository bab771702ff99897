"""traceaudit: which process held my file, for how long, and how long should I have retried?

The public API. The CLI (``traceaudit``) and notebooks call exactly these names::

    >>> import traceaudit
    >>> report = traceaudit.analyze("samples/uv-extract-rename.csv")
    >>> report.conflicts        # polars DataFrame, one row per failed operation
    >>> print(report.to_text())

Everything is loaded on first use (PEP 562), so ``import traceaudit`` costs next to nothing
and brings in no polars, pyarrow, pandas or matplotlib until a name that needs them is
touched. The package is laid out by capability::

    formats/     every byte into or out of a trace file (Procmon text, PML, ETL, Parquet)
    analysis/    events -> handles -> conflicts -> retries -> episodes (frame in, frame out)
    policy/      retry schedules, known tools' policies, replay, suggestion, snippets
    report/      the Report and its faces: text, HTML, plots
    redaction/   keyed pseudonyms for sharing traces safely
    simulation/  traces with ground truth, for tests, samples and benchmarks
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from traceaudit._lazy import attach
from traceaudit._version import __version__

# public name -> (module, attribute); attribute None: the name is the module itself
_LAZY: dict[str, str | tuple[str, str | None]] = {
    "EVENT_SCHEMA": ("traceaudit.schema", "EVENT_SCHEMA"),
    "Trace": ("traceaudit.schema", "Trace"),
    "TraceauditError": ("traceaudit.errors", "TraceauditError"),
    "TraceFormatError": ("traceaudit.errors", "TraceFormatError"),
    "UnknownFormatError": ("traceaudit.errors", "UnknownFormatError"),
    "MissingColumnsError": ("traceaudit.errors", "MissingColumnsError"),
    "DamagedRowError": ("traceaudit.errors", "DamagedRowError"),
    "UsageError": ("traceaudit.errors", "UsageError"),
    "RedactionLeakError": ("traceaudit.errors", "RedactionLeakError"),
    "read_trace": ("traceaudit.formats.load", "read_trace"),
    "scan_trace": ("traceaudit.formats.scan", "scan_trace"),
    "analyze": ("traceaudit.pipeline", "analyze"),
    "handles": ("traceaudit.analysis.handles", "handles"),
    "lock_failures": ("traceaudit.analysis.conflicts", "lock_failures"),
    "blocking_handles": ("traceaudit.analysis.conflicts", "blocking_handles"),
    "conflicts": ("traceaudit.analysis.conflicts", "conflicts"),
    "find_conflicts": ("traceaudit.analysis.conflicts", "find_conflicts"),
    "retry_chains": ("traceaudit.analysis.retries", "retry_chains"),
    "window_table": ("traceaudit.analysis.hold_times", "window_table"),
    "timeline": ("traceaudit.pipeline", "timeline"),
    "Report": ("traceaudit.report.model", "Report"),
    "redact": ("traceaudit.redaction.redactor", "redact"),
    "RedactionResult": ("traceaudit.redaction.redactor", "RedactionResult"),
    "simulate": ("traceaudit.simulation.generate", "simulate"),
    "simulate_mix": ("traceaudit.simulation.generate", "simulate_mix"),
    "fleet": ("traceaudit.fleet.driver", "fleet"),
    # modules used as namespaces: `from traceaudit import plot`
    "plot": ("traceaudit.report.plot", None),
    "html": ("traceaudit.report.html", None),
}

__all__ = [
    "EVENT_SCHEMA",
    "DamagedRowError",
    "MissingColumnsError",
    "RedactionLeakError",
    "RedactionResult",
    "Report",
    "Trace",
    "TraceFormatError",
    "TraceauditError",
    "UnknownFormatError",
    "UsageError",
    "__version__",
    "analyze",
    "blocking_handles",
    "conflicts",
    "find_conflicts",
    "fleet",
    "handles",
    "lock_failures",
    "read_trace",
    "redact",
    "retry_chains",
    "scan_trace",
    "simulate",
    "simulate_mix",
    "timeline",
    "window_table",
]


__getattr__, __dir__ = attach(__name__, _LAZY)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from traceaudit.analysis.conflicts import (
        blocking_handles,
        conflicts,
        find_conflicts,
        lock_failures,
    )
    from traceaudit.analysis.handles import handles
    from traceaudit.analysis.hold_times import window_table
    from traceaudit.analysis.retries import retry_chains
    from traceaudit.errors import (
        DamagedRowError,
        MissingColumnsError,
        RedactionLeakError,
        TraceauditError,
        TraceFormatError,
        UnknownFormatError,
        UsageError,
    )
    from traceaudit.fleet.driver import fleet
    from traceaudit.formats.load import read_trace
    from traceaudit.formats.scan import scan_trace
    from traceaudit.pipeline import analyze, timeline
    from traceaudit.redaction.redactor import RedactionResult, redact
    from traceaudit.report import html, plot  # noqa: F401 (namespaces, not in __all__)
    from traceaudit.report.model import Report
    from traceaudit.schema import EVENT_SCHEMA, Trace
    from traceaudit.simulation.generate import simulate, simulate_mix
