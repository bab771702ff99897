"""The exception tree of traceaudit.

::

    TraceauditError                 anything traceaudit raises on purpose
    ├── TraceFormatError(ValueError)    the input is not a trace we can read, or is damaged
    │   ├── UnknownFormatError          no reader recognises the content
    │   ├── MissingColumnsError         a CSV lacks the columns the analysis needs
    │   └── DamagedRowError             one damaged row, raised only in strict mode
    ├── UsageError(ValueError)          an option or argument that cannot work (bad --date, …)
    └── RedactionLeakError              a redacted output still held a secret (it was removed)

    SimulationBug(RuntimeError)     the simulator's events contradict its own model: a bug
                                    in traceaudit, never the user's input

Every message names the file (and the line or byte offset where that helps), says what is
wrong, and what to do about it. The CLI prints ``error: <message>`` and exits 2 for a
:class:`UsageError`, 3 for the others; it never shows a traceback for these.
"""

from __future__ import annotations

__all__ = [
    "TraceauditError",
    "TraceFormatError",
    "UnknownFormatError",
    "MissingColumnsError",
    "DamagedRowError",
    "UsageError",
    "RedactionLeakError",
    "SimulationBug",
]


class TraceauditError(Exception):
    """Base class of every error traceaudit raises deliberately."""


class TraceFormatError(TraceauditError, ValueError):
    """The input cannot be read as a trace (wrong kind of file, damaged, truncated)."""


class UnknownFormatError(TraceFormatError):
    """No reader recognises the file's content."""


class MissingColumnsError(TraceFormatError):
    """A tabular export lacks columns the analysis cannot do without."""


class DamagedRowError(TraceFormatError):
    """A single row could not be parsed; raised instead of skipping it in strict mode."""


class UsageError(TraceauditError, ValueError):
    """An option value that cannot work, such as a malformed ``--date``."""


class RedactionLeakError(TraceauditError):
    """The written output still held a secret; it was removed."""


class SimulationBug(RuntimeError):
    """The simulator's events contradict its own model (a bug in the simulator)."""
