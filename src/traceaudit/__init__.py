"""traceaudit: which process held my file, for how long, and how long should I have retried?

The public API. The CLI (``traceaudit``) and notebooks call exactly these functions.

    >>> import traceaudit
    >>> report = traceaudit.analyze("samples/uv-extract-rename.csv")
    >>> report.conflicts        # polars DataFrame, one row per failed operation
    >>> print(report.to_text())
"""

from traceaudit._read import read_trace
from traceaudit.analysis import analyze
from traceaudit.conflicts import blocking_handles, conflicts, find_conflicts, lock_failures
from traceaudit.errors import (
    DamagedRowError,
    MissingColumnsError,
    TraceauditError,
    TraceFormatError,
    UnknownFormatError,
    UsageError,
)
from traceaudit.handles import handles
from traceaudit.redact import RedactionResult, redact
from traceaudit.report import Report
from traceaudit.retries import retry_chains
from traceaudit.schema import EVENT_SCHEMA, Trace
from traceaudit.timeline import timeline
from traceaudit.windows import window_table

__version__ = "0.1.0"

__all__ = [
    "EVENT_SCHEMA",
    "DamagedRowError",
    "MissingColumnsError",
    "RedactionResult",
    "Report",
    "Trace",
    "TraceFormatError",
    "TraceauditError",
    "UnknownFormatError",
    "UsageError",
    "analyze",
    "blocking_handles",
    "conflicts",
    "find_conflicts",
    "handles",
    "lock_failures",
    "read_trace",
    "redact",
    "retry_chains",
    "timeline",
    "window_table",
]
